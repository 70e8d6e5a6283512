package worker

import (
	"context"
	"time"

	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/ops"
)

// expiryLoop ends what is due: single jobs whose deadline passed before
// they started and batches whose completion window ended. Every worker
// runs it (each expiry is idempotent), so deadlines hold while any worker
// is up, whatever the lanes are doing.
func (w *Worker) expiryLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.ExpiryInterval)
	defer t.Stop()
	for {
		for {
			rep, err := w.records.ExpireDue(ctx, time.Now(), expiryBatchSize)
			if err != nil {
				if ctx.Err() == nil {
					w.log.Error().Err(err).Msg("expire due jobs and batches")
				}
				break
			}
			if rep.Jobs > 0 || rep.Lines > 0 {
				w.countExpired(ctx, "", rep.Jobs)
				w.countExpired(ctx, "batch", rep.Lines)
				w.log.Info().Int("jobs", rep.Jobs).Int("batches", rep.Batches).Int("batch_jobs", rep.Lines).
					Msg("expired jobs past their deadline")
			}
			for _, id := range rep.JobIDs {
				// At once, for a subscriber waiting on it; should this
				// fail, the job's task, seen again, tells it.
				if err := w.notifyJob(ctx, id, true, job.StateExpired); err != nil && ctx.Err() == nil {
					w.log.Warn().Err(err).Str("job_id", id).Msg("webhook of an expired job (told when its task comes)")
				}
			}
			if rep.Handled < expiryBatchSize {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// countExpired counts n jobs expired (of a batch when batchID is set) in
// the metrics and in the fleet-wide counter of `mimoq stats`.
func (w *Worker) countExpired(ctx context.Context, batchID string, n int) {
	if n == 0 {
		return
	}
	kind := "job"
	if batchID != "" {
		kind = "batch"
	}
	w.metrics.expired.WithLabelValues(kind).Add(float64(n))
	if err := ops.CountExpired(ctx, w.cfg.Redis, int64(n), time.Now()); err != nil {
		w.log.Warn().Err(err).Msg("count expired jobs")
	}
}

// expiryBatchSize is how many due deadlines one ExpireDue call handles.
const expiryBatchSize = 100
