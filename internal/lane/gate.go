package lane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/job"
)

// GateConfig configures a Gate.
type GateConfig struct {
	// Redis holds the fleet's limiter state. Required.
	Redis redis.UniversalClient
	// Default is the limit of models not in PerModel. The zero Limit means
	// DefaultLimit (100 RPM, 10M TPM); a field that is negative, or zero
	// while the other is set, is unlimited.
	Default Limit
	// PerModel overrides Default for some models (see ParseLimits).
	PerModel map[string]Limit
	// Logger receives limiter errors. Default: no logging.
	Logger *zerolog.Logger
	// RefreshInterval is how often the state of the lanes in use (pause,
	// cooldown) is re-read from Redis, in case a pub/sub event was missed.
	// Default 1s.
	RefreshInterval time.Duration
	// Headroom is the fraction by which the Gate stays under every limit.
	// Permits leave Redis evenly spaced, but reach the API with a little
	// jitter (scheduling, the network, connection setup); at exactly the
	// limit a request that is 1 ms early makes a 1-s window at the API count
	// one too many. Headroom h spaces requests (1+h)/rate apart, which
	// absorbs h seconds of jitter per 1-s window (10 ms at 1%) and gives up
	// the fraction h/(1+h) of the limit. Default 0.01; negative for none.
	Headroom float64
	// CooldownBase and CooldownMax bound the cooldown after a 429 without
	// Retry-After: the base, doubling with every 429 in a row, up to the
	// max. Default 1s and 60s (MIMOQ_BACKOFF_BASE, MIMOQ_BACKOFF_MAX).
	CooldownBase, CooldownMax time.Duration
	// Lookahead is how many request slots (1/rate apart) ahead of now a
	// process may reserve. A process reserves its next slot while it waits
	// for the current one, so with at most Lookahead worker processes each
	// permit costs one request-limit round trip and no denial, and the
	// schedule does not drift by a round trip per permit. Each slot is still
	// handed out at its own time, so the spacing does not change. Default 8;
	// negative for none (plain GCRA with burst 1: a slot is only ever "now").
	Lookahead int
}

func (c GateConfig) withDefaults() GateConfig {
	if c.Default == (Limit{}) {
		c.Default = DefaultLimit
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Second
	}
	if c.CooldownBase <= 0 {
		c.CooldownBase = time.Second
	}
	if c.CooldownMax < c.CooldownBase {
		c.CooldownMax = max(60*time.Second, c.CooldownBase)
	}
	switch {
	case c.Headroom == 0:
		c.Headroom = 0.01
	case c.Headroom < 0:
		c.Headroom = 0
	}
	switch {
	case c.Lookahead == 0:
		c.Lookahead = 8
	case c.Lookahead < 0:
		c.Lookahead = 0
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	return c
}

func (c GateConfig) validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("lane: GateConfig.Redis is required")
	case c.RefreshInterval < 0:
		return fmt.Errorf("lane: GateConfig.RefreshInterval %s is negative", c.RefreshInterval)
	case math.IsNaN(c.Headroom) || c.Headroom >= 1:
		return fmt.Errorf("lane: GateConfig.Headroom %v is not a fraction below 1", c.Headroom)
	}
	for m, l := range c.PerModel {
		if m == "" {
			return errors.New("lane: GateConfig.PerModel has an empty model name")
		}
		if l.RPM < 0 || l.TPM < 0 {
			return fmt.Errorf("lane: GateConfig.PerModel[%s] is negative", m)
		}
	}
	return nil
}

// Gate hands out permits to call the API, so that the requests and tokens
// per minute of each model hold across every process sharing the Redis.
//
// Per process and model, one goroutine fetches permits from Redis and hands
// them to waiters first come, first served; it calls Redis only while
// someone waits and, when the limiter says "not yet", sleeps exactly as long
// as the limiter says. A cooldown or a pause reaches every Gate through
// pub/sub at once, and through a periodic re-read of the state otherwise.
type Gate struct {
	cfg     GateConfig
	ks      keyspace
	log     zerolog.Logger
	limiter *redis_rate.Limiter
	ps      *redis.PubSub

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	lanes  map[string]*lane
	closed bool
}

// NewGate subscribes to the lane events and returns a Gate; it fails when
// Redis does not confirm the subscription within 10 s. Close the Gate.
func NewGate(cfg GateConfig) (*Gate, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.PerModel = maps.Clone(cfg.PerModel)
	g := &Gate{
		cfg:     cfg,
		ks:      keyspace{prefix: job.KeyPrefix},
		log:     cfg.Logger.With().Str("component", "lane").Logger(),
		limiter: redis_rate.NewLimiter(cfg.Redis),
		lanes:   make(map[string]*lane),
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())

	// Wait for the subscription, so that no event published after NewGate
	// returns is missed.
	g.ps = cfg.Redis.Subscribe(g.ctx, g.ks.events())
	subCtx, cancel := context.WithTimeout(g.ctx, 10*time.Second)
	defer cancel()
	if _, err := g.ps.Receive(subCtx); err != nil {
		_ = g.ps.Close()
		g.cancel()
		return nil, fmt.Errorf("lane: subscribe to %s: %w", g.ks.events(), err)
	}
	g.wg.Add(1)
	go g.eventLoop(g.ps.Channel())
	return g, nil
}

// Limit returns the limit that applies to model.
func (g *Gate) Limit(model string) Limit {
	if l, ok := g.cfg.PerModel[model]; ok {
		return l
	}
	return g.cfg.Default
}

// Wait blocks until the fleet may send one request of model that costs
// about estTokens tokens, and returns the permit to do so. Call Done on it
// with the tokens the call actually used, or Cancel if the call was not
// made. Wait returns a *PausedError (errors.Is ErrPaused) at once if the
// lane is paused or becomes paused while waiting, ErrClosed once the Gate is
// closed, and ctx.Err() when ctx ends first. While the lane cools down after
// a 429, Wait blocks until the cooldown ends.
func (g *Gate) Wait(ctx context.Context, model string, estTokens int64) (*Permit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if model == "" {
		return nil, errors.New("lane: wait for a permit: empty model name")
	}
	ln, err := g.lane(model)
	if err != nil {
		return nil, err
	}
	return ln.wait(ctx, max(estTokens, 0))
}

// Cooldown stops every process of the fleet from calling model for d, as
// after a 429. It never shortens a cooldown already running; it only
// extends it.
func (g *Gate) Cooldown(ctx context.Context, model string, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	left, err := startCooldown(ctx, g.cfg.Redis, g.ks, model, d, g.Limit(model).RPM > 0)
	if err != nil {
		return err
	}
	// Do not wait for our own event to come back.
	if ln := g.existing(model); ln != nil {
		ln.applyEvent(event{Model: model, Kind: "cooldown", TTLMs: left.Milliseconds()}, time.Now())
	}
	return nil
}

// Close stops the Gate: waiters get ErrClosed. It is safe to call twice.
func (g *Gate) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	_ = g.ps.Close()
	g.wg.Wait()
	g.handOverDebt()
}

// handOverDebt leaves the tokens this process used beyond its reservations
// (its debt) to the fleet: a running Gate takes them over and pays them, so
// that a process that stops does not take its overuse of the token limit
// with it.
func (g *Gate) handOverDebt() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pipe := g.cfg.Redis.Pipeline()
	for m, ln := range g.lanes {
		ln.mu.Lock()
		debt := -ln.bal
		ln.mu.Unlock()
		if ln.tpmOn && debt > 0 {
			pipe.IncrBy(ctx, g.ks.debt(m), debt)
		}
	}
	if pipe.Len() == 0 {
		return
	}
	if _, err := pipe.Exec(ctx); err != nil {
		g.log.Warn().Err(err).Msg("hand over token debt")
	}
}

// GateStats counts what a Gate did since it was made.
type GateStats struct {
	// LimiterCalls is the number of Redis round trips spent on rate
	// limiting (one per GCRA call), all models together.
	LimiterCalls int64
	// Permits is the number of permits granted, all models together.
	Permits int64
	// Models has the same and more per model.
	Models map[string]LaneStats
}

// LaneStats counts what a Gate did for one model.
type LaneStats struct {
	// LimiterCalls is the number of Redis round trips spent on rate limiting.
	LimiterCalls int64
	// Denied is how many of them the limiter answered "not yet".
	Denied int64
	// Permits is the number of permits granted.
	Permits int64
	// Refused is the number of waits that ended with ErrPaused.
	Refused int64
	// Dropped is the number of request slots reserved and not used: no
	// waiter was left, the lane paused or cooled down, or the fetcher woke
	// too late to hand the slot out without crowding the next one.
	Dropped int64
	// WaitSeconds is the total time granted waiters spent waiting; with
	// Permits it gives the mean. Permit.Waited gives each one, for a
	// histogram.
	WaitSeconds float64
	// Waiting is the number of waiters now.
	Waiting int
	// Debt is the tokens this process has used beyond what it reserved,
	// to be paid by its next reservations (or, once it stops, by the
	// fleet's).
	Debt int64
}

// Stats returns the counters of the Gate.
func (g *Gate) Stats() GateStats {
	g.mu.Lock()
	lanes := make([]*lane, 0, len(g.lanes))
	for _, ln := range g.lanes {
		lanes = append(lanes, ln)
	}
	g.mu.Unlock()
	s := GateStats{Models: make(map[string]LaneStats, len(lanes))}
	for _, ln := range lanes {
		ls := ln.stats()
		s.Models[ln.model] = ls
		s.LimiterCalls += ls.LimiterCalls
		s.Permits += ls.Permits
	}
	return s
}

// lane returns the lane of model, starting its fetcher on first use.
func (g *Gate) lane(model string) (*lane, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, ErrClosed
	}
	ln, ok := g.lanes[model]
	if !ok {
		ln = newLane(g, model, g.Limit(model))
		g.lanes[model] = ln
		g.wg.Add(1)
		go ln.run(g.ctx)
	}
	return ln, nil
}

func (g *Gate) existing(model string) *lane {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lanes[model]
}

// Permit allows one API call. Call Done or Cancel exactly once; later calls
// do nothing.
type Permit struct {
	// Model is the model the permit is for.
	Model string
	// Tokens is the number of tokens reserved for the call (the estimate
	// given to Wait). Done(p.Tokens) keeps the reservation as it is.
	Tokens int64
	// Waited is how long Wait blocked.
	Waited time.Duration
	// Interval is the spacing of the lane's request slots when the permit
	// was granted, 0 when the lane has no request limit. The permit is for
	// its slot: a call made much later than that bunches with the calls of
	// the next permits.
	Interval time.Duration

	ln   *lane
	done atomic.Bool
}

// Done reports the tokens the call actually used, from the response's
// usage. The difference from the reservation is folded into the next
// reservation of this process for the model, without a Redis round trip.
// Done with a negative count refunds the whole reservation, as Cancel.
func (p *Permit) Done(actualTokens int64) {
	if p == nil || !p.done.CompareAndSwap(false, true) {
		return
	}
	p.ln.settle(p.Tokens - max(actualTokens, 0))
}

// Cancel says the call was not made: the token reservation is refunded.
// The request slot is not: it has passed, and GCRA cannot give a slot back
// without putting it on top of one that is already handed out.
func (p *Permit) Cancel() { p.Done(-1) }
