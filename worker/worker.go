// Package worker runs mimoq's workers: the asynq handler that calls the MiMo
// API at the fleet-wide rate limit, retries what is retryable with backoff,
// dead-letters what is not and stores results, so that every job ends in
// exactly one final state; and the maintenance that keeps that true after
// crashes and failovers (the reconciler, the sweeper of asynq's archive).
//
// A worker is built from its Config alone — a Redis client and the API's
// settings — so a Go service can embed one (see the example).
package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/catalog"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/fair"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
	"github.com/mimoq/mimoq/internal/price"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/slots"
	"github.com/mimoq/mimoq/internal/webhooks"
)

// Limit is a model's fleet-wide rate limit: requests and tokens per minute,
// all workers together. A negative field is unlimited.
type Limit = lane.Limit

// DefaultLimit is MiMo's documented limit per account and model: 100
// requests and 10M tokens per minute.
var DefaultLimit = lane.DefaultLimit

// Config configures a Worker. Only Redis and APIKey (or API) are required;
// every other field has the default its comment gives.
type Config struct {
	// Redis holds the queues and mimoq's records. Required.
	Redis redis.UniversalClient

	// BaseURL is the API's base URL. Default https://api.xiaomimimo.com/v1.
	BaseURL string
	// APIKey is the API key. Required unless API is set. It is never
	// logged, stored or put in an error.
	APIKey string
	// RequestTimeout bounds one API attempt, body included. Default 5m.
	RequestTimeout time.Duration
	// Models is the model catalog: requests are checked against it before
	// each call, and the worker consumes the queues of each of its models.
	// Default apiclient.DefaultModels().
	Models apiclient.Models
	// API, when set, is the client the worker calls the API with, instead
	// of one built from BaseURL, APIKey, RequestTimeout and Models.
	API *apiclient.Client
	// CatalogInterval is how often the worker reads GET /models and
	// publishes the live catalog for the fleet's producers (it reads it at
	// start too). Default 10m; negative: never (Models only).
	CatalogInterval time.Duration
	// LaneProbeInterval is how often a lane paused by an error (401, 402,
	// 403, 451, model_not_served) lets one job through, fleet-wide, to see
	// whether the cause has gone. Default 5m; negative: never.
	LaneProbeInterval time.Duration
	// Prices is the price table the cost of each answer is computed with.
	// Default price.Default() (the current list prices).
	Prices *price.Table
	// QuotaSuspectAfter is how long a lane must get nothing but 429s for
	// the mimoq_lane_quota_suspect gauge to say 1. Default 10m; negative:
	// never.
	QuotaSuspectAfter time.Duration

	// Limit is every model's fleet-wide rate limit, and ModelLimits
	// overrides it per model. The zero Limit means DefaultLimit.
	Limit       Limit
	ModelLimits map[string]Limit

	// Queues maps each mimoq queue this worker consumes to its weight.
	// Default interactive 4, batch 1: a long batch never starves single
	// submissions.
	Queues map[string]int
	// Concurrency is the number of API calls in flight, over all models.
	// Default 50.
	Concurrency int
	// MaxAttempts is the attempt budget of a job, the first included.
	// Default 5.
	MaxAttempts int
	// Backoff is the delay between attempts. Default base 1s, max 60s.
	Backoff Backoff
	// ResultTTL is how long final records are kept. Default 168h.
	ResultTTL time.Duration
	// ShutdownTimeout is the grace for in-flight calls on shutdown.
	// Default 30s.
	ShutdownTimeout time.Duration
	// MaxHold is the longest a job waits in this process for a permit and
	// then a slot before it goes back to its queue, burning no attempt,
	// for whichever worker can serve it first. Default 30s.
	MaxHold time.Duration

	// TaskCheckInterval is how often an idle worker looks for new jobs.
	// Default 10ms (asynq's 1s default gives a pickup latency of ~0.5 s).
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often due retries are moved back to
	// their queue. Default 100ms (asynq's 5s default fires retries ~5 s
	// late).
	DelayedTaskCheckInterval time.Duration
	// SweepInterval is how often tasks asynq archived by itself are moved
	// into the dead-letter store. Default 30s.
	SweepInterval time.Duration
	// ExpiryInterval is how often the worker expires what is past its
	// deadline (single jobs, batch windows). Default 1s.
	ExpiryInterval time.Duration
	// ReconcileInterval is how often the fleet's reconciler runs (one
	// worker at a time): it gives lost jobs a task again. Default 1m.
	ReconcileInterval time.Duration
	// ReconcileGrace is how old a job must be before the reconciler looks
	// at it. Default 2m.
	ReconcileGrace time.Duration

	// Webhooks configures the completion webhooks.
	Webhooks WebhookConfig

	// ID names this worker process in job histories. Default host:pid.
	ID string
	// Logger is the root logger. Default: none (the zero Logger is off).
	Logger zerolog.Logger
	// Registerer receives the worker's metrics. Optional.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.Models == nil {
		c.Models = apiclient.DefaultModels()
	}
	if c.Limit == (Limit{}) {
		c.Limit = DefaultLimit
	}
	if c.CatalogInterval == 0 {
		c.CatalogInterval = catalog.DefaultInterval
	}
	if c.LaneProbeInterval == 0 {
		c.LaneProbeInterval = DefaultLaneProbeInterval
	}
	if c.Prices == nil {
		c.Prices = price.Default()
	}
	if c.QuotaSuspectAfter == 0 {
		c.QuotaSuspectAfter = 10 * time.Minute
	}
	if len(c.Queues) == 0 {
		c.Queues = job.DefaultQueueWeights()
	}
	if c.Concurrency <= 0 {
		c.Concurrency = job.DefaultConcurrency
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = job.DefaultMaxAttempts
	}
	c.Backoff = c.Backoff.withDefaults()
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = job.DefaultRequestTimeout
	}
	if c.ResultTTL <= 0 {
		c.ResultTTL = job.DefaultResultTTL
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = job.DefaultShutdownTimeout
	}
	if c.MaxHold <= 0 {
		c.MaxHold = 30 * time.Second
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
	if c.ExpiryInterval <= 0 {
		c.ExpiryInterval = time.Second
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = time.Minute
	}
	if c.ReconcileGrace <= 0 {
		c.ReconcileGrace = 2 * time.Minute
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
	case c.API == nil && c.APIKey == "":
		return errors.New("worker: Config.APIKey is required")
	case len(c.Models) == 0:
		return errors.New("worker: Config.Models is empty")
	}
	for q, wt := range c.Queues {
		if wt < 1 {
			return fmt.Errorf("worker: queue %q has weight %d, want at least 1", q, wt)
		}
	}
	for m, l := range c.ModelLimits {
		if m == "" {
			return errors.New("worker: Config.ModelLimits has an empty model name")
		}
		if l == (Limit{}) {
			return fmt.Errorf("worker: Config.ModelLimits[%s] is zero: give a limit, or a negative field for unlimited", m)
		}
	}
	return nil
}

// Worker consumes jobs until its context ends.
type Worker struct {
	cfg     Config
	log     zerolog.Logger
	api     *apiclient.Client
	records *records.Store
	dlq     *dlq.Store
	lanes   *lane.Lanes
	gate    *lane.Gate // set by Run
	metrics *metrics
	policy  Policy
	models  []string
	// srvs holds one asynq server per model and queue (srvNames: the
	// queue of each). slots keeps the process's jobs in flight at
	// Concurrency across the servers.
	srvs     []*asynq.Server
	srvNames []string
	slots    *slots.Pool
	insp     *asynq.Inspector

	// drain ends when shutdown begins: jobs still waiting for a slot or a
	// permit are put back at once instead of holding the shutdown grace.
	drain     context.Context
	stopDrain context.CancelFunc

	// feeder releases the batches' backlogs fairly into the lanes.
	feeder *fair.Feeder

	notifier *webhooks.Notifier
	sender   *webhooks.Sender
	// srvMu guards models, srvs, srvNames and mux: the live catalog may
	// add models while the worker runs.
	srvMu sync.Mutex
	mux   *asynq.ServeMux

	// The live catalog as this worker last read it (catalog.go).
	catMu   sync.Mutex
	live    *catalog.Catalog
	liveAt  time.Time
	freshMu sync.Mutex
	valid   atomic.Pointer[apiclient.Models]

	served servedPairs

	ready   chan struct{}
	readyMu sync.Once
	counts  attemptCounts
	leases  *leases
}

// storeTimeout bounds how long a worker keeps trying to write an outcome
// while Redis does not answer (a restart, a failover, a network fault). An
// API answer already received is not given up after one failed write: it
// would be lost and the API called again. asynq's lease of the task (30 s,
// extended while Redis answers) bounds it from above: past the lease,
// another worker may take the task, and this delivery's writes are stale.
const storeTimeout = 25 * time.Second

// maxInterrupts is Policy.MaxInterrupts.
const maxInterrupts = 10

// New returns a worker. Run starts it.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	api := cfg.API
	if api == nil {
		var err error
		api, err = apiclient.New(apiclient.Options{BaseURL: cfg.BaseURL, APIKey: cfg.APIKey,
			RequestTimeout: cfg.RequestTimeout, Models: cfg.Models})
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	w := &Worker{
		cfg: cfg, log: cfg.Logger, api: api, records: records.New(cfg.Redis, cfg.ResultTTL), dlq: dlq.New(cfg.Redis),
		lanes: lane.NewLanes(cfg.Redis, asynq.NewInspectorFromRedisClient(cfg.Redis), lane.WithActor("worker "+cfg.ID),
			lane.WithLimits(cfg.Limit, cfg.ModelLimits)),
		metrics: newMetrics(cfg.Registerer), models: cfg.Models.Names(),
		insp: asynq.NewInspectorFromRedisClient(cfg.Redis), ready: make(chan struct{}), leases: newLeases(),
		policy: Policy{MaxAttempts: cfg.MaxAttempts, MaxInterrupts: maxInterrupts, Backoff: cfg.Backoff,
			ShortWait: 2 * time.Second, CallBudget: cfg.RequestTimeout + storeTimeout},
	}
	w.drain, w.stopDrain = context.WithCancel(context.Background())
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(w.healthGauges()...)
	}
	var err error
	if w.slots, err = slots.New(cfg.Concurrency, cfg.Queues); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	for _, m := range w.models {
		w.newServers(m)
	}
	if err := w.initWebhooks(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if w.feeder, err = w.newFeeder(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}

// newServers adds the asynq servers of one model's lanes (not started).
func (w *Worker) newServers(m string) {
	for q := range w.cfg.Queues {
		// One server per model and queue: asynq's dequeue loop asks
		// its queues one round trip at a time, so a server over both
		// lanes of a model asked the empty one about once per job.
		// Each server may hold Concurrency tasks, so that one busy
		// lane can use every slot; the tasks beyond the slots wait in
		// ProcessTask (at most MaxHold), first for their lane's permit
		// and only then for a slot, so a lane that cannot call (cooling
		// down, paused, at its rate) holds none; the slots go to the
		// lanes by their weights.
		w.srvs = append(w.srvs, asynq.NewServerFromRedisClient(w.cfg.Redis, asynq.Config{
			Concurrency:              w.cfg.Concurrency,
			Queues:                   map[string]int{job.AsynqQueue(q, m): 1},
			RetryDelayFunc:           retryDelay,
			IsFailure:                isFailure,
			ShutdownTimeout:          w.cfg.ShutdownTimeout,
			TaskCheckInterval:        w.cfg.TaskCheckInterval,
			DelayedTaskCheckInterval: w.cfg.DelayedTaskCheckInterval,
			Logger:                   asynqLogger{w.cfg.Logger},
			LogLevel:                 asynq.WarnLevel,
		}))
		w.srvNames = append(w.srvNames, job.AsynqQueue(q, m))
	}
}

// AsynqQueues is the asynq queue → weight map this worker consumes: each
// mimoq queue's weight, for each model.
func (w *Worker) AsynqQueues() map[string]int {
	models := w.modelList()
	qs := make(map[string]int, len(w.cfg.Queues)*len(models))
	for _, m := range models {
		maps.Copy(qs, w.modelQueues(m))
	}
	return qs
}

// modelList is the models whose queues this worker consumes.
func (w *Worker) modelList() []string {
	w.srvMu.Lock()
	defer w.srvMu.Unlock()
	return slices.Clone(w.models)
}

// servers is the asynq servers of this worker.
func (w *Worker) servers() []*asynq.Server {
	w.srvMu.Lock()
	defer w.srvMu.Unlock()
	return slices.Clone(w.srvs)
}

// modelQueues is the asynq queue → weight map of one model's lanes.
func (w *Worker) modelQueues(model string) map[string]int {
	qs := make(map[string]int, len(w.cfg.Queues))
	for q, wt := range w.cfg.Queues {
		qs[job.AsynqQueue(q, model)] = wt
	}
	return qs
}

// QueueNames lists the mimoq queues this worker consumes, sorted.
func (w *Worker) QueueNames() []string {
	names := make([]string, 0, len(w.cfg.Queues))
	for q := range w.cfg.Queues {
		names = append(names, q)
	}
	sort.Strings(names)
	return names
}

// LimiterStats counts this process's round trips to the fleet-wide rate
// limiter and the permits they gave, since Run started (zero before Ready).
func (w *Worker) LimiterStats() (calls, permits int64) {
	select {
	case <-w.ready:
	default:
		return 0, 0
	}
	s := w.gate.Stats()
	return s.LimiterCalls, s.Permits
}

// Ready is closed once the worker consumes jobs.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Run consumes jobs until ctx ends, then shuts down gracefully: it stops
// taking jobs, puts back those still waiting for a slot or a permit, lets
// calls in flight finish within ShutdownTimeout and puts back the rest,
// burning no attempt. It fails when Redis does not answer at start.
func (w *Worker) Run(ctx context.Context) error {
	gate, err := lane.NewGate(lane.GateConfig{Redis: w.cfg.Redis, Default: w.cfg.Limit, PerModel: w.cfg.ModelLimits,
		Logger: &w.log, CooldownBase: w.cfg.Backoff.Base, CooldownMax: w.cfg.Backoff.Max})
	if err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer gate.Close()
	w.gate = gate
	w.setValid(nil)
	if w.catalogOn() {
		// Before the servers start, so that the live models are served
		// from the first moment. A failure is no reason not to run: the
		// configured models are.
		if c, err := w.readCatalog(ctx); err != nil {
			w.log.Warn().Err(err).Msg("read live model catalog failed; serving the configured models")
		} else {
			w.serveNew(c)
		}
	}
	mux := asynq.NewServeMux()
	mux.Handle(job.TaskType, w)
	mux.Handle(webhooks.TaskType, w.sender)
	w.srvMu.Lock()
	srvs, names := slices.Clone(w.srvs), slices.Clone(w.srvNames)
	w.mux = mux
	w.srvMu.Unlock()
	for i, srv := range srvs {
		if err := srv.Start(mux); err != nil {
			w.stopDrain()
			w.shutdown(srvs[:i])
			return fmt.Errorf("start worker (queue %s): %w", names[i], err)
		}
	}
	w.readyMu.Do(func() { close(w.ready) })
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Strs("models", w.modelList()).
		Strs("queues", w.QueueNames()).Msg("worker started")

	var bg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	bg.Go(func() { w.sweepLoop(bgCtx) })
	bg.Go(func() { w.reconcileLoop(bgCtx) })
	bg.Go(func() { w.expiryLoop(bgCtx) })
	bg.Go(func() { w.batchEndLoop(bgCtx) })
	bg.Go(func() { w.laneEventLoop(bgCtx) })
	bg.Go(func() { w.gaugeLoop(bgCtx) })
	bg.Go(func() { w.countLoop(bgCtx) })
	bg.Go(func() { w.feeder.Run(bgCtx) })
	if w.catalogOn() {
		bg.Go(func() { w.catalogLoop(bgCtx) })
	}
	if w.cfg.LaneProbeInterval > 0 {
		bg.Go(func() { w.probeLoop(bgCtx) })
	}

	<-ctx.Done()
	w.log.Info().Dur("grace", w.cfg.ShutdownTimeout).Msg("worker stopping")
	w.stopDrain()
	w.shutdown(w.servers())
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

// gaugeLoop refreshes the lane and dead-letter gauges, and samples both
// into the per-minute history of the web page.
func (w *Worker) gaugeLoop(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		states, err := w.lanes.List(ctx, w.modelList())
		if err == nil {
			for _, s := range states {
				for _, st := range []string{lane.StatusRunning, lane.StatusCoolingDown, lane.StatusPaused} {
					v := 0.0
					if s.Status == st {
						v = 1
					}
					w.metrics.laneState.WithLabelValues(s.Model, st).Set(v)
				}
				eff := s.Limit.RPM
				if s.EffectiveRPM > 0 && s.EffectiveRPM < eff {
					eff = s.EffectiveRPM
				}
				w.metrics.rpmConfigured.WithLabelValues(s.Model).Set(float64(s.Limit.RPM))
				w.metrics.rpmEffective.WithLabelValues(s.Model).Set(float64(eff))
				suspect := 0.0
				if s.QuotaSuspect(w.cfg.QuotaSuspectAfter, time.Now()) {
					suspect = 1
				}
				w.metrics.quotaSuspect.WithLabelValues(s.Model).Set(suspect)
			}
		}
		sum, sumErr := w.dlq.Summary(ctx)
		if sumErr == nil {
			w.metrics.dlqSize.Set(float64(sum.Total))
		}
		if err == nil && sumErr == nil {
			if err := ops.SampleLanes(ctx, w.cfg.Redis, states, sum.ByModel, time.Now()); err != nil && ctx.Err() == nil {
				w.log.Warn().Err(err).Msg("sample lanes into the history")
			}
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
