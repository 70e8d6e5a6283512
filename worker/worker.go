// Package worker runs mimoq's workers: the asynq handler that calls the MiMo
// API through apiclient at the fleet-wide rate of internal/lane, retries what
// is retryable with backoff, dead-letters what is not into internal/dlq, and
// stores results, so that every job ends in exactly one final state.
package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/slots"
)

// Config configures a Worker.
type Config struct {
	// Redis holds the queues and mimoq's records. Required.
	Redis redis.UniversalClient
	// API calls the MiMo API. Required.
	API *apiclient.Client
	// Gate is the fleet-wide rate limit and cooldown. Required.
	Gate *lane.Gate
	// Lanes pauses a model's lane after 401, 402 and 403. Required.
	Lanes *lane.Lanes
	// DLQ stores dead letters. Required.
	DLQ *dlq.Store
	// Records stores job records. Required.
	Records *enqueue.Records
	// Models are the models whose queues this worker consumes. Required.
	Models []string
	// Queues maps each mimoq queue to its weight. Default interactive 4,
	// batch 1: a long batch never starves single submissions.
	Queues map[string]int
	// Concurrency is the number of jobs in flight, over all models. Default 50.
	Concurrency int
	// MaxAttempts is the attempt budget of a job, the first included. Default 5.
	MaxAttempts int
	// Backoff is the delay between attempts.
	Backoff Backoff
	// ShutdownTimeout is the grace for in-flight calls on shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// TaskCheckInterval is how often an idle worker looks for new jobs.
	// Default 10ms (asynq's 1s default gives a pickup latency of ~0.5 s).
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often due retries are moved back to
	// their queue. Default 100ms (asynq's 5s default fires retries ~5 s late).
	DelayedTaskCheckInterval time.Duration
	// SweepInterval is how often tasks asynq archived by itself are moved
	// into the dead-letter store. Default 30s.
	SweepInterval time.Duration
	// ID names this worker process in job histories. Default host:pid.
	ID string
	// Logger is the root logger.
	Logger zerolog.Logger
	// Registerer receives the worker's metrics. Optional.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if len(c.Queues) == 0 {
		c.Queues = map[string]int{enqueue.QueueInteractive: 4, enqueue.QueueBatch: 1}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 50
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	c.Backoff = c.Backoff.withDefaults()
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.TaskCheckInterval <= 0 {
		c.TaskCheckInterval = 10 * time.Millisecond
	}
	if c.DelayedTaskCheckInterval <= 0 {
		c.DelayedTaskCheckInterval = 100 * time.Millisecond
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 30 * time.Second
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = host + ":" + strconv.Itoa(os.Getpid())
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("worker: Config.Redis is required")
	case c.API == nil:
		return errors.New("worker: Config.API is required")
	case c.Gate == nil || c.Lanes == nil:
		return errors.New("worker: Config.Gate and Config.Lanes are required")
	case c.DLQ == nil:
		return errors.New("worker: Config.DLQ is required")
	case c.Records == nil:
		return errors.New("worker: Config.Records is required")
	case len(c.Models) == 0:
		return errors.New("worker: Config.Models is empty")
	}
	for q, wt := range c.Queues {
		if wt < 1 {
			return fmt.Errorf("worker: queue %q has weight %d, want at least 1", q, wt)
		}
	}
	return nil
}

// Worker consumes jobs until its context ends.
type Worker struct {
	cfg     Config
	log     zerolog.Logger
	records *enqueue.Records
	metrics *metrics
	// srvs holds one asynq server per model: asynq's dequeue loop tries its
	// queues one round trip at a time, so one server over every model's
	// queues spends most of its time asking empty queues. slots keeps the
	// process's jobs in flight at Concurrency across the servers.
	srvs  []*asynq.Server
	slots *slots.Pool
	insp  *asynq.Inspector

	// drain ends when shutdown begins: jobs still waiting for a permit are
	// put back at once instead of holding the shutdown grace.
	drain     context.Context
	stopDrain context.CancelFunc

	ready   chan struct{}
	readyMu sync.Once

	// canceled caches batch ID → canceledEntry.
	canceled sync.Map
	counts   attemptCounts
}

// New returns a worker. Run starts it.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &Worker{
		cfg: cfg, log: cfg.Logger, records: cfg.Records, metrics: newMetrics(cfg.Registerer),
		insp: asynq.NewInspectorFromRedisClient(cfg.Redis), ready: make(chan struct{}),
	}
	w.drain, w.stopDrain = context.WithCancel(context.Background())
	var err error
	if w.slots, err = slots.New(cfg.Concurrency, cfg.Queues); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	for _, m := range cfg.Models {
		// Each server may hold Concurrency tasks, so that one busy model
		// can use every slot; the tasks beyond the slots wait in ProcessTask.
		w.srvs = append(w.srvs, asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
			Concurrency:              cfg.Concurrency,
			Queues:                   w.modelQueues(m),
			RetryDelayFunc:           retryDelay,
			IsFailure:                isFailure,
			ShutdownTimeout:          cfg.ShutdownTimeout,
			TaskCheckInterval:        cfg.TaskCheckInterval,
			DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
			Logger:                   asynqLogger{cfg.Logger},
			LogLevel:                 asynq.WarnLevel,
		}))
	}
	return w, nil
}

// AsynqQueues is the asynq queue → weight map this worker consumes: each
// mimoq queue's weight, for each model.
func (w *Worker) AsynqQueues() map[string]int {
	qs := make(map[string]int, len(w.cfg.Queues)*len(w.cfg.Models))
	for _, m := range w.cfg.Models {
		maps.Copy(qs, w.modelQueues(m))
	}
	return qs
}

// modelQueues is the asynq queue → weight map of one model's lanes.
func (w *Worker) modelQueues(model string) map[string]int {
	qs := make(map[string]int, len(w.cfg.Queues))
	for q, wt := range w.cfg.Queues {
		qs[enqueue.AsynqQueue(q, model)] = wt
	}
	return qs
}

// QueueNames lists the mimoq queues, sorted.
func (w *Worker) QueueNames() []string {
	names := make([]string, 0, len(w.cfg.Queues))
	for q := range w.cfg.Queues {
		names = append(names, q)
	}
	sort.Strings(names)
	return names
}

// Ready is closed once the worker consumes jobs.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Run consumes jobs until ctx ends, then shuts down gracefully: it stops
// taking jobs, puts back those still waiting for a permit, lets calls in
// flight finish within ShutdownTimeout and puts back the rest, burning no
// attempt.
func (w *Worker) Run(ctx context.Context) error {
	mux := asynq.NewServeMux()
	mux.Handle(enqueue.TaskType, w)
	for i, srv := range w.srvs {
		if err := srv.Start(mux); err != nil {
			w.stopDrain()
			w.shutdown(w.srvs[:i])
			return fmt.Errorf("start worker (model %s): %w", w.cfg.Models[i], err)
		}
	}
	w.readyMu.Do(func() { close(w.ready) })
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Strs("models", w.cfg.Models).
		Strs("queues", w.QueueNames()).Msg("worker started")

	var bg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	bg.Go(func() { w.sweepLoop(bgCtx) })
	bg.Go(func() { w.gaugeLoop(bgCtx) })
	bg.Go(func() { w.countLoop(bgCtx) })

	<-ctx.Done()
	w.log.Info().Dur("grace", w.cfg.ShutdownTimeout).Msg("worker stopping")
	w.stopDrain()
	w.shutdown(w.srvs)
	stopBg()
	bg.Wait()
	w.log.Info().Msg("worker stopped")
	return nil
}

// shutdown stops every server taking tasks, then gives them their grace
// together: in-flight calls everywhere get the same ShutdownTimeout.
func (w *Worker) shutdown(srvs []*asynq.Server) {
	for _, srv := range srvs {
		srv.Stop()
	}
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
}

// gaugeLoop refreshes the lane and dead-letter gauges.
func (w *Worker) gaugeLoop(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		if states, err := w.cfg.Lanes.List(ctx, w.cfg.Models); err == nil {
			for _, s := range states {
				for _, st := range []string{"running", "cooling_down", "paused"} {
					v := 0.0
					if s.Status == st {
						v = 1
					}
					w.metrics.laneState.WithLabelValues(s.Model, st).Set(v)
				}
			}
		}
		if n, err := w.cfg.DLQ.Count(ctx, dlq.Filter{}); err == nil {
			w.metrics.dlqSize.Set(float64(n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// asynqLogger routes asynq's logs into zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (a asynqLogger) Debug(args ...any) {
	a.l.Debug().Str("component", "asynq").Msg(fmt.Sprint(args...))
}
func (a asynqLogger) Info(args ...any) { a.l.Info().Str("component", "asynq").Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any) { a.l.Warn().Str("component", "asynq").Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) {
	a.l.Error().Str("component", "asynq").Msg(fmt.Sprint(args...))
}
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error().Str("component", "asynq").Msg(fmt.Sprint(args...))
}
