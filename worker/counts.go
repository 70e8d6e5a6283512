package worker

import (
	"context"
	"sync"
	"time"

	"github.com/mimoq/mimoq/internal/ops"
)

// attemptCounts adds up this process's API attempts per model between two
// writes of the fleet-wide counters that `mimoq stats` reads (calls in the
// last minute, successes in the last hour): one pipelined write a second,
// instead of a round trip per attempt.
type attemptCounts struct {
	mu   sync.Mutex
	m    map[string][2]int64 // model → calls, successes
	cost map[string]int64    // model → pico-USD of the answers
}

func (c *attemptCounts) addCost(model string, pico int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cost == nil {
		c.cost = make(map[string]int64)
	}
	c.cost[model] += pico
}

func (c *attemptCounts) add(model string, success bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string][2]int64)
	}
	v := c.m[model]
	v[0]++
	if success {
		v[1]++
	}
	c.m[model] = v
}

func (c *attemptCounts) take() (map[string][2]int64, map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, cost := c.m, c.cost
	c.m, c.cost = nil, nil
	return m, cost
}

// countLoop writes the counts every second until ctx ends, then once more.
func (w *Worker) countLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			w.flushCounts(fctx)
			cancel()
			return
		case <-t.C:
			w.flushCounts(ctx)
		}
	}
}

func (w *Worker) flushCounts(ctx context.Context) {
	m, cost := w.counts.take()
	if len(m) == 0 && len(cost) == 0 {
		return
	}
	now := time.Now()
	pipe := w.cfg.Redis.Pipeline()
	for model, v := range m {
		_ = ops.CountAttempts(ctx, pipe, model, v[0], v[1], now)
	}
	for model, pico := range cost {
		ops.CountCost(ctx, pipe, model, pico, now)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Statistics only: a lost second of counts is not worth a retry.
		w.log.Warn().Err(err).Msg("write attempt counters")
	}
	if w.gate == nil {
		return
	}
	for model, v := range m {
		// Successes end a run of 429s and let a lowered rate climb back.
		if err := w.gate.NoteOK(ctx, model, v[1]); err != nil {
			w.log.Warn().Err(err).Msg("note successes")
		}
	}
}
