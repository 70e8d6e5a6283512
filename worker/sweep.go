package worker

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
)

// sweepLoop moves what asynq archived by itself into the dead-letter store.
// mimoq dead-letters jobs before their tasks leave asynq, so the archive only
// fills when asynq gives up on its own: a task whose retry budget ran out
// through crash recoveries, or a payload mimoq cannot read. asynq keeps only
// the newest 10,000 archived tasks per queue and deletes them after 90 days,
// so it must never hold the only copy of a dead letter.
func (w *Worker) sweepLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.SweepInterval)
	defer t.Stop()
	for {
		if n, err := w.Sweep(ctx); err != nil {
			w.log.Error().Err(err).Msg("sweep asynq archive")
		} else if n > 0 {
			w.log.Warn().Int("jobs", n).Msg("swept tasks archived by asynq into the dead-letter store")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep moves every task archived in this worker's asynq queues into the
// dead-letter store and returns how many it moved.
func (w *Worker) Sweep(ctx context.Context) (int, error) {
	moved := 0
	for q := range w.AsynqQueues() {
		for {
			tasks, err := w.insp.ListArchivedTasks(q, asynq.PageSize(100))
			if err != nil {
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				return moved, err
			}
			if len(tasks) == 0 {
				break
			}
			for _, ti := range tasks {
				if err := w.sweepOne(ctx, q, ti); err != nil {
					return moved, err
				}
				moved++
			}
		}
	}
	return moved, nil
}

func (w *Worker) sweepOne(ctx context.Context, queue string, ti *asynq.TaskInfo) error {
	var p enqueue.Payload
	if err := json.Unmarshal(ti.Payload, &p); err != nil || p.JobID == "" {
		// Not a mimoq job: keep what can be kept under the task's own ID.
		body, _ := json.Marshal(string(ti.Payload))
		p = enqueue.Payload{JobID: ti.ID, Queue: queue, Body: body, SubmittedAt: time.Now().UTC()}
	}
	b, err := w.records.Begin(ctx, &p, w.cfg.ID+" (sweeper)", time.Now())
	if err != nil {
		return err
	}
	if b.State.Final() {
		if err := w.settle(ctx, &p, b.State); err != nil {
			return err
		}
	} else if err := w.deadLetter(ctx, &p, &enqueue.JobError{
		Code: "archived_by_asynq", Class: "exhausted", Reason: "archived",
		Message: "asynq archived the task: " + ti.LastErr,
	}, nil, nil); err != nil {
		return err
	}
	if err := w.insp.DeleteTask(queue, ti.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return err
	}
	return nil
}
