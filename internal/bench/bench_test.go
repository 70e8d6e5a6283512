package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/worker"
)

const payloadSample = `{"job_id":"01JD0000000000000000000000","batch_id":"b","custom_id":"req-1","queue":"batch","model":"mimo-v2.6-flash","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Summarise item 1 of the benchmark in one sentence."}],"max_tokens":64},"submitted_at":"2026-01-01T00:00:00Z"}`

// asynqEnqueueRate enqueues n tasks with asynq's own Client from g
// goroutines and returns tasks/s.
func asynqEnqueueRate(b *testing.B, w *world, n, g int) float64 {
	b.Helper()
	c := asynq.NewClientFromRedisClient(w.rdb)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := c.Enqueue(asynq.NewTask(job.TaskType, []byte(payloadSample)),
					asynq.Queue("baseline"), asynq.TaskID(fmt.Sprintf("base-%d-%d", g, i))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkSubmit: a 50,000-line batch file validated and enqueued by
// SubmitBatch, against asynq's own Client enqueueing as many tasks from 16
// goroutines (and from one). The VM is shared and noisy: three interleaved
// pairs on an emptied Redis, the median ratio reported.
func BenchmarkSubmit(b *testing.B) {
	const n, pairs = 50000, 3
	w := newWorld(b, mockapi.Config{})
	f := batchFile(b, n, "mimo-v2.6-flash")
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		one := asynqEnqueueRate(b, w, n/4, 1)
		var rates, bases, ratios []float64
		for range pairs {
			if err := w.rdb.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			sixteen := asynqEnqueueRate(b, w, n, 16)
			start := time.Now()
			batch, err := w.client.SubmitBatch(ctx, f, enqueue.BatchOptions{Source: "bench.jsonl"})
			if err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			if batch.Total != n {
				b.Fatalf("batch holds %d lines, want %d", batch.Total, n)
			}
			rates = append(rates, float64(n)/el.Seconds())
			bases = append(bases, sixteen)
			ratios = append(ratios, rates[len(rates)-1]/sixteen)
		}
		i := medianIndex(ratios)
		b.ReportMetric(rates[i], "lines/s")
		b.ReportMetric(bases[i], "asynq16_tasks/s")
		b.ReportMetric(ratios[i], "ratio")
		record(figure{"submit 50,000-line file", "lines/s (validate + enqueue)", fmt.Sprintf("%.0f", rates[i]),
			fmt.Sprintf("%.0f (asynq Client, 16 goroutines); %.0f (1 goroutine)", bases[i], one),
			fmt.Sprintf("%.2f×", ratios[i]), fmt.Sprintf("target ≥ 1.0×; median of %d interleaved pairs, ratios %s", pairs, list(ratios))})
	}
}

// medianIndex is the index of the median of xs (len odd).
func medianIndex(xs []float64) int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return xs[idx[a]] < xs[idx[b]] })
	return idx[len(idx)/2]
}

// list formats ratios as "0.91×, 1.02×, 1.10×".
func list(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f×", x)
	}
	return strings.Join(parts, ", ")
}

// BenchmarkEndToEnd: N jobs through a mimoq worker against the mock (zero
// latency, no rate limit), against asynq draining as many tasks with the same
// concurrency: with a no-op handler, and with the glue a home-made queue
// would have (decode the task, call the same mock over HTTP, store the
// answer in Redis) and none of mimoq's guarantees. Three rounds on an
// emptied Redis, each drainer once per round; the round with the median
// ratio to the glue is reported (the glue is the least any queue that
// calls the API does: the target is ≥ 0.6× of it).
func BenchmarkEndToEnd(b *testing.B) {
	const n, concurrency, rounds = 20000, 50, 3
	w := newWorld(b, mockapi.Config{})
	ctx := context.Background()
	for range b.N {
		type round struct{ base, glued, mq drain }
		var rs []round
		var ratios []float64
		for range rounds {
			if err := w.rdb.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			var r round
			r.base = w.asynqDrain(n, concurrency, "noop", func(*redis.Client) asynq.HandlerFunc {
				return func(context.Context, *asynq.Task) error { return nil }
			})
			r.glued = w.asynqDrain(n, concurrency, "glue", w.glueHandler)
			r.mq = w.mimoqDrain(n, concurrency)
			rs = append(rs, r)
			ratios = append(ratios, r.mq.rate/r.glued.rate)
		}
		r := rs[medianIndex(ratios)]
		mq, base, glued := r.mq, r.base, r.glued
		b.ReportMetric(mq.rate, "jobs/s")
		b.ReportMetric(base.rate, "asynq_noop/s")
		b.ReportMetric(glued.rate, "asynq_glue/s")
		b.ReportMetric(mq.rate/glued.rate, "ratio")
		record(figure{"end to end, 20,000 jobs, concurrency 50", "jobs/s against asynq + glue", fmt.Sprintf("%.0f", mq.rate),
			fmt.Sprintf("%.0f (asynq handler: decode, HTTP call to the same mock, store the answer)", glued.rate),
			fmt.Sprintf("%.2f×", mq.rate/glued.rate),
			fmt.Sprintf("target ≥ 0.6×; median of %d rounds, ratios %s", rounds, list(ratios))})
		record(figure{"end to end, 20,000 jobs, concurrency 50", "jobs/s (mock API, zero latency), for scale", fmt.Sprintf("%.0f", mq.rate),
			fmt.Sprintf("%.0f (asynq no-op drain: no API call)", base.rate), fmt.Sprintf("%.2f×", mq.rate/base.rate),
			fmt.Sprintf("glue itself: %.2f× of the no-op drain", glued.rate/base.rate)})
		record(figure{"end to end, 20,000 jobs, concurrency 50", "CPU per job: this process (worker + mock) + Redis",
			fmt.Sprintf("%.0f + %.0f µs", us(mq.proc), us(mq.redis)),
			fmt.Sprintf("no-op %.0f + %.0f µs; glue %.0f + %.0f µs", us(base.proc), us(base.redis), us(glued.proc), us(glued.redis)),
			"", "both cores are busy in every drain: CPU per job bounds the rate"})
		record(figure{"end to end, 20,000 jobs, concurrency 50", "Redis round trips per job (the drainer's) / commands Redis ran per job",
			fmt.Sprintf("%.2f / %.2f", mq.trips, mq.cmds),
			fmt.Sprintf("no-op %.2f / %.2f; glue %.2f / %.2f", base.trips, base.cmds, glued.trips, glued.cmds),
			"", "asynq's dequeue, ack and lease extension included; a pipeline is one round trip"})
	}
}

// mimoqDrain submits an n-line batch, then drains it with one worker.
func (w *world) mimoqDrain(n, concurrency int) drain {
	w.b.Helper()
	ctx := context.Background()
	f := batchFile(w.b, n, "mimo-v2.6-flash")
	batch, err := w.client.SubmitBatch(ctx, f, enqueue.BatchOptions{})
	if err != nil {
		w.b.Fatal(err)
	}
	start := time.Now()
	cpu := w.cpuMeter()
	trips := &tripCounter{}
	cmds := w.commands()
	fm := w.startCountedWorker(0, concurrency, worker.Backoff{}, trips)
	final, err := w.client.WaitBatch(ctx, batch.ID)
	if err != nil {
		w.b.Fatal(err)
	}
	d := drain{rate: float64(n) / time.Since(start).Seconds()}
	d.proc, d.redis = cpu(n)
	d.trips, d.cmds = float64(trips.n.Load())/float64(n), float64(w.commands()-cmds)/float64(n)
	fm.stop()
	if final.Succeeded != n {
		w.b.Fatalf("%d of %d jobs succeeded", final.Succeeded, n)
	}
	return d
}

// drain is what one drain of the queue measured.
type drain struct {
	rate        float64       // jobs/s
	proc, redis time.Duration // CPU per job, this process and the Redis server
	trips, cmds float64       // per job: the drainer's round trips to Redis, and the commands Redis ran
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// asynqDrain enqueues n tasks of type name and drains them with one asynq
// server running the handler newHandler makes for the server's Redis client.
func (w *world) asynqDrain(n, concurrency int, name string, newHandler func(*redis.Client) asynq.HandlerFunc) drain {
	w.b.Helper()
	ctx := context.Background()
	tasks := make([]asynqwire.Task, n)
	for i := range tasks {
		tasks[i] = asynqwire.Task{Type: name, Payload: []byte(payloadSample), ID: fmt.Sprintf("%s-%d", name, i), Queue: name}
	}
	for i := 0; i < n; i += 1000 {
		if _, err := asynqwire.EnqueueMany(ctx, w.rdb, tasks[i:min(i+1000, n)]); err != nil {
			w.b.Fatal(err)
		}
	}
	var done atomic.Int64
	finished := make(chan struct{})
	trips := &tripCounter{}
	rdb := w.countedClient(concurrency+20, trips)
	handler := newHandler(rdb)
	cmds := w.commands()
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: concurrency,
		Queues: map[string]int{name: 1}, TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(name, func(ctx context.Context, t *asynq.Task) error {
		if err := handler(ctx, t); err != nil {
			w.b.Errorf("%s handler: %v", name, err)
		}
		if done.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	})
	start := time.Now()
	cpu := w.cpuMeter()
	if err := srv.Start(mux); err != nil {
		w.b.Fatal(err)
	}
	<-finished
	d := drain{rate: float64(n) / time.Since(start).Seconds()}
	d.proc, d.redis = cpu(n)
	d.trips, d.cmds = float64(trips.n.Load())/float64(n), float64(w.commands()-cmds)/float64(n)
	srv.Shutdown()
	return d
}

// glueHandler is the least a home-made queue does per task: decode it, call
// the API, keep the answer (in rdb).
func (w *world) glueHandler(rdb *redis.Client) asynq.HandlerFunc {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	url := w.mockTS.URL + "/v1/chat/completions"
	return func(ctx context.Context, t *asynq.Task) error {
		var p struct {
			JobID string          `json:"job_id"`
			Body  json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(p.Body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+w.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		pipe := rdb.Pipeline()
		pipe.HSet(ctx, "glue:"+t.ResultWriter().TaskID(), "result", body)
		pipe.Expire(ctx, "glue:"+t.ResultWriter().TaskID(), time.Hour)
		_, err = pipe.Exec(ctx)
		return err
	}
}

// BenchmarkPickupLatency: single jobs submitted at 200/s to an idle worker;
// pickup = first API call start − submit time.
func BenchmarkPickupLatency(b *testing.B) {
	const rate, seconds = 200, 10
	w := newWorld(b, mockapi.Config{})
	w.startWorker(0, 50, worker.Backoff{})
	ctx := context.Background()
	body := []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"ping"}],"max_tokens":16}`)
	for range b.N {
		var ids []string
		tick := time.NewTicker(time.Second / rate)
		for range rate * seconds {
			<-tick.C
			id, err := w.client.Submit(ctx, body)
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		tick.Stop()
		var lat []time.Duration
		for _, id := range ids {
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			j, err := w.client.Wait(wctx, id)
			cancel()
			if err != nil || len(j.History) == 0 {
				b.Fatalf("job %s: %v", id, err)
			}
			lat = append(lat, j.History[0].Start.Sub(j.SubmittedAt))
		}
		p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
		b.ReportMetric(float64(p50)/1e6, "p50_ms")
		b.ReportMetric(float64(p99)/1e6, "p99_ms")
		record(figure{"pickup latency at 200 jobs/s", "p50 / p99", ms(p50) + " / " + ms(p99),
			"asynq defaults: p50 0.5 s, p99 1.4 s (issue #3)", "", "target p50 ≤ 20 ms, p99 ≤ 100 ms"})
	}
}

// BenchmarkRetryLateness: half the calls fail with 503; lateness = next
// attempt start − (previous attempt end + its backoff delay).
func BenchmarkRetryLateness(b *testing.B) {
	w := newWorld(b, mockapi.Config{Rate503: 0.5, Seed: 11})
	w.startWorker(0, 50, worker.Backoff{Base: 200 * time.Millisecond, Max: time.Second})
	ctx := context.Background()
	for range b.N {
		f := batchFile(b, 500, "mimo-v2.6-flash")
		batch, err := w.client.SubmitBatch(ctx, f, enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.client.WaitBatch(ctx, batch.ID); err != nil {
			b.Fatal(err)
		}
		var late []time.Duration
		err = w.client.Results(ctx, batch.ID, false, func(l *enqueue.ResultLine) error {
			j, err := w.client.Get(ctx, l.ID)
			if err != nil {
				return err
			}
			for i := 1; i < len(j.History); i++ {
				prev := j.History[i-1]
				due := prev.Start.Add(time.Duration(prev.DurationMs)*time.Millisecond + time.Duration(prev.NextDelay)*time.Millisecond)
				late = append(late, j.History[i].Start.Sub(due))
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		p50, p99, pmax := percentile(late, 0.5), percentile(late, 0.99), percentile(late, 1)
		b.ReportMetric(float64(p99)/1e6, "p99_ms")
		record(figure{"retry lateness (503 on half the calls)", fmt.Sprintf("p50 / p99 / max over %d retries", len(late)),
			ms(p50) + " / " + ms(p99) + " / " + ms(pmax), "asynq defaults: 5.35 s late (issue #3)", "", "target ≤ 1 s"})
	}
}

// BenchmarkFleetRateLimit: three workers (three gates: three processes as
// far as Redis is concerned) share a 10 requests/s limit (600 RPM) against
// a mock enforcing the same limit.
func BenchmarkFleetRateLimit(b *testing.B) {
	const n, rps = 200, 10
	w := newWorld(b, mockapi.Config{RPM: rps * 60})
	ctx := context.Background()
	var fleet []*fleetMember
	for range 3 {
		fleet = append(fleet, w.startWorker(rps*60, 50, worker.Backoff{}))
	}
	for range b.N {
		f := batchFile(b, n, "mimo-v2.6-flash")
		batch, err := w.client.SubmitBatch(ctx, f, enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		final, err := w.client.WaitBatch(ctx, batch.ID)
		if err != nil {
			b.Fatal(err)
		}
		var calls, permits int64
		for _, fm := range fleet {
			c, p := fm.w.LimiterStats()
			calls += c
			permits += p
		}
		var first, last time.Time
		_ = w.client.Results(ctx, batch.ID, false, func(l *enqueue.ResultLine) error {
			j, err := w.client.Get(ctx, l.ID)
			if err == nil && len(j.History) > 0 {
				t := j.History[0].Start
				if first.IsZero() || t.Before(first) {
					first = t
				}
				if t.After(last) {
					last = t
				}
			}
			return nil
		})
		use := float64(n-1) / (last.Sub(first).Seconds() * rps)
		st := w.mock.Stats()
		m := st.Models["mimo-v2.6-flash"]
		statsJSON, _ := json.Marshal(m.MaxPerSecond)
		b.ReportMetric(float64(calls)/float64(n), "limiter_calls/job")
		b.ReportMetric(use*100, "use_%")
		record(figure{"fleet rate limit: 3 workers, 10 requests/s", "limiter round trips per job", fmt.Sprintf("%.2f", float64(calls)/float64(n)),
			"~48 when every goroutine polls (issue #3)", "", "target ≤ 3"})
		record(figure{"fleet rate limit: 3 workers, 10 requests/s", "use of the limit; most in any 1-s window at the mock",
			fmt.Sprintf("%.1f %%; %s; mock's limit exceeded %d times; %d succeeded", use*100, statsJSON, m.LimitExceeded, final.Succeeded),
			"", "", "target ≥ 98 %, never above 10 in a 1-s window"})
	}
}
