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
	bk := batchKey(id)
	prev, err := cancelBatchScript.Run(ctx, s.rdb, []string{bk}, fmtTime(now)).Text()
	if err != nil {
		return 0, fmt.Errorf("cancel batch %s: %w", id, err)
	}
	switch prev {
	case "missing":
		return 0, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	case string(job.BatchDone):
		return 0, nil
	}
	h, err := s.rdb.HMGet(ctx, bk, "total", "created_ms", "queue", "finished_at").Result()
	if err != nil {
		return 0, fmt.Errorf("cancel batch %s: %w", id, err)
	}
	if toStr(h[3]) != "" {
		return 0, nil // over already
	}
	total, createdMs, queue := atoi(toStr(h[0])), int64(atoi(toStr(h[1]))), toStr(h[2])
	canceled := 0
	for start := 0; start < total; start += cancelChunk {
		n := min(cancelChunk, total-start)
		keys := make([]string, 2, 2+n)
		keys[0], keys[1] = bk, batchLinesKey(id)
		argv := make([]any, 0, 4+2*n)
		argv = append(argv, fmtTime(now), s.ttlSeconds(), id, queue)
		for i := range n {
			jid := batchJobID(id, createdMs, start+i)
			keys = append(keys, jobKey(jid))
			argv = append(argv, jid, start+i)
		}
		res, err := cancelChunkScript.Run(ctx, s.rdb, keys, argv...).Int64Slice()
		if err != nil {
			return canceled, fmt.Errorf("cancel batch %s: %w", id, err)
		}
		canceled += int(res[0])
	}
	// Every line has been through: a reconciler finding the batch canceled
	// and not over knows this cancel was not interrupted.
	if err := s.rdb.HSet(ctx, bk, "cancel_done", 1).Err(); err != nil {
		return canceled, fmt.Errorf("cancel batch %s: %w", id, err)
	}
	return canceled, nil
}
