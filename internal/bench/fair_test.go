package bench

import (
	"context"
	"fmt"
	"time"

	"testing"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/worker"
)

// BenchmarkFairShare (issue 13 §2): at a fleet limit of 20 requests/s (two
// workers, the mock enforcing the same limit), batch X of 5,000 lines, then
// 2 s later batch Y of 50 lines on the same model: how long Y takes, and
// how much of the limit the two use while X runs on. FIFO (asynq's pending
// list, and mimoq before fair scheduling) would run Y after X's remaining
// lines: the baseline column is that wait at the measured rate.
func BenchmarkFairShare(b *testing.B) {
	const rps, nx, ny = 20, 5000, 50
	const model = "mimo-v2.6-flash"
	w := newWorld(b, mockapi.Config{RPM: rps * 60, Latency: 50 * time.Millisecond})
	for range 2 {
		w.startWorker(rps*60, 20, worker.Backoff{})
	}
	ctx := context.Background()
	for range b.N {
		x, err := w.client.SubmitBatch(ctx, batchFile(b, nx, model), enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		ySubmit := time.Now()
		y, err := w.client.SubmitBatch(ctx, batchFile(b, ny, model), enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		xAtY, err := w.client.GetBatch(ctx, x.ID)
		if err != nil {
			b.Fatal(err)
		}
		yDone, err := w.client.WaitBatch(ctx, y.ID)
		if err != nil {
			b.Fatal(err)
		}
		took := yDone.FinishedAt.Sub(ySubmit)
		// X runs on alone for 20 s: the limit must stay used.
		time.Sleep(20 * time.Second)
		end := time.Now()
		xNow, err := w.client.GetBatch(ctx, x.ID)
		if err != nil {
			b.Fatal(err)
		}
		done := (xNow.Total - xNow.Pending) + ny
		use := float64(done) / (end.Sub(x.CreatedAt).Seconds() * rps)
		fifo := time.Duration(float64(xAtY.Pending) / rps * float64(time.Second))
		if _, err := w.client.CancelBatch(ctx, x.ID); err != nil {
			b.Fatal(err)
		}
		if _, err := w.client.WaitBatch(ctx, x.ID); err != nil {
			b.Fatal(err)
		}
		st := w.mock.Stats().Models[model]
		b.ReportMetric(took.Seconds(), "small_batch_s")
		b.ReportMetric(use*100, "use_%")
		record(figure{"fair share: 20 requests/s, Y (50 lines) 2 s after X (5,000)", "Y's completion time",
			fmt.Sprintf("%.1f s", took.Seconds()), fmt.Sprintf("%.0f s (FIFO: behind X's %d remaining lines)", fifo.Seconds(), xAtY.Pending),
			fmt.Sprintf("%.0f× sooner", fifo.Seconds()/took.Seconds()), "target ≤ 8 s"})
		record(figure{"fair share: 20 requests/s, Y (50 lines) 2 s after X (5,000)", "use of the limit from X's submit to 20 s after Y",
			fmt.Sprintf("%.1f %% (%d calls in %.0f s; mock's limit exceeded %d times)", use*100, done, end.Sub(x.CreatedAt).Seconds(), st.LimitExceeded),
			"", "", "target ≥ 98 %"})
	}
}

// BenchmarkFairnessIndex (issue 13 §2): four batches on one model at 20
// requests/s, with weights 1, 1, 2 and 4, and then four equal ones: Jain's
// fairness index of the calls each got over the same 15 s, divided by its
// weight (1.0: exactly fair; 0.25: one batch got everything, as FIFO
// gives).
func BenchmarkFairnessIndex(b *testing.B) {
	const rps, n = 20, 1000
	const model = "mimo-v2.6-flash"
	w := newWorld(b, mockapi.Config{RPM: rps * 60, Latency: 50 * time.Millisecond})
	w.startWorker(rps*60, 20, worker.Backoff{})
	ctx := context.Background()
	for range b.N {
		for _, weights := range [][]int{{1, 1, 1, 1}, {1, 1, 2, 4}} {
			var ids []string
			for _, wt := range weights {
				bt, err := w.client.SubmitBatch(ctx, batchFile(b, n, model), enqueue.BatchOptions{Weight: wt})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, bt.ID)
			}
			finished := func() []float64 {
				out := make([]float64, len(ids))
				for i, id := range ids {
					bt, err := w.client.GetBatch(ctx, id)
					if err != nil {
						b.Fatal(err)
					}
					out[i] = float64(bt.Total - bt.Pending)
				}
				return out
			}
			time.Sleep(3 * time.Second) // past the start
			before := finished()
			time.Sleep(15 * time.Second)
			after := finished()
			var sum, sq float64
			got := ""
			for i := range ids {
				x := (after[i] - before[i]) / float64(weights[i])
				sum += x
				sq += x * x
				got += fmt.Sprintf(" %.0f", after[i]-before[i])
			}
			jain := sum * sum / (float64(len(ids)) * sq)
			for _, id := range ids {
				if _, err := w.client.CancelBatch(ctx, id); err != nil {
					b.Fatal(err)
				}
				if _, err := w.client.WaitBatch(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(jain, fmt.Sprintf("jain_%d%d%d%d", weights[0], weights[1], weights[2], weights[3]))
			record(figure{"fairness: 4 batches at 20 requests/s", fmt.Sprintf("Jain's index of calls/weight over 15 s, weights %v", weights),
				fmt.Sprintf("%.3f (calls:%s)", jain, got), "0.25 (FIFO: the oldest batch gets every call)", "", "1.0 is exactly fair"})
		}
	}
}
