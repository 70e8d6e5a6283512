package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
)

// sweepLoop moves what asynq archived by itself into the dead-letter store.
// mimoq dead-letters jobs before their tasks leave asynq, and its tasks have
// no asynq retry budget to run out of, so the archive only fills with tasks
// mimoq cannot read. asynq keeps only the newest 10,000 archived tasks per
// queue and deletes them after 90 days, so it must never hold the only copy
// of a dead letter.
func (w *Worker) sweepLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.SweepInterval)
	defer t.Stop()
	for {
		moved, failed, err := w.Sweep(ctx)
		switch {
		case err != nil:
			w.log.Error().Err(err).Msg("sweep asynq archive")
		case moved > 0 || failed > 0:
			w.log.Warn().Int("jobs", moved).Int("failed", failed).Msg("swept tasks archived by asynq into the dead-letter store")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep moves every task archived in this worker's asynq queues into the
// dead-letter store. It returns how many it moved and how many it could not
// move: those are logged and counted (mimoq_sweep_failures_total), left in
// the archive for the next sweep, and do not stop the rest.
func (w *Worker) Sweep(ctx context.Context) (moved, failed int, err error) {
	for q := range w.AsynqQueues() {
		// Moved tasks leave the archive and the pages move up: read the
		// first page again until it holds only tasks that failed, then
		// go on past them.
		seen := map[string]bool{}
		for page := 1; ; {
			tasks, err := w.insp.ListArchivedTasks(q, asynq.PageSize(100), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) || err == nil && len(tasks) == 0 {
				break
			}
			if err != nil {
				return moved, failed, err
			}
			progressed := false
			for _, ti := range tasks {
				if seen[ti.ID] {
					continue
				}
				seen[ti.ID] = true
				if err := w.sweepOne(ctx, q, ti); err != nil {
					failed++
					w.metrics.sweepFailures.Inc()
					w.log.Error().Err(err).Str("queue", q).Str("task_id", ti.ID).Msg("cannot move an archived task into the dead-letter store")
					continue
				}
				moved++
				progressed = true
			}
			if !progressed {
				page++
			}
		}
	}
	return moved, failed, nil
}

// sweepOne dead-letters the job of one archived task, then deletes the task.
func (w *Worker) sweepOne(ctx context.Context, queue string, ti *asynq.TaskInfo) error {
	p, err := decodePayload(ti.Payload)
	if err != nil {
		// Not a mimoq job: keep what can be kept under the task's own ID.
		body, _ := json.Marshal(string(ti.Payload))
		rec := &dlq.Record{ID: ti.ID, Queue: queue, Class: job.ClassExhausted, Reason: "archived",
			ErrorCode: "unreadable_task", ErrorMessage: "asynq archived a task mimoq cannot read: " + ti.LastErr,
			DeadAt: time.Now().UTC(), Request: body}
		if err := w.dlq.Put(ctx, rec); err != nil {
			return err
		}
	} else {
		st, err := w.records.Abandon(ctx, p.JobID, p.BatchID, &job.Error{Code: "archived_by_asynq", Class: job.ClassExhausted,
			Reason: "archived", Message: "asynq archived the task: " + ti.LastErr}, time.Now())
		switch {
		case errors.Is(err, records.ErrNotFound) && p.Body != nil:
			if err := w.deadLetterLegacy(ctx, p); err != nil {
				return err
			}
		case errors.Is(err, records.ErrNotFound):
			// No record: the job was final and expired; nothing to keep.
		case err != nil:
			return err
		default:
			if err := w.settle(ctx, p.JobID, st); err != nil {
				return err
			}
		}
	}
	if err := w.insp.DeleteTask(queue, ti.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return fmt.Errorf("delete archived task: %w", err)
	}
	return nil
}
