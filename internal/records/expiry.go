package records

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// Deadlines. A single job's deadline and a batch's completion window are
// kept on their records (deadline_ms, expires_ms), where Begin checks them,
// so that a job is never called after its end however late its task is
// delivered. The index below is what makes them end on time when no
// delivery comes (a paused lane, a busy fleet): ExpireDue, run by every
// worker, expires what is due.
//
//	mimoq:expiries   sorted set: "job:<id>" and "batch:<id>" by deadline (ms)
const expiriesKey = job.KeyPrefix + "expiries"

const (
	expiryJob   = "job:"
	expiryBatch = "batch:"
)

// scheduleExpiry puts id (of kind expiryJob or expiryBatch) in the index of
// deadlines, at.
func (s *Store) scheduleExpiry(ctx context.Context, kind, id string, at time.Time) error {
	return s.rdb.ZAdd(ctx, expiriesKey, redis.Z{Score: float64(at.UnixMilli()), Member: kind + id}).Err()
}

// ExpireReport is what one ExpireDue pass did.
type ExpireReport struct {
	Handled int // entries of the index handled
	Jobs    int // single jobs expired
	// JobIDs are the single jobs expired, for their webhooks.
	JobIDs  []string
	Batches int // batches whose window ended
	Lines   int // jobs of those batches expired
}

// ExpireDue expires what is due at now: single jobs whose deadline passed
// before they started, and batches whose completion window ended (their
// jobs that have not started). Each entry leaves the index once handled;
// several workers may run it at once (each change is idempotent). It
// handles at most limit entries.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) (ExpireReport, error) {
	var rep ExpireReport
	due, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: expiriesKey, Start: "-inf",
		Stop: fmt.Sprint(now.UnixMilli()), ByScore: true, Count: int64(limit)}).Result()
	if err != nil {
		return rep, fmt.Errorf("expire: read deadlines: %w", err)
	}
	for _, m := range due {
		switch {
		case strings.HasPrefix(m, expiryJob):
			id := strings.TrimPrefix(m, expiryJob)
			st, err := expireJobScript.Run(ctx, s.rdb, []string{jobKey(id)}, now.UnixMilli(), fmtTime(now),
				s.ttlSeconds(), id).Text()
			if err != nil {
				return rep, fmt.Errorf("expire job %s: %w", id, err)
			}
			if st == string(job.StateExpired) {
				rep.Jobs++
				rep.JobIDs = append(rep.JobIDs, id)
			}
		case strings.HasPrefix(m, expiryBatch):
			id := strings.TrimPrefix(m, expiryBatch)
			n, err := s.ExpireBatch(ctx, id, now)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return rep, err
			}
			rep.Batches++
			rep.Lines += n
		}
		if err := s.rdb.ZRem(ctx, expiriesKey, m).Err(); err != nil {
			return rep, fmt.Errorf("expire: %w", err)
		}
		rep.Handled++
	}
	return rep, nil
}
