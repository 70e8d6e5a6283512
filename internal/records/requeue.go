package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
)

// DeadJob is what a requeue knows of a dead job: its dead letter.
type DeadJob struct {
	ID, BatchID, CustomID, Queue, Model string
	// Request is the request body (the dead letter keeps it): the job's
	// request from now on.
	Request []byte
	// DeadAt is when the dead letter says the job died.
	DeadAt time.Time
	// SetModel, when set, rewrites the request's model to SetModel (and
	// its body to SetBody) before the job runs again.
	SetModel string
	SetBody  []byte
}

// RequeueResult says what Requeue did.
type RequeueResult int

// The results of Requeue.
const (
	// Requeued: the job was dead and is queued again with a fresh budget.
	Requeued RequeueResult = iota
	// Recreated: the job's record had expired; it was written anew from
	// its dead letter, queued.
	Recreated
	// AlreadyRequeued: an earlier, interrupted requeue of the same death
	// reset the job; it may have run since.
	AlreadyRequeued
	// NotDead: the job is not dead (it died again later and that is
	// another dead letter, or it never died); nothing changed.
	NotDead
)

// Requeue puts dead job d back to queued with a fresh attempt budget and
// takes it out of its batch's dead count, in one step; every earlier
// delivery's lease ends with it, so a delivery still finishing the job's
// death changes nothing afterwards. Then it makes sure the job has a task
// (EnsureTask). It returns what it did and the job's state.
func (s *Store) Requeue(ctx context.Context, d DeadJob, now time.Time) (RequeueResult, job.State, error) {
	entry, _ := json.Marshal(job.Attempt{Start: now.UTC(), Reason: "requeued"})
	bk := jobKey(d.ID)
	if d.BatchID != "" {
		bk = batchKey(d.BatchID)
	}
	keys := []string{jobKey(d.ID), bk}
	body := d.Request
	if d.SetModel != "" {
		body = d.SetBody
	}
	vals, what, err := reply(requeueScript.Run(ctx, s.rdb, keys, fmtTime(now), entry, d.BatchID, fmtTime(d.DeadAt),
		d.SetModel, body), "requeue job "+d.ID)
	if err != nil {
		return 0, "", err
	}
	res, st := Requeued, job.StateQueued
	switch what {
	case "requeued":
	case "already":
		res, st = AlreadyRequeued, job.State(toStr(vals[1]))
	case "not_dead":
		return NotDead, job.State(toStr(vals[1])), nil
	case "missing":
		model := d.Model
		if d.SetModel != "" {
			model = d.SetModel
		}
		fields := []any{d.BatchID, body, "id", d.ID, "batch_id", d.BatchID, "custom_id", d.CustomID,
			"queue", d.Queue, "model", model, "state", string(job.StateQueued), "attempts", 0,
			"requeues", 1, "requeued_from", fmtTime(d.DeadAt), "submitted_at", fmtTime(now), "updated_at", fmtTime(now),
			"history", "[" + string(entry) + "]"}
		got, err := recreateScript.Run(ctx, s.rdb, keys, fields...).Text()
		if err != nil {
			return 0, "", fmt.Errorf("requeue job %s: %w", d.ID, err)
		}
		if got != "requeued" {
			return NotDead, job.State(got), nil // written meanwhile by another requeue
		}
		res = Recreated
	default:
		return 0, "", fmt.Errorf("requeue job %s: unexpected reply %v", d.ID, vals)
	}
	if st.Final() || st == job.StateRunning {
		return res, st, nil // nothing to enqueue, or a delivery holds the job
	}
	model := d.Model
	if d.SetModel != "" {
		model = d.SetModel
	}
	if err := s.EnsureTask(ctx, job.Payload{JobID: d.ID, BatchID: d.BatchID, CustomID: d.CustomID, Queue: d.Queue, Model: model}, now); err != nil {
		return res, st, err
	}
	return res, st, nil
}

// EnsureTask makes sure job p (not final) has an asynq task. A task still
// held by a delivery that is ending (the one that dead-lettered the job) is
// waited for, for up to 30 s: once it is gone, a new task is written; a task
// that asynq archived is replaced. A single job is entered in the
// reconciler's index first, which brings it back if this is interrupted.
func (s *Store) EnsureTask(ctx context.Context, p job.Payload, now time.Time) error {
	if p.BatchID == "" {
		if err := s.rdb.ZAdd(ctx, liveKey, redis.Z{Score: float64(now.UnixMilli()), Member: p.JobID}).Err(); err != nil {
			return fmt.Errorf("enqueue job %s: %w", p.JobID, err)
		}
	}
	q := job.AsynqQueue(p.Queue, p.Model)
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := s.enqueueTasks(ctx, []job.Payload{p})
		if err != nil {
			return fmt.Errorf("enqueue job %s: %w", p.JobID, err)
		}
		if res.Enqueued == 1 {
			return nil
		}
		st, err := s.rdb.HGet(ctx, asynqwire.TaskKey(q, p.JobID), "state").Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue // gone in between: write it again
		case err != nil:
			return fmt.Errorf("enqueue job %s: %w", p.JobID, err)
		}
		switch st {
		case "scheduled":
			// Parked (waiting for its turn in a backlog that may be gone:
			// its batch ended before this requeue) or due later: a parked
			// one is released now, the requeue being the operator's turn.
			if _, err := asynqwire.Unpark(ctx, s.rdb, q, []string{p.JobID}); err != nil {
				return fmt.Errorf("enqueue job %s: %w", p.JobID, err)
			}
			return nil
		case "pending", "retry", "aggregating":
			return nil // it will run, and the job is queued
		case "archived", "completed":
			if err := s.insp.DeleteTask(q, p.JobID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return fmt.Errorf("enqueue job %s: remove old task: %w", p.JobID, err)
			}
		default: // active: a delivery is ending; it finds the job queued again and keeps its task
			if time.Now().After(deadline) {
				return nil // that delivery keeps the task, or the reconciler writes one
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
