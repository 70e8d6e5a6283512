package worker

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
)

// reconcileLock is taken by the worker that runs the reconciler for one
// interval, so that one process of the fleet does the work.
const reconcileLock = job.KeyPrefix + "reconciler:lock"

// reconcileLoop runs the reconciler every ReconcileInterval in whichever
// worker of the fleet takes the lock.
func (w *Worker) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, err := w.cfg.Redis.SetArgs(ctx, reconcileLock, w.cfg.ID, redis.SetArgs{Mode: "NX",
			TTL: w.cfg.ReconcileInterval * 9 / 10}).Result()
		if err != nil && err != redis.Nil || ok != "OK" {
			continue // another worker has it, or Redis is away: next time
		}
		if _, err := w.Reconcile(ctx); err != nil {
			w.log.Error().Err(err).Msg("reconcile")
		}
	}
}

// Reconcile runs one reconciler pass now (see records.Store.Reconcile):
// jobs that lost their task get one again, dead letters a crash left
// unwritten are written, interrupted cancels complete.
func (w *Worker) Reconcile(ctx context.Context) (records.ReconcileReport, error) {
	rep, err := w.records.Reconcile(ctx, deadLetters{w.dlq}, records.ReconcileOptions{Grace: w.cfg.ReconcileGrace}, time.Now())
	for _, id := range rep.Unannounced {
		if err := w.notifyBatch(ctx, id); err != nil {
			w.log.Warn().Err(err).Str("batch_id", id).Msg("webhook of a batch's end (retried next pass)")
		}
	}
	for kind, n := range map[string]int{"task_recreated": rep.TasksRecreated, "dead_letter_written": rep.DeadLettersWritten,
		"cancel_completed": rep.CancelsCompleted, "expiry_completed": rep.ExpiriesCompleted, "lost": rep.Lost} {
		if n > 0 {
			w.metrics.repairs.WithLabelValues(kind).Add(float64(n))
		}
	}
	if rep.Repairs() > 0 {
		w.log.Warn().Int("tasks_recreated", rep.TasksRecreated).Int("dead_letters_written", rep.DeadLettersWritten).
			Int("cancels_completed", rep.CancelsCompleted).Int("expiries_completed", rep.ExpiriesCompleted).
			Int("lost", rep.Lost).Msg("reconciler repaired jobs")
	}
	return rep, err
}

// deadLetters is the dead-letter store as the reconciler sees it.
type deadLetters struct{ s *dlq.Store }

var _ records.DeadLetters = deadLetters{}

func (d deadLetters) Missing(ctx context.Context, ids []string) ([]string, error) {
	return d.s.Missing(ctx, ids)
}

func (d deadLetters) Write(ctx context.Context, j *job.Job) error {
	return d.s.Put(ctx, dlq.FromJob(j))
}
