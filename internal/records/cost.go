package records

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// A batch's spend (issue 12), in its own hash next to the batch record, in
// the batch's slot:
//
//	mimoq:batch:{T}:ID:spend   hash: pico (USD 1e-12 spent on its answered
//	                           jobs), max_pico (its --max-cost, absent: none),
//	                           cancel_reason ("budget_exhausted" once the
//	                           spend reached it and the batch was canceled)
//
// A job's own cost is the field cost_pico of its record. Finish writes it
// with the job's success and adds it to the batch's spend in the same step
// (finishScript), once: a replayed or stale write adds nothing.

func spendKey(id string) string { return batchKey(id) + ":spend" }

// ReasonBudgetExhausted is the cancel reason of a batch whose spend reached
// its maximum cost.
const ReasonBudgetExhausted = "budget_exhausted"

// SetMaxCost sets the most batch id may spend, in pico-USD (0: no limit).
// It is called before the batch's jobs are enqueued.
func (s *Store) SetMaxCost(ctx context.Context, id string, maxPico int64) error {
	k := spendKey(id)
	pipe := s.rdb.TxPipeline()
	if maxPico > 0 {
		pipe.HSet(ctx, k, "max_pico", maxPico)
	} else {
		pipe.HDel(ctx, k, "max_pico")
	}
	if s.ttl > 0 {
		pipe.Expire(ctx, k, s.ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("set max cost of batch %s: %w", id, err)
	}
	return nil
}

// CancelForBudget cancels batch id because its spend reached its maximum:
// the ordinary cancel (CancelBatch), with the reason kept for batch status.
// Only the first caller cancels; it reports whether it was this one.
func (s *Store) CancelForBudget(ctx context.Context, id string, now time.Time) (bool, int, error) {
	first, err := s.rdb.HSetNX(ctx, spendKey(id), "cancel_reason", ReasonBudgetExhausted).Result()
	if err != nil {
		return false, 0, fmt.Errorf("cancel batch %s for its budget: %w", id, err)
	}
	if !first {
		return false, 0, nil
	}
	n, err := s.CancelBatch(ctx, id, now)
	if err != nil && !errors.Is(err, ErrNotFound) {
		// Let the next answer's caller try again.
		_ = s.rdb.HDel(ctx, spendKey(id), "cancel_reason").Err()
	}
	return true, n, err
}

// Spend is what a batch spent and may spend.
type Spend struct {
	Pico, MaxPico int64
	CancelReason  string
}

// BatchSpend reads batch id's spend.
func (s *Store) BatchSpend(ctx context.Context, id string) (Spend, error) {
	v, err := s.rdb.HMGet(ctx, spendKey(id), "pico", "max_pico", "cancel_reason").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Spend{}, fmt.Errorf("read the spend of batch %s: %w", id, err)
	}
	num := func(i int) int64 { n, _ := strconv.ParseInt(toStr(v[i]), 10, 64); return n }
	return Spend{Pico: num(0), MaxPico: num(1), CancelReason: toStr(v[2])}, nil
}

// FillCost sets b's cost, maximum cost and cancel reason from its spend.
func (s *Store) FillCost(ctx context.Context, b *job.Batch) error {
	sp, err := s.BatchSpend(ctx, b.ID)
	if err != nil {
		return err
	}
	b.Cost = &job.Cost{USD: job.PicoToUSD(sp.Pico)}
	if sp.MaxPico > 0 {
		b.MaxCostUSD = job.PicoToUSD(sp.MaxPico)
	}
	b.CancelReason = sp.CancelReason
	return nil
}
