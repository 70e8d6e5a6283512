package worker

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/fair"
	"github.com/mimoq/mimoq/internal/records"
)

// QueueCollector exports asynq's view of each queue (size by task state,
// latency, paused) as Prometheus metrics, read at scrape time.
type QueueCollector struct {
	rdb    redis.UniversalClient
	store  *records.Store
	insp   *asynq.Inspector
	queues []string
	size   *prometheus.Desc
	lat    *prometheus.Desc
	paused *prometheus.Desc
	// processed and failed are asynq's own totals per queue: a queue with
	// tasks whose processed total stands still is making no progress.
	processed *prometheus.Desc
	failed    *prometheus.Desc
	// The fair sharing of the lanes between batches (internal/fair).
	backlog, released, share *prometheus.Desc
}

// NewQueueCollector returns a collector for the given asynq queues.
func NewQueueCollector(rdb redis.UniversalClient, queues map[string]int) *QueueCollector {
	names := make([]string, 0, len(queues))
	for q := range queues {
		names = append(names, q)
	}
	slices.Sort(names)
	flow := []string{"queue", "model", "flow"}
	return &QueueCollector{
		rdb: rdb, store: records.New(rdb, 0),
		insp:   asynq.NewInspectorFromRedisClient(rdb),
		queues: names,
		size:   prometheus.NewDesc("mimoq_queue_tasks", "Tasks in an asynq queue by state.", []string{"queue", "state"}, nil),
		lat:    prometheus.NewDesc("mimoq_queue_latency_seconds", "Age of the oldest pending task of a queue.", []string{"queue"}, nil),
		paused: prometheus.NewDesc("mimoq_queue_paused", "1 when the queue is paused (its model's lane is paused).", []string{"queue"}, nil),
		processed: prometheus.NewDesc("mimoq_queue_processed_total",
			"Tasks of an asynq queue handled to an end or a counted failure, since the queue was made (asynq's total; a wait or put-back is not counted).",
			[]string{"queue"}, nil),
		failed: prometheus.NewDesc("mimoq_queue_failed_total",
			"Tasks of an asynq queue whose delivery failed (an attempt to retry), since the queue was made (asynq's total).",
			[]string{"queue"}, nil),
		backlog: prometheus.NewDesc("mimoq_fair_backlog",
			"Batch jobs waiting for their turn in a lane, per flow (b:<batch id>, or t:<tenant> for a tenant's batches).", flow, nil),
		released: prometheus.NewDesc("mimoq_fair_released_last_minute",
			"Batch jobs a lane released to its asynq queue in the last minute, per flow.", flow, nil),
		share: prometheus.NewDesc("mimoq_fair_share",
			"A flow's part (0 to 1) of the batch jobs its lane released in the last minute.", flow, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.lat
	ch <- c.paused
	ch <- c.processed
	ch <- c.failed
	ch <- c.backlog
	ch <- c.released
	ch <- c.share
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	// GetQueueInfo of a queue that never had a task fails with an error
	// that is not asynq.ErrQueueNotFound: ask which queues exist first.
	known, err := c.insp.Queues()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.size, err)
		return
	}
	for _, q := range c.queues {
		if !slices.Contains(known, q) {
			continue // no task was ever enqueued there
		}
		info, err := c.insp.GetQueueInfo(q)
		// asynq v0.26's GetQueueInfo, unlike its List… calls, returns its
		// internal NOT_FOUND error, not ErrQueueNotFound: its text is the
		// only way to tell. Without this, one queue that never had a task
		// made /metrics answer an error.
		if errors.Is(err, asynq.ErrQueueNotFound) || err != nil && strings.Contains(err.Error(), "does not exist") {
			continue // no task was ever enqueued there
		}
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.size, err)
			continue
		}
		// Parked batch jobs (waiting for their turn) are asynq's scheduled
		// tasks; they are shown as their own state.
		parked, err := asynqwire.CountParked(context.Background(), c.rdb, q)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.size, err)
			continue
		}
		for state, n := range map[string]int{
			"pending": info.Pending, "active": info.Active, "scheduled": max(info.Scheduled-int(parked), 0), "backlog": int(parked),
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed,
		} {
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(n), q, state)
		}
		ch <- prometheus.MustNewConstMetric(c.lat, prometheus.GaugeValue, info.Latency.Seconds(), q)
		p := 0.0
		if info.Paused {
			p = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, p, q)
		ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(info.ProcessedTotal), q)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(info.FailedTotal), q)
	}
	c.collectShares(ch)
}

// collectShares exports how the batches share each lane.
func (c *QueueCollector) collectShares(ch chan<- prometheus.Metric) {
	lanes := make([]fair.Lane, 0, len(c.queues))
	for _, q := range c.queues {
		if queue, model, ok := strings.Cut(q, ":"); ok {
			lanes = append(lanes, fair.Lane{Queue: queue, Model: model})
		}
	}
	shares, err := fair.ReadShares(context.Background(), c.rdb, c.store, lanes)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.backlog, err)
		return
	}
	for _, ls := range shares {
		for _, f := range ls.Flows {
			ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(f.Backlog), ls.Queue, ls.Model, f.Flow)
			ch <- prometheus.MustNewConstMetric(c.released, prometheus.GaugeValue, float64(f.Released), ls.Queue, ls.Model, f.Flow)
			ch <- prometheus.MustNewConstMetric(c.share, prometheus.GaugeValue, f.Share, ls.Queue, ls.Model, f.Flow)
		}
	}
}
