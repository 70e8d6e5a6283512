package mockapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/mockapi"
)

// TestHammer runs many clients at once against one mock (run it with -race):
// counters must add up and no 60-s window may hold more 2xx than the limit.
func TestHammer(t *testing.T) {
	t.Parallel()
	const rpm, workers, each = 150, 16, 40
	m, url := serve(t, mockapi.Config{RPM: rpm, Rate500: 0.1, Rate429: 0.1, ErrorShape: mockapi.ShapeMixed, Seed: 3})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int]int{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				model := []string{"mimo-v2.6-pro", "mimo-v2.6-flash"}[i%2]
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/v1/chat/completions",
					strings.NewReader(simple(model, fmt.Sprintf("worker %d request %d", w, i))))
				req.Header.Set("Authorization", "Bearer "+testKey)
				req.Header.Set("X-Mimoq-Job-Id", fmt.Sprintf("job-%d-%d", w, i))
				req.Header.Set("X-Mimoq-Attempt", "1")
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				got[resp.StatusCode]++
				mu.Unlock()
				if i%10 == 0 {
					_ = m.Stats() // read while others write
				}
			}
		}()
	}
	wg.Wait()
	st := m.Stats()
	if st.TotalRequests != workers*each || st.JobsSeen != workers*each || st.Duplicates != 0 || st.MaxCallsPerJob != 1 {
		t.Errorf("total %d, jobs %d, duplicates %d, max calls %d", st.TotalRequests, st.JobsSeen, st.Duplicates, st.MaxCallsPerJob)
	}
	for code, n := range got {
		if st.ByStatus[strconv.Itoa(code)] != int64(n) {
			t.Errorf("status %d: client saw %d, mock counted %d", code, n, st.ByStatus[strconv.Itoa(code)])
		}
	}
	for name, ms := range st.Models {
		if ms.MaxRPMWindow.OK > rpm || int64(ms.MaxRPMWindow.OK) > ms.ByStatus["200"] {
			t.Errorf("%s: %d 2xx in a 60-s window, limit %d, %d 2xx in all", name, ms.MaxRPMWindow.OK, rpm, ms.ByStatus["200"])
		}
		if ms.MaxPerSecond.OK > ms.MaxRPMWindow.OK || ms.MaxPerSecond.Received > ms.MaxRPMWindow.Received {
			t.Errorf("%s: 1-s window above the 60-s one: %+v %+v", name, ms.MaxPerSecond, ms.MaxRPMWindow)
		}
	}
	pro := st.Models["mimo-v2.6-pro"]
	if pro.LimitExceeded == 0 || pro.Requests != workers*each/2 || int64(pro.MaxRPMWindow.Received) != pro.Requests {
		t.Errorf("pro = %+v", pro)
	}
}

func BenchmarkChat(b *testing.B) {
	m, err := mockapi.New(mockapi.Config{Key: testKey, RPM: mockapi.Unlimited, TPM: mockapi.Unlimited})
	if err != nil {
		b.Fatal(err)
	}
	body := simple("mimo-v2.6-flash", "What is a durable queue, in one sentence?")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("X-Mimoq-Job-Id", strconv.Itoa(i))
			rec := httptest.NewRecorder()
			m.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}

// BenchmarkHTTP measures requests a second through a real loopback server.
func BenchmarkHTTP(b *testing.B) {
	m, err := mockapi.New(mockapi.Config{Key: testKey, RPM: mockapi.Unlimited, TPM: mockapi.Unlimited})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(m)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := simple("mimo-v2.6-flash", "What is a durable queue, in one sentence?")
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// TestMaxInFlight: the mock reports the most requests it served at once,
// which is how the end-to-end tests see a worker's real concurrency.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	const n = 5
	m, url := serve(t, mockapi.Config{Latency: 500 * time.Millisecond})
	call := func() {
		resp, err := post(context.Background(), t, url, simple("mimo-v2.6-flash", "hi"))
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(call)
	}
	wg.Wait()
	call() // alone: the maximum stays
	if got := m.Stats().MaxInFlight; got != n {
		t.Fatalf("max in flight %d, want %d", got, n)
	}
	m.Reset()
	if got := m.Stats().MaxInFlight; got != 0 {
		t.Fatalf("max in flight after reset %d, want 0", got)
	}
}
