package worker

import (
	"context"
	"sync"
	"time"

	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/ops"
)

// attemptCounts adds up this process's API attempts and outcomes per model
// between two writes of the fleet-wide per-minute counters that `mimoq
// stats` and the web page read: one pipelined write a second, instead of a
// round trip per attempt.
type attemptCounts struct {
	mu sync.Mutex
	m  map[string]ops.MinuteCounts
}

func (c *attemptCounts) add(model string, d ops.MinuteCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]ops.MinuteCounts)
	}
	v := c.m[model]
	v.Add(d)
	c.m[model] = v
}

// outcome counts what became of an attempt (or of a job dead-lettered
// without one): "retried", or "dead" with its class.
func (c *attemptCounts) outcome(model, outcome string, class job.Class) {
	var d ops.MinuteCounts
	switch {
	case outcome == "retried":
		d.Retried = 1
	case outcome == "dead" && class == job.ClassExhausted:
		d.DeadExhausted = 1
	case outcome == "dead":
		d.DeadTerminal = 1
	default:
		return
	}
	if model != "" {
		c.add(model, d)
	}
}

// addCost counts pico-USD spent on model's answers.
func (c *attemptCounts) addCost(model string, pico int64) {
	c.add(model, ops.MinuteCounts{CostPico: pico})
}

func (c *attemptCounts) take() map[string]ops.MinuteCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.m
	c.m = nil
	return m
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
	m := w.counts.take()
	if len(m) == 0 {
		return
	}
	now := time.Now()
	pipe := w.cfg.Redis.Pipeline()
	for model, v := range m {
		_ = ops.CountMinute(ctx, pipe, model, v, now)
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
		if v.Succeeded == 0 {
			continue
		}
		if err := w.gate.NoteOK(ctx, model, v.Succeeded); err != nil {
			w.log.Warn().Err(err).Msg("note successes")
		}
	}
}
