package mockapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/mockapi"
)

func TestFaultKinds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg     mockapi.Config
		fault   string
		status  int
		code    string
		htmlish bool
	}{
		{cfg: mockapi.Config{Rate429: 1, FaultRetryAfter: 2500 * time.Millisecond}, fault: "429", status: 429, code: "rate_limit_exceeded"},
		{cfg: mockapi.Config{Rate500: 1}, fault: "500", status: 500, code: "internal_error"},
		{cfg: mockapi.Config{Rate502: 1}, fault: "502", status: 502, htmlish: true},
		{cfg: mockapi.Config{Rate503: 1}, fault: "503", status: 503, code: "service_unavailable"},
	} {
		t.Run(tt.fault, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.cfg)
			r := b.chat(simple("mimo-v2.6-flash", "hi"))
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d", r.status, tt.status)
			}
			if tt.htmlish {
				if r.header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(string(r.body), "<h1>502 Bad Gateway</h1>") {
					t.Errorf("502 = %q %s", r.header.Get("Content-Type"), r.body)
				}
			} else if code, _, _ := r.errorCode(t); code != tt.code {
				t.Errorf("code = %q, want %q", code, tt.code)
			}
			if tt.status == 429 && (r.header.Get("Retry-After") != "3" || r.header.Get("Retry-After-Ms") != "2500") {
				t.Errorf("Retry-After %q, ms %q", r.header.Get("Retry-After"), r.header.Get("Retry-After-Ms"))
			}
			st := b.stats()
			if st.Faults[tt.fault] != 1 || st.ByStatus[fmt.Sprint(tt.status)] != 1 {
				t.Errorf("faults %v, by status %v", st.Faults, st.ByStatus)
			}
			if st.Models["mimo-v2.6-flash"].LimitExceeded != 0 {
				t.Errorf("an injected fault counted as the limit")
			}
		})
	}
}

// statuses runs n requests, each for its own job, and returns their statuses.
func statuses(b *bundle, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = b.chat(simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", fmt.Sprintf("job-%d", i)).status
	}
	return out
}

func TestFaultRatesAndSeed(t *testing.T) {
	t.Parallel()
	cfg := mockapi.Config{Seed: 42, RPM: mockapi.Unlimited, Rate429: 0.2, Rate500: 0.2, Rate503: 0.2}
	b := setup(t, cfg)
	got := statuses(b, 1000)
	count := map[int]int{}
	for _, s := range got {
		count[s]++
	}
	for _, s := range []int{200, 429, 500, 503} {
		want := 200
		if s == 200 {
			want = 400
		}
		if count[s] < want*3/4 || count[s] > want*5/4 {
			t.Errorf("status %d: %d of 1000, want about %d", s, count[s], want)
		}
	}
	// The same seed gives the same faults to the same jobs, even after a reset.
	b.mock.Reset()
	again := statuses(b, 1000)
	b2 := setup(t, cfg)
	other := statuses(b2, 1000)
	for i := range got {
		if got[i] != again[i] || got[i] != other[i] {
			t.Fatalf("request %d: %d, after reset %d, other mock %d", i, got[i], again[i], other[i])
		}
	}
	cfg.Seed = 43
	b3 := setup(t, cfg)
	if diff := statuses(b3, 1000); fmt.Sprint(diff) == fmt.Sprint(got) {
		t.Errorf("another seed gave the same faults")
	}
	// A job's retries draw new faults: with rate 0.5 a job does not fail forever.
	b4 := setup(t, mockapi.Config{Rate500: 0.5, Seed: 1})
	okay := false
	for i := 0; i < 40 && !okay; i++ {
		okay = b4.chat(simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", "same").status == 200
	}
	if !okay {
		t.Errorf("40 retries of one job all failed at rate 0.5")
	}
}

// serve runs the mock behind a real HTTP server, for faults that need a connection.
func serve(t *testing.T, cfg mockapi.Config) (*mockapi.Server, string) {
	t.Helper()
	cfg.Key = testKey
	m, err := mockapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(func() { m.Close(); srv.Close() })
	return m, srv.URL
}

func post(ctx context.Context, t *testing.T, url, body string, header ...string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return client.Do(req)
}

func TestConnectionFaults(t *testing.T) {
	t.Parallel()
	t.Run("reset", func(t *testing.T) {
		t.Parallel()
		m, url := serve(t, mockapi.Config{RateReset: 1})
		_, err := post(context.Background(), t, url, simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", "r")
		if err == nil {
			t.Fatal("a reset connection gave a response")
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Logf("error (not ECONNRESET): %v", err)
		}
		if log, _ := m.Job("r"); len(log.Calls) != 1 || log.Calls[0].Outcome != "reset" || log.Calls[0].Status != 0 {
			t.Errorf("job log = %+v", log)
		}
		if m.Stats().Faults["reset"] != 1 {
			t.Errorf("faults = %v", m.Stats().Faults)
		}
	})
	t.Run("truncate", func(t *testing.T) {
		t.Parallel()
		m, url := serve(t, mockapi.Config{RateTruncate: 1})
		resp, err := post(context.Background(), t, url, simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", "t")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !errors.Is(err, io.ErrUnexpectedEOF) || int64(len(body)) >= resp.ContentLength {
			t.Errorf("status %d, read error %v, %d of %d bytes", resp.StatusCode, err, len(body), resp.ContentLength)
		}
		if log, _ := m.Job("t"); log.Successes != 0 || log.Calls[0].Outcome != "truncated" {
			t.Errorf("a truncated answer counted as a success: %+v", log)
		}
	})
	t.Run("truncate stream", func(t *testing.T) {
		t.Parallel()
		_, url := serve(t, mockapi.Config{RateTruncate: 1})
		resp, err := post(context.Background(), t, url, `{"model":"mimo-v2.6-pro","stream":true,"messages":[{"role":"user","content":"hi there"}]}`)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil || strings.Contains(string(body), "[DONE]") {
			t.Errorf("a truncated stream ended cleanly: %v %s", err, body)
		}
	})
	t.Run("hang until the client gives up", func(t *testing.T) {
		t.Parallel()
		m, url := serve(t, mockapi.Config{RateHang: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := post(ctx, t, url, simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", "h")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want a timeout", err)
		}
		waitFor(t, func() bool { l, _ := m.Job("h"); return l.Calls[0].Outcome == "hung" })
	})
	t.Run("hang for HangFor", func(t *testing.T) {
		t.Parallel()
		_, url := serve(t, mockapi.Config{RateHang: 1, HangFor: 50 * time.Millisecond})
		_, err := post(context.Background(), t, url, simple("mimo-v2.6-flash", "hi"))
		if err == nil {
			t.Fatal("a hung request got a response")
		}
	})
	t.Run("close releases hangs", func(t *testing.T) {
		t.Parallel()
		m, url := serve(t, mockapi.Config{RateHang: 1})
		errc := make(chan error, 1)
		go func() {
			_, err := post(context.Background(), t, url, simple("mimo-v2.6-flash", "hi"))
			errc <- err
		}()
		waitFor(t, func() bool { return m.Stats().Faults["hang"] == 1 })
		m.Close()
		select {
		case err := <-errc:
			if err == nil {
				t.Error("a released hang got a response")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not release the hung request")
		}
	})
	t.Run("latency canceled", func(t *testing.T) {
		t.Parallel()
		m, url := serve(t, mockapi.Config{Latency: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := post(ctx, t, url, simple("mimo-v2.6-flash", "hi")); err == nil {
			t.Fatal("no error")
		}
		waitFor(t, func() bool { return m.Stats().Canceled == 1 })
	})
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	_, url := serve(t, mockapi.Config{Latency: 30 * time.Millisecond, Jitter: 10 * time.Millisecond})
	start := time.Now()
	resp, err := post(context.Background(), t, url, simple("mimo-v2.6-flash", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("answered after %s, want at least latency - jitter (20ms)", d)
	}
}

func TestJobStats(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{RPM: 1, Limits: map[string]mockapi.Limit{"mimo-v2.6-flash": {RPM: mockapi.Unlimited}}})
	job := func(id, attempt string) response {
		return b.chat(simple("mimo-v2.6-pro", "hi"), "X-Mimoq-Job-Id", id, "X-Mimoq-Attempt", attempt)
	}
	// Job a: answered, then asked again — a duplicate.
	if r := job("a", "1"); r.status != 200 {
		t.Fatalf("a1 = %d", r.status)
	}
	// Job b: rate limited (Retry-After 60 s), comes back after 10 s: an
	// undercut; then after the full wait: fine.
	r := job("b", "1")
	if r.status != 429 || r.header.Get("Retry-After") != "60" {
		t.Fatalf("b1 = %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	b.clock.Advance(10 * time.Second)
	if r := job("b", "2"); r.status != 429 {
		t.Fatalf("b2 = %d", r.status)
	}
	// b2 was given Retry-After 50 s; returning 50 s - 40 ms later is within tolerance.
	b.clock.Advance(50*time.Second - 40*time.Millisecond)
	if r := job("b", "3"); r.status != 429 {
		t.Fatalf("b3 = %d", r.status)
	}
	b.clock.Advance(time.Second)
	if r := job("b", "4"); r.status != 200 {
		t.Fatalf("b4 = %d %s", r.status, r.body)
	}
	b.clock.Advance(time.Minute)
	if r := job("a", "2"); r.status != 200 {
		t.Fatalf("a2 = %d", r.status)
	}
	// A request without a job header is not a job.
	b.chat(simple("mimo-v2.6-flash", "hi"))
	// Failed validation still counts as a call of the job.
	b.chat(`{"model":"mimo-v2.6-flash"}`, "X-Mimoq-Job-Id", "c")

	st := b.stats()
	if st.JobsSeen != 3 || st.Duplicates != 1 || st.MaxCallsPerJob != 4 || st.RetryAfterUndercut != 1 {
		t.Errorf("jobs %d, duplicates %d, max calls %d, undercuts %d; want 3, 1, 4, 1",
			st.JobsSeen, st.Duplicates, st.MaxCallsPerJob, st.RetryAfterUndercut)
	}
	if st.TotalRequests != 8 || st.ByStatus["200"] != 4 || st.ByStatus["429"] != 3 || st.ByStatus["400"] != 1 {
		t.Errorf("total %d, by status %v", st.TotalRequests, st.ByStatus)
	}
	if pro := st.Models["mimo-v2.6-pro"]; pro.Requests != 6 || pro.LimitExceeded != 3 {
		t.Errorf("pro = %+v", pro)
	}

	resp := b.do("GET", "/mock/jobs/b", "", nil)
	var log mockapi.JobLog
	if err := jsonDecode(resp.body, &log); err != nil || resp.status != 200 {
		t.Fatalf("GET /mock/jobs/b: %d %s", resp.status, resp.body)
	}
	if len(log.Calls) != 4 || log.Successes != 1 {
		t.Fatalf("job b = %+v", log)
	}
	c := log.Calls
	if c[0].Status != 429 || c[0].RetryAfterMS != 60000 || c[0].Attempt != 1 || c[0].Model != "mimo-v2.6-pro" || !hex32.MatchString(c[0].RequestID) {
		t.Errorf("call 1 = %+v", c[0])
	}
	if !c[1].Undercut || c[2].Undercut || c[3].Undercut || c[3].Status != 200 || c[3].Outcome != "answered" {
		t.Errorf("undercut flags %v %v %v, last %+v", c[1].Undercut, c[2].Undercut, c[3].Undercut, c[3])
	}
	if !c[1].Time.Equal(c[0].Time.Add(10 * time.Second)) {
		t.Errorf("call times %s, %s", c[0].Time, c[1].Time)
	}
	if a, _ := b.mock.Job("a"); !a.Calls[1].Duplicate || a.Calls[0].Duplicate {
		t.Errorf("job a = %+v", a)
	}
	if r := b.do("GET", "/mock/jobs/nope", "", nil); r.status != 404 {
		t.Errorf("unknown job: %d", r.status)
	}

	if r := b.do("POST", "/mock/reset", "", nil); r.status != 204 {
		t.Fatalf("reset: %d", r.status)
	}
	st = b.stats()
	if st.TotalRequests != 0 || st.JobsSeen != 0 || st.Duplicates != 0 || st.Models["mimo-v2.6-pro"].MaxRPMWindow.Received != 0 {
		t.Errorf("after reset: %+v", st)
	}
	// The reset also cleared the rate-limit log.
	if r := job("d", "1"); r.status != 200 {
		t.Errorf("after reset: %d", r.status)
	}
}

func TestConcurrentDuplicateSuccess(t *testing.T) {
	t.Parallel()
	_, url := serve(t, mockapi.Config{Latency: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := post(context.Background(), t, url, simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", "twin")
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	resp, err := http.Get(url + "/mock/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st mockapi.Stats
	if err := jsonDecodeReader(resp.Body, &st); err != nil {
		t.Fatal(err)
	}
	// Both arrived before either was answered: the second 2xx is the duplicate.
	if st.Duplicates != 1 || st.ByStatus["200"] != 2 {
		t.Errorf("duplicates %d, 200s %d", st.Duplicates, st.ByStatus["200"])
	}
}
