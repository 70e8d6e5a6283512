package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/fair"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/records"
)

// Export writes every dead letter that matches f as one JSON object per
// line (the full record: request and history included), newest first, and
// returns how many it wrote.
func (o *Ops) Export(ctx context.Context, f dlq.Filter, w io.Writer) (int, error) {
	enc := json.NewEncoder(w)
	n := 0
	err := o.store.Iterate(ctx, f, pageSize, func(r dlq.Record) error {
		if err := enc.Encode(&r); err != nil {
			return fmt.Errorf("export dead letters: %w", err)
		}
		n++
		return nil
	}, dlq.WithDetail(true))
	return n, err
}

// Call counters: one small hash per model and minute, with the number of
// API calls ("calls"), of those that succeeded ("ok") and the rest of
// MinuteCounts and the lane samples (history.go), kept HistoryRetention.
// The {stats:M} hash tag keeps one model's keys in one cluster slot, so
// that one pipeline reads a day of them.
const (
	counterTTL = HistoryRetention + 2*time.Minute
	fieldCalls = "calls"
	fieldOK    = "ok"
)

func counterKey(model string, minute int64) string {
	return job.KeyPrefix + "{stats:" + model + "}:" + strconv.FormatInt(minute, 10)
}

// expiredKey is the counter of jobs expired in one minute, fleet-wide.
func expiredKey(minute int64) string {
	return job.KeyPrefix + "{stats-expired}:" + strconv.FormatInt(minute, 10)
}

// CountExpired counts n jobs expired at now in the fleet-wide counter that
// Stats reads (expired in the last hour).
func CountExpired(ctx context.Context, rdb redis.Cmdable, n int64, now time.Time) error {
	key := expiredKey(now.Unix() / 60)
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.IncrBy(ctx, key, n)
		p.Expire(ctx, key, counterTTL)
		return nil
	}); err != nil {
		return fmt.Errorf("count expired jobs: %w", err)
	}
	return nil
}

// expiredLastHour adds up the expired counters of the last 60 minutes.
func (o *Ops) expiredLastHour(ctx context.Context, now time.Time) (int64, error) {
	minute := now.Unix() / 60
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = expiredKey(minute - int64(i))
	}
	vals, err := o.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return 0, fmt.Errorf("stats: expired counters: %w", err)
	}
	var n int64
	for _, v := range vals {
		if s, ok := v.(string); ok {
			k, _ := strconv.ParseInt(s, 10, 64)
			n += k
		}
	}
	return n, nil
}

// CountAttempts counts calls API calls of model at now, ok of them
// successful, in the fleet-wide counters that Stats reads (requests in the
// last minute, successes in the last hour): CountMinute with only those.
func CountAttempts(ctx context.Context, rdb redis.Cmdable, model string, calls, ok int64, now time.Time) error {
	return CountMinute(ctx, rdb, model, MinuteCounts{Calls: calls, Succeeded: ok}, now)
}

// Stats is the state of the queue at a glance, as `mimoq stats` shows it.
type Stats struct {
	At time.Time `json:"at"`
	// Queues has one entry per mimoq queue and model that holds or held
	// jobs, sorted by queue then model.
	Queues []QueueStats `json:"queues"`
	// Models has one entry per model, with its lane.
	Models []ModelStats `json:"models"`
	// DLQ is the dead-letter totals.
	DLQ dlq.Summary `json:"dlq"`
	// Totals adds up Models.
	Totals Counts `json:"totals"`
	// Reconciler is what the fleet's reconciler has repaired so far.
	Reconciler records.ReconcilerTotals `json:"reconciler"`
	// ExpiredLastHour counts jobs that expired in the last 60 minutes
	// (their deadline or their batch's window passed before they ran).
	ExpiredLastHour int64 `json:"expired_last_hour"`
	// ServedModels counts answers by another model than the one
	// requested, per pair, largest first.
	ServedModels []ServedPair `json:"served_models,omitempty"`
	// Shares is, per lane with batches waiting, how the batches (or
	// tenants) there share it: their backlogs and their part of the jobs
	// released to the lane in the last minute.
	Shares []fair.LaneShares `json:"shares,omitempty"`
}

// Counts are the jobs of a queue or model by state.
type Counts struct {
	// Queued jobs wait for a worker (asynq pending) or, for batch jobs,
	// for their turn (Backlog).
	Queued int64 `json:"queued"`
	// Backlog counts the batch jobs of Queued that wait for their turn in
	// their lane, not yet handed to asynq (asynq shows them as scheduled,
	// for the year 2286).
	Backlog int64 `json:"backlog"`
	// Running jobs are being worked on (asynq active).
	Running int64 `json:"running"`
	// Retrying jobs wait for their next attempt (asynq retry and scheduled).
	Retrying int64 `json:"retrying"`
	// Dead jobs are in the dead-letter store.
	Dead int64 `json:"dead"`
}

func (c *Counts) add(d Counts) {
	c.Queued += d.Queued
	c.Backlog += d.Backlog
	c.Running += d.Running
	c.Retrying += d.Retrying
	c.Dead += d.Dead
}

// QueueStats is one mimoq queue of one model (one asynq queue).
type QueueStats struct {
	Queue string `json:"queue"`
	Model string `json:"model"`
	Counts
	// Paused is asynq's flag for the queue (set while the lane is paused).
	Paused bool `json:"paused"`
	// Latency is the age of the oldest queued job.
	Latency time.Duration `json:"latency_ns"`
}

// ModelStats is one model: its jobs, its lane and its use of the limit.
type ModelStats struct {
	Model string `json:"model"`
	Counts
	// SucceededLastHour counts jobs that succeeded in the last 60 minutes.
	SucceededLastHour int64 `json:"succeeded_last_hour"`
	// CallsLastMinute estimates the API calls of the last 60 seconds, all
	// workers together (a sliding window over per-minute counters).
	CallsLastMinute int64 `json:"calls_last_minute"`
	// CallsPerMinute and DeadPerMinute are the last hour's API calls and
	// dead letters per minute, oldest first, the current minute last (the
	// sparklines of `mimoq stats`, the same counters as History).
	CallsPerMinute []int64 `json:"calls_per_minute"`
	DeadPerMinute  []int64 `json:"dead_per_minute"`
	// Lane is the lane's state and configured limit.
	Lane lane.State `json:"lane"`
	// CostLastHour is what the model's answers of the last 60 minutes
	// cost (at the workers' prices).
	CostLastHour job.Cost `json:"cost_last_hour"`
	// QuotaSuspect says the lane has had only 429s for longer than
	// MIMOQ_QUOTA_SUSPECT_AFTER while calling under its configured rate:
	// a used-up quota (Token Plan) rather than a rate limit.
	QuotaSuspect bool `json:"quota_suspect,omitempty"`
}

// Stats reads the numbers of models (and of any queue it finds in Redis
// for them): job counts from asynq, dead letters from the store's counters,
// lane states, and the call counters CountAttempt keeps. Its cost grows
// with the number of queues and models, not of jobs.
func (o *Ops) Stats(ctx context.Context, models []string) (*Stats, error) {
	now := o.now()
	st := &Stats{At: now.UTC()}
	sum, err := o.store.Summary(ctx)
	if err != nil {
		return nil, err
	}
	st.DLQ = sum
	if st.Reconciler, err = o.records.ReconcilerStats(ctx); err != nil {
		return nil, err
	}

	// Queues: the configured ones, those asynq knows and those with dead
	// letters, for the models asked about.
	queues := slices.Clone(job.Queues())
	known, err := o.insp.Queues()
	if err != nil {
		return nil, fmt.Errorf("stats: list queues: %w", err)
	}
	isModel := make(map[string]bool, len(models))
	for _, m := range models {
		isModel[m] = true
	}
	exists := make(map[string]bool, len(known))
	for _, qn := range known {
		exists[qn] = true
		if q, m, ok := strings.Cut(qn, ":"); ok && isModel[m] {
			queues = append(queues, q)
		}
	}
	for q := range sum.ByQueueModel {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	queues = slices.Compact(queues)

	byModel := make(map[string]*ModelStats, len(models))
	for _, m := range models {
		byModel[m] = &ModelStats{Model: m}
	}
	for _, q := range queues {
		for _, m := range models {
			qs := QueueStats{Queue: q, Model: m}
			qs.Dead = sum.ByQueueModel[q][m]
			qn := job.AsynqQueue(q, m)
			if exists[qn] {
				info, err := o.insp.GetQueueInfo(qn)
				if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
					return nil, fmt.Errorf("stats: queue %s: %w", qn, err)
				}
				if info != nil {
					// Read after asynq's numbers: a submit may have
					// parked more in between.
					parked, err := asynqwire.CountParked(ctx, o.rdb, qn)
					if err != nil {
						return nil, fmt.Errorf("stats: queue %s: %w", qn, err)
					}
					scheduled := max(int64(info.Scheduled)-parked, 0)
					qs.Queued, qs.Backlog, qs.Running = int64(info.Pending)+parked, parked, int64(info.Active)
					qs.Retrying = int64(info.Retry) + scheduled
					qs.Paused, qs.Latency = info.Paused, info.Latency
				}
			}
			if qs.Counts == (Counts{}) && !slices.Contains(job.Queues(), q) {
				continue // nothing to show for a queue this model never used
			}
			st.Queues = append(st.Queues, qs)
			byModel[m].add(qs.Counts)
		}
	}
	sort.SliceStable(st.Queues, func(i, j int) bool {
		a, b := st.Queues[i], st.Queues[j]
		return a.Queue < b.Queue || a.Queue == b.Queue && a.Model < b.Model
	})

	lanes, err := o.lanes.List(ctx, models)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	hist, err := o.History(ctx, models, now.Add(-59*time.Minute), now)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	if st.ServedModels, err = o.servedPairs(ctx); err != nil {
		return nil, err
	}
	for i, m := range models {
		ms := byModel[m]
		ms.Lane = lanes[i]
		lastHour(ms, hist[i].Minutes, now)
		under := ms.Lane.Limit.RPM <= 0 || ms.CallsLastMinute < int64(ms.Lane.Limit.RPM)
		ms.QuotaSuspect = under && ms.Lane.QuotaSuspect(o.quotaAfter, now)
		st.Models = append(st.Models, *ms)
		st.Totals.add(ms.Counts)
	}
	if st.ExpiredLastHour, err = o.expiredLastHour(ctx, now); err != nil {
		return nil, err
	}
	if st.Shares, err = fair.ReadShares(ctx, o.rdb, o.records, fairLanes(queues, models)); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

// fairLanes is every lane of queues and models.
func fairLanes(queues, models []string) []fair.Lane {
	lanes := make([]fair.Lane, 0, len(queues)*len(models))
	for _, q := range queues {
		for _, m := range models {
			lanes = append(lanes, fair.Lane{Queue: q, Model: m})
		}
	}
	return lanes
}

// lastHour fills in ms's numbers from the last 60 minutes: the calls of
// the last 60 seconds (the current minute plus the share of the previous one
// still inside the window), the successes of the whole hour, and the
// sparklines.
func lastHour(ms *ModelStats, mins []Minute, now time.Time) {
	ms.CallsPerMinute, ms.DeadPerMinute = make([]int64, len(mins)), make([]int64, len(mins))
	var cost int64
	for k, m := range mins {
		ms.CallsPerMinute[k], ms.DeadPerMinute[k] = m.Calls, m.Dead()
		ms.SucceededLastHour += m.Succeeded
		cost += m.CostPico
	}
	ms.CostLastHour = job.Cost{USD: job.PicoToUSD(cost)}
	if n := len(mins); n > 0 {
		ms.CallsLastMinute = mins[n-1].Calls
		if n > 1 {
			elapsed := float64(now.Unix()%60) / 60
			ms.CallsLastMinute += int64(float64(mins[n-2].Calls)*(1-elapsed) + 0.5)
		}
	}
}
