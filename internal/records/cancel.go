package records

import (
	"context"
	"fmt"
	"time"

	"github.com/mimoq/mimoq/internal/job"
)

// cancelChunk is how many lines one cancel script handles.
const cancelChunk = 1000

// CancelBatch cancels batch id: its jobs that have not started become
// canceled, its lines never enqueued (an interrupted submit) are written as
// canceled, and running jobs finish. It returns how many jobs it canceled.
// Canceling again completes a cancel that was interrupted and changes
// nothing else; a batch that is over is left alone. The tasks of canceled
// jobs stay in asynq until a worker takes them and, finding them canceled,
// drops them without calling the API.
func (s *Store) CancelBatch(ctx context.Context, id string, now time.Time) (int, error) {
	n, err := s.endBatchEarly(ctx, id, job.BatchCanceled, now)
	if err != nil {
		return n, fmt.Errorf("cancel batch %s: %w", id, err)
	}
	return n, nil
}

// ExpireBatch ends batch id's completion window: like CancelBatch, with
// expired for canceled. A canceled batch is left alone. It returns how
// many jobs it expired.
func (s *Store) ExpireBatch(ctx context.Context, id string, now time.Time) (int, error) {
	n, err := s.endBatchEarly(ctx, id, job.BatchExpired, now)
	if err != nil {
		return n, fmt.Errorf("expire batch %s: %w", id, err)
	}
	return n, nil
}

// endBatchEarly ends batch id in state to (canceled or expired) before its
// jobs have all run: the state, then every line, chunk by chunk, then the
// mark that the walk is complete.
func (s *Store) endBatchEarly(ctx context.Context, id string, to job.BatchState, now time.Time) (int, error) {
	bk := batchKey(id)
	prev, err := cancelBatchScript.Run(ctx, s.rdb, []string{bk}, fmtTime(now), string(to)).Text()
	if err != nil {
		return 0, err
	}
	switch job.BatchState(prev) {
	case "missing":
		return 0, ErrNotFound
	case job.BatchDone:
		return 0, nil
	case job.BatchCanceled, job.BatchExpired:
		if job.BatchState(prev) != to {
			return 0, nil // ended early the other way: that one completes it
		}
	}
	h, err := s.rdb.HMGet(ctx, bk, "total", "created_ms", "queue", "finished_at", "cancel_done").Result()
	if err != nil {
		return 0, err
	}
	if toStr(h[3]) != "" {
		return 0, nil // over already
	}
	if to == job.BatchExpired && job.BatchState(prev) == to && toStr(h[4]) != "" {
		// Its window ended and was walked already: a job requeued since
		// is an operator's fresh start.
		return 0, nil
	}
	total, createdMs, queue := atoi(toStr(h[0])), int64(atoi(toStr(h[1]))), toStr(h[2])
	ended := 0
	for start := 0; start < total; start += cancelChunk {
		n := min(cancelChunk, total-start)
		keys := make([]string, 2, 2+n)
		keys[0], keys[1] = bk, batchLinesKey(id)
		argv := make([]any, 0, 5+2*n)
		argv = append(argv, fmtTime(now), s.ttlSeconds(), id, queue, string(to))
		for i := range n {
			jid := batchJobID(id, createdMs, start+i)
			keys = append(keys, jobKey(jid))
			argv = append(argv, jid, start+i)
		}
		res, err := cancelChunkScript.Run(ctx, s.rdb, keys, argv...).Int64Slice()
		if err != nil {
			return ended, err
		}
		ended += int(res[0])
	}
	// Every line has been through: a reconciler finding the batch canceled
	// (or expired) and not over knows this walk was not interrupted.
	if err := s.rdb.HSet(ctx, bk, "cancel_done", 1).Err(); err != nil {
		return ended, err
	}
	return ended, nil
}
