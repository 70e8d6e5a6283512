package bench

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/worker"
)

var cooldownFlag = flag.Duration("cooldown", time.Minute,
	"length of model A's cooldown in BenchmarkCooldownPickup (issue 13 §1 asks for 1m)")

// BenchmarkCooldownPickup (issue 13 §1): model A's lane cools down (after a
// 429) with 1,000 batch jobs queued, on a worker with MIMOQ_CONCURRENCY=10
// and a limit of 6,000 RPM per model. Single interactive jobs of model B,
// submitted one at a time during the cooldown, must not wait for it:
// pickup = first API call start − submit time. Then how soon A's jobs call
// again after the cooldown's end (its first call's start − the end).
func BenchmarkCooldownPickup(b *testing.B) {
	const (
		concurrency = 10
		cooledModel = "mimo-v2.6-pro"
		batchLines  = 1000
	)
	cooldown := *cooldownFlag
	ctx := context.Background()
	body := []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"ping"}],"max_tokens":16}`)
	for range b.N {
		w := newWorld(b, mockapi.Config{})
		w.startWorker(6000, concurrency, worker.Backoff{})
		g, err := lane.NewGate(lane.GateConfig{Redis: w.rdb})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Cooldown(ctx, cooledModel, cooldown); err != nil {
			b.Fatal(err)
		}
		coolEnd := time.Now().Add(cooldown)
		g.Close()
		batch, err := w.client.SubmitBatch(ctx, batchFile(b, batchLines, cooledModel), enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		// A's servers take their tasks and wait for the lane.
		time.Sleep(time.Second)

		var lat []time.Duration
		for time.Until(coolEnd) > time.Second {
			id, err := w.client.Submit(ctx, body, enqueue.WithQueue(enqueue.QueueInteractive))
			if err != nil {
				b.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, cooldown+time.Minute)
			j, err := w.client.Wait(wctx, id)
			cancel()
			if err != nil || len(j.History) == 0 {
				b.Fatalf("job %s: %v", id, err)
			}
			lat = append(lat, j.History[0].Start.Sub(j.SubmittedAt))
			time.Sleep(20 * time.Millisecond)
		}
		wctx, cancel := context.WithTimeout(ctx, cooldown+5*time.Minute)
		done, err := w.client.WaitBatch(wctx, batch.ID)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		first := time.Time{}
		err = w.client.Results(ctx, batch.ID, false, func(l *enqueue.ResultLine) error {
			j, err := w.client.Get(ctx, l.ID)
			if err != nil {
				return err
			}
			if len(j.History) > 0 && (first.IsZero() || j.History[0].Start.Before(first)) {
				first = j.History[0].Start
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		st := w.mock.Stats()
		if done.Succeeded != batchLines || st.Duplicates != 0 || st.MaxCallsPerJob != 1 {
			b.Fatalf("batch: %d of %d succeeded; mock: %d duplicates, at most %d calls per job",
				done.Succeeded, batchLines, st.Duplicates, st.MaxCallsPerJob)
		}
		resume := first.Sub(coolEnd)
		if resume < 0 {
			b.Fatalf("%s was called %s before its cooldown's end", cooledModel, -resume)
		}
		p50, p99, pmax := percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 1)
		b.ReportMetric(float64(p50)/1e6, "p50_ms")
		b.ReportMetric(float64(p99)/1e6, "p99_ms")
		b.ReportMetric(float64(resume)/1e6, "resume_ms")
		record(figure{fmt.Sprintf("pickup during another model's %s cooldown", cooldown),
			fmt.Sprintf("B p50 / p99 / max over %d jobs, one at a time; A's first call after the end", len(lat)),
			ms(p50) + " / " + ms(p99) + " / " + ms(pmax) + "; " + ms(resume), "", "",
			fmt.Sprintf("target p99 ≤ 100 ms, resume ≤ 1 s; %d batch jobs of A queued, MIMOQ_CONCURRENCY=%d", batchLines, concurrency)})
	}
}
