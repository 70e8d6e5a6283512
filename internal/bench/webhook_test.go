package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/internal/webhooks"
	"github.com/mimoq/mimoq/worker"
)

// BenchmarkWebhooks: 1,000 single jobs through a lane limited to 6,000
// RPM, each job's end told to a fleet endpoint (job.*), against the same
// run without webhooks: deliveries have a queue and server of their own,
// so the lane's throughput should not move. Reported: both throughputs,
// deliveries per second and the delay from a job's end to its event's
// arrival.
func BenchmarkWebhooks(b *testing.B) {
	const n, rpm, concurrency = 1000, 6000, 50
	w := newWorld(b, mockapi.Config{})
	ctx := context.Background()
	var mu sync.Mutex
	arrived := map[string]time.Time{} // job ID → when its event came
	recv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		if _, ok := arrived[ev.Data.ID]; !ok {
			arrived[ev.Data.ID] = time.Now()
		}
		mu.Unlock()
	}))
	b.Cleanup(recv.Close)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("bench-webhook-signing-key-012345"))
	body := []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Say hi"}],"max_tokens":16}`)

	run := func(hooks bool) (rate float64, jobs map[string]*enqueue.Job) {
		if err := w.rdb.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		ids := make([]string, n)
		for i := range ids {
			id, err := w.client.Submit(ctx, body)
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = id
		}
		tune := func(c *worker.Config) {
			if hooks {
				c.Webhooks = worker.WebhookConfig{Endpoints: []webhooks.Endpoint{{URL: recv.URL + "/hook", Filters: []string{"job.*"}}},
					Secrets: []string{secret}, AllowHTTP: true, AllowHosts: "127.0.0.1"}
			}
		}
		start := time.Now()
		fm := w.startWorkerWith(rpm, concurrency, worker.Backoff{}, nil, tune)
		jobs = map[string]*enqueue.Job{}
		for _, id := range ids {
			j, err := w.client.Wait(ctx, id)
			if err != nil || j.State != job.StateSucceeded {
				b.Fatalf("job %s: %+v, %v", id, j, err)
			}
			jobs[id] = j
		}
		rate = float64(n) / time.Since(start).Seconds()
		if hooks {
			deadline := time.Now().Add(2 * time.Minute)
			for {
				mu.Lock()
				got := len(arrived)
				mu.Unlock()
				if got >= n {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d webhook events arrived", got, n)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		fm.stop()
		return rate, jobs
	}
	for range b.N {
		mu.Lock()
		clear(arrived)
		mu.Unlock()
		without, _ := run(false)
		with, jobs := run(true)
		var delays []time.Duration
		first, last := time.Time{}, time.Time{}
		mu.Lock()
		for id, at := range arrived {
			if j := jobs[id]; j != nil {
				delays = append(delays, at.Sub(j.FinishedAt))
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
			if at.After(last) {
				last = at
			}
		}
		mu.Unlock()
		b.ReportMetric(with, "jobs/s_with_webhooks")
		b.ReportMetric(without, "jobs/s_without")
		record(figure{"webhooks, 1,000 job events, lane at 6,000 RPM", "lane throughput with a fleet endpoint told every job's end",
			fmt.Sprintf("%.1f jobs/s", with), fmt.Sprintf("%.1f jobs/s (no webhooks)", without),
			fmt.Sprintf("%.3f×", with/without), "target: within 5 % (webhooks have their own queue and server)"})
		record(figure{"webhooks, 1,000 job events, lane at 6,000 RPM", "delay from a job's end to its event's arrival, p50 / p99",
			ms(percentile(delays, 0.5)) + " / " + ms(percentile(delays, 0.99)), "", "",
			fmt.Sprintf("%d events, %.0f deliveries/s while the jobs ran", len(delays), float64(len(delays))/max(last.Sub(first).Seconds(), 0.001))})
	}
}
