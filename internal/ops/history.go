package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/lane"
)

// HistoryRetention is how far back the per-minute counters go: the web
// page's longest range. Memory is bounded by it: at most
// HistoryRetention/1min+2 small hashes per model, measured by
// TestHistoryMemory: 168 bytes a minute on a typical day (0.24 MB per model
// for 24 h), 360 bytes in the worst case (every counter, every lane state and
// a pause reason in every minute: 0.52 MB per model).
const HistoryRetention = 24 * time.Hour

// Fields of a model's minute hash besides calls and ok. Counters are added
// by the workers (HINCRBY); the lane_* flags, reason and dlq are samples a
// worker writes every 10 s (HSET), so a minute holds the worst lane state
// any worker saw in it.
const (
	fieldRetried       = "retried"
	fieldDeadTerminal  = "dead_terminal"
	fieldDeadExhausted = "dead_exhausted"
	fieldRateLimited   = "rate_limited"
	fieldCooldowns     = "cooldowns"
	fieldCost          = "cost_pico"
	fieldDLQ           = "dlq"
	fieldLane          = "lane_" // + lane.Status*
	fieldReason        = "reason"
	// maxReason keeps the hash in Redis's compact listpack encoding
	// (hash-max-listpack-value is 64 bytes by default); the full reason is
	// in the lane's own state.
	maxReason = 64
)

// MinuteCounts is what a worker adds to a model's current minute.
type MinuteCounts struct {
	// Calls are API calls made (every attempt that reached the API or
	// failed on the way).
	Calls int64
	// Succeeded are calls that succeeded.
	Succeeded int64
	// Retried are attempts that failed and were scheduled again.
	Retried int64
	// DeadTerminal and DeadExhausted are jobs dead-lettered, by class.
	DeadTerminal, DeadExhausted int64
	// RateLimited are calls the API answered with 429.
	RateLimited int64
	// Cooldowns are lane cooldowns started (after a 429).
	Cooldowns int64
	// CostPico is what the answers cost, in pico-USD (internal/price).
	CostPico int64
}

// Zero reports whether there is nothing to add.
func (c MinuteCounts) Zero() bool { return c == MinuteCounts{} }

// Add adds d to c.
func (c *MinuteCounts) Add(d MinuteCounts) {
	c.Calls += d.Calls
	c.Succeeded += d.Succeeded
	c.Retried += d.Retried
	c.DeadTerminal += d.DeadTerminal
	c.DeadExhausted += d.DeadExhausted
	c.RateLimited += d.RateLimited
	c.Cooldowns += d.Cooldowns
	c.CostPico += d.CostPico
}

// CountMinute adds c to model's counters of the minute of now, which Stats
// and History read. rdb may be a pipeline: the counters are then written
// with it, and the error comes from Exec.
func CountMinute(ctx context.Context, rdb redis.Cmdable, model string, c MinuteCounts, now time.Time) error {
	key := counterKey(model, now.Unix()/60)
	queue := func(p redis.Cmdable) {
		for _, f := range []struct {
			name string
			n    int64
		}{{fieldCalls, c.Calls}, {fieldOK, c.Succeeded}, {fieldRetried, c.Retried}, {fieldDeadTerminal, c.DeadTerminal},
			{fieldDeadExhausted, c.DeadExhausted}, {fieldRateLimited, c.RateLimited}, {fieldCooldowns, c.Cooldowns},
			{fieldCost, c.CostPico}} {
			if f.n != 0 || f.name == fieldCalls {
				p.HIncrBy(ctx, key, f.name, f.n)
			}
		}
		p.Expire(ctx, key, counterTTL)
	}
	if p, ok := rdb.(redis.Pipeliner); ok {
		queue(p) // the caller's Exec sends them
		return nil
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { queue(p); return nil }); err != nil {
		return fmt.Errorf("count minute of %s: %w", model, err)
	}
	return nil
}

// SampleLanes records, in the minute of now, the state of each lane and the
// model's dead letters (dead[model]; a model missing from dead has none).
// Workers call it every few seconds; rdb may be a pipeline.
func SampleLanes(ctx context.Context, rdb redis.Cmdable, states []lane.State, dead map[string]int64, now time.Time) error {
	minute := now.Unix() / 60
	queue := func(p redis.Cmdable) {
		for _, s := range states {
			key := counterKey(s.Model, minute)
			vals := []any{fieldLane + s.Status, "1", fieldDLQ, strconv.FormatInt(dead[s.Model], 10)}
			if s.Status == lane.StatusPaused && s.Reason != "" {
				vals = append(vals, fieldReason, truncate(s.Reason, maxReason))
			}
			p.HSet(ctx, key, vals...)
			p.Expire(ctx, key, counterTTL)
		}
	}
	if p, ok := rdb.(redis.Pipeliner); ok {
		queue(p)
		return nil
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { queue(p); return nil }); err != nil {
		return fmt.Errorf("sample lanes: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Minute is one model's numbers of one minute, as the workers counted them.
type Minute struct {
	// At is the start of the minute.
	At time.Time `json:"at"`
	MinuteCounts
	// DLQ is the model's dead letters at the last sample of the minute, or
	// -1 when no worker sampled it.
	DLQ int64 `json:"dlq"`
	// Lane is the worst state of the lane seen in the minute (paused, then
	// cooling_down, then running), or "" when no worker reported on it.
	Lane string `json:"lane,omitempty"`
	// Reason is the pause reason (cut to 64 bytes) when Lane is paused.
	Reason string `json:"reason,omitempty"`
}

// Dead is the jobs dead-lettered in the minute.
func (m Minute) Dead() int64 { return m.DeadTerminal + m.DeadExhausted }

// ModelHistory is one model's minutes, oldest first.
type ModelHistory struct {
	Model   string   `json:"model"`
	Minutes []Minute `json:"minutes"`
}

// History reads, per model, every minute from the one holding from to the
// one holding to (at most HistoryRetention of them, the newest kept), in one
// pipeline. Minutes nobody counted are zero, with DLQ -1 and no Lane.
func (o *Ops) History(ctx context.Context, models []string, from, to time.Time) ([]ModelHistory, error) {
	last := to.Unix() / 60
	first := max(from.Unix()/60, last-int64(HistoryRetention/time.Minute))
	if first > last {
		return nil, errors.New("history: from is after to")
	}
	n := int(last - first + 1)
	cmds := make([][]*redis.MapStringStringCmd, len(models))
	_, err := o.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range models {
			cmds[i] = make([]*redis.MapStringStringCmd, n)
			for k := range n {
				cmds[i][k] = p.HGetAll(ctx, counterKey(m, first+int64(k)))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("history: read counters: %w", err)
	}
	out := make([]ModelHistory, len(models))
	for i, m := range models {
		out[i] = ModelHistory{Model: m, Minutes: make([]Minute, n)}
		for k, c := range cmds[i] {
			out[i].Minutes[k] = parseMinute(time.Unix((first+int64(k))*60, 0).UTC(), c.Val())
		}
	}
	return out, nil
}

func parseMinute(at time.Time, h map[string]string) Minute {
	n := func(f string) int64 {
		v, _ := strconv.ParseInt(h[f], 10, 64)
		return v
	}
	m := Minute{At: at, MinuteCounts: MinuteCounts{
		Calls: n(fieldCalls), Succeeded: n(fieldOK), Retried: n(fieldRetried), DeadTerminal: n(fieldDeadTerminal),
		DeadExhausted: n(fieldDeadExhausted), RateLimited: n(fieldRateLimited), Cooldowns: n(fieldCooldowns),
		CostPico: n(fieldCost),
	}, DLQ: -1}
	if v, ok := h[fieldDLQ]; ok {
		m.DLQ, _ = strconv.ParseInt(v, 10, 64)
	}
	switch {
	case h[fieldLane+lane.StatusPaused] != "":
		m.Lane, m.Reason = lane.StatusPaused, h[fieldReason]
	case h[fieldLane+lane.StatusCoolingDown] != "" || m.Cooldowns > 0:
		m.Lane = lane.StatusCoolingDown
	case h[fieldLane+lane.StatusRunning] != "" || m.Calls > 0:
		m.Lane = lane.StatusRunning
	}
	return m
}
