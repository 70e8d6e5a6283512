package lane

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/redistest"
)

// bundle is one test's Redis and the means to make "processes" on it.
type bundle struct {
	t     *testing.T
	redis *redistest.Server
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return &bundle{t: t, redis: redistest.New(t)}
}

// gate makes a Gate with its own Redis client, as a separate worker process
// would have.
func (b *bundle) gate(cfg GateConfig) *Gate {
	b.t.Helper()
	cfg.Redis = b.redis.Client()
	g, err := NewGate(cfg)
	if err != nil {
		b.t.Fatalf("NewGate: %v", err)
	}
	b.t.Cleanup(g.Close)
	return g
}

func (b *bundle) lanes(opts ...LanesOption) *Lanes {
	return NewLanes(b.redis.Client(), nil, opts...)
}

// maxInWindow is the largest number of times in any half-open window
// [t, t+w); times must be sorted.
func maxInWindow(times []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < w {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

// TestGateFleetLimit runs three Gates (three worker processes) with many
// waiters each against one limit, and checks at the grant times that no 1-s
// window holds more than the limit, that every process is served, and that it
// costs few limiter round trips.
func TestGateFleetLimit(t *testing.T) {
	t.Parallel()
	const (
		model     = "mimo-v2.6-flash"
		perSecond = 20
		duration  = 3 * time.Second
		procs     = 3
		waiters   = 40 // per process
	)
	b := setup(t)
	cfg := GateConfig{
		// Tokens are limited too, but not binding: token calls reserve for
		// several waiters at once.
		PerModel: map[string]Limit{model: {RPM: perSecond * 60, TPM: perSecond * 60 * 1000}},
		// Grant times are taken by the waiting goroutines, which under -race
		// on a loaded machine wake with more jitter than at the API.
		Headroom: 0.04,
	}
	gates := make([]*Gate, procs)
	for i := range gates {
		gates[i] = b.gate(cfg)
	}

	var (
		mu     sync.Mutex
		grants []time.Time
	)
	ctx, cancel := context.WithTimeout(context.Background(), duration+500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for _, g := range gates {
		for range waiters {
			wg.Go(func() {
				for {
					p, err := g.Wait(ctx, model, 500)
					if err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("Wait: %v", err)
						}
						return
					}
					now := time.Now()
					mu.Lock()
					grants = append(grants, now)
					mu.Unlock()
					p.Done(400)
				}
			})
		}
	}
	wg.Wait()

	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	if len(grants) == 0 {
		t.Fatal("no permit granted")
	}
	var inRun []time.Time // the first `duration` from the first grant
	for _, g := range grants {
		if g.Sub(grants[0]) < duration {
			inRun = append(inRun, g)
		}
	}
	worst := maxInWindow(grants, time.Second)
	want := perSecond * int(duration/time.Second)
	var calls, permits, dropped int64
	for _, g := range gates {
		s := g.Stats()
		calls += s.LimiterCalls
		permits += s.Permits
		dropped += s.Models[model].Dropped
	}
	perPermit := float64(calls) / float64(permits)
	t.Logf("granted %d in %s (%.1f%% of %d), at most %d in a 1-s window (limit %d), %.2f limiter calls per permit, %d slots dropped",
		len(inRun), duration, 100*float64(len(inRun))/float64(want), want, worst, perSecond, perPermit, dropped)

	if worst > perSecond {
		t.Errorf("%d permits in one 1-s window, limit %d", worst, perSecond)
	}
	// How much of the limit is used depends on how promptly goroutines
	// wake on this machine: BenchmarkGateFleetPrecision measures it. Here,
	// every process must have had its share of permits.
	for i, g := range gates {
		if g.Stats().Permits == 0 {
			t.Errorf("process %d was granted no permit", i)
		}
	}
	if perPermit > 3 {
		t.Errorf("%.2f limiter calls per permit (%d/%d), want at most 3", perPermit, calls, permits)
	}
}

func TestGateCooldown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := GateConfig{Default: Limit{RPM: 600, TPM: -1}} // 10/s
	a, other := b.gate(cfg), b.gate(cfg)
	lanes := b.lanes()
	ctx := context.Background()
	const hot, cool = "mimo-v2.6-pro", "mimo-v2.6-flash"

	// The other process uses the lane before the cooldown.
	p, err := other.Wait(ctx, hot, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(0)

	if err := a.Cooldown(ctx, hot, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	st, err := lanes.State(ctx, hot)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusCoolingDown || st.CooldownUntil.IsZero() {
		t.Fatalf("state after Cooldown = %+v, want cooling_down with an end", st)
	}
	until := st.CooldownUntil

	// Cooldown never shortens.
	if err := a.Cooldown(ctx, hot, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st2, _ := lanes.State(ctx, hot); !st2.CooldownUntil.Equal(until) {
		t.Errorf("a shorter Cooldown moved the end from %s to %s", until, st2.CooldownUntil)
	}

	var (
		wg               sync.WaitGroup
		hotAt, coolAt    time.Time
		hotErr, coolErr  error
		hotTook, coolTok *Permit
	)
	wg.Go(func() { hotTook, hotErr = other.Wait(ctx, hot, 0); hotAt = time.Now() })
	wg.Go(func() { coolTok, coolErr = other.Wait(ctx, cool, 0); coolAt = time.Now() })
	wg.Wait()
	if hotErr != nil || coolErr != nil {
		t.Fatalf("Wait: %v, %v", hotErr, coolErr)
	}
	hotTook.Done(0)
	coolTok.Done(0)
	// Millisecond resolution of the stored end, and the same clock.
	if early := until.Sub(hotAt); early > 5*time.Millisecond {
		t.Errorf("%s permit granted %s before the cooldown ended", hot, early)
	}
	if !coolAt.Before(until) {
		t.Errorf("%s permit granted at %s, after the cooldown of %s ended (%s): other models must go on", cool, coolAt, hot, until)
	}

	// A longer cooldown extends it.
	if err := a.Cooldown(ctx, hot, time.Minute); err != nil {
		t.Fatal(err)
	}
	if st3, _ := lanes.State(ctx, hot); st3.CooldownUntil.Before(time.Now().Add(50 * time.Second)) {
		t.Errorf("a longer Cooldown did not extend: ends %s", st3.CooldownUntil)
	}
}

// TestCooldownMovesRateSchedule pins the format of redis_rate's key that the
// cooldown script writes: a process that has not heard of the cooldown is
// still refused a request slot inside it.
func TestCooldownMovesRateSchedule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.gate(GateConfig{Default: Limit{RPM: 600}})
	ctx := context.Background()
	if err := g.Cooldown(ctx, "m", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	lim := redis_rate.NewLimiter(b.redis.Client())
	res, err := lim.Allow(ctx, g.ks.rpm("m"), redis_rate.Limit{Rate: 600, Period: time.Minute, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed != 0 || res.RetryAfter < 1800*time.Millisecond || res.RetryAfter > 2100*time.Millisecond {
		t.Errorf("limiter during a 2s cooldown: allowed %d, retry after %s; want denied for about 2s", res.Allowed, res.RetryAfter)
	}
}

func TestGateTokenCorrection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 100 tokens/s, burst 100; no request limit: tokens are what binds.
	g := b.gate(GateConfig{Default: Limit{RPM: -1, TPM: 6000}, Headroom: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	run := func(model string, used int64) (n int) {
		for {
			p, err := g.Wait(ctx, model, 100)
			if err != nil {
				return n
			}
			n++
			p.Done(used)
		}
	}
	var exact, less int
	var wg sync.WaitGroup
	wg.Go(func() { exact = run("as-estimated", 100) })
	wg.Go(func() { less = run("used-less", 10) })
	wg.Wait()
	t.Logf("in 2s: %d permits using 100 of 100 tokens, %d using 10 of 100", exact, less)
	if exact > 4 {
		t.Errorf("%d permits of 100 tokens in 2s at 100 tokens/s", exact)
	}
	if less < 3*exact {
		t.Errorf("Done with fewer tokens let %d permits through, want at least 3x %d", less, exact)
	}
	s := g.Stats().Models["used-less"]
	if s.LimiterCalls > int64(less)+1 {
		t.Errorf("%d limiter calls for %d permits: the correction must not cost extra calls", s.LimiterCalls, less)
	}
}

func TestGateLargeReservation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Burst 100 tokens: a reservation of 250 could never be granted whole.
	g := b.gate(GateConfig{Default: Limit{RPM: -1, TPM: 6000}, Headroom: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	for range 2 {
		p, err := g.Wait(ctx, "m", 250)
		if err != nil {
			t.Fatalf("Wait for a reservation above the burst: %v", err)
		}
		p.Done(250)
	}
	// The first goes after one burst and owes 150; the second pays that
	// and its own first 100 first: 250 tokens at 100/s.
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("two reservations of 250 tokens at 100 tokens/s took %s, want at least 2s", took)
	}
}

func TestGateWaitCanceled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.gate(GateConfig{Default: Limit{RPM: 1}}) // one request a minute
	ctx := context.Background()
	p, err := g.Wait(ctx, "m", 10)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(10)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := g.Wait(short, "m", 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past its deadline = %v, want context.DeadlineExceeded", err)
	}
	if s := g.Stats().Models["m"]; s.Waiting != 0 || s.Permits != 1 {
		t.Errorf("after a canceled wait: %+v, want 0 waiting and 1 permit", s)
	}
}

func TestGateUnlimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.gate(GateConfig{PerModel: map[string]Limit{"free": {}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 200 {
		p, err := g.Wait(ctx, "free", 1000)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(1000)
	}
	if s := g.Stats(); s.LimiterCalls != 0 || s.Permits != 200 {
		t.Errorf("unlimited model: %d limiter calls for %d permits, want 0 for 200", s.LimiterCalls, s.Permits)
	}
}

func TestGateClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.gate(GateConfig{Default: Limit{RPM: 1}})
	ctx := context.Background()
	p, err := g.Wait(ctx, "m", 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(0)
	errc := make(chan error, 1)
	go func() { _, err := g.Wait(ctx, "m", 0); errc <- err }()
	waitFor(t, func() bool { return g.Stats().Models["m"].Waiting == 1 })
	g.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Wait during Close = %v, want ErrClosed", err)
	}
	if _, err := g.Wait(ctx, "m", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close = %v, want ErrClosed", err)
	}
}

func TestNewGateValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewGate(GateConfig{}); err == nil {
		t.Error("NewGate without Redis: no error")
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	if _, err := NewGate(GateConfig{Redis: rdb, Headroom: 1.5}); err == nil {
		t.Error("NewGate with Headroom 1.5: no error")
	}
}

// waitFor polls cond (test scaffolding only: the Gate never polls).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTokenDebtOutlivesItsProcess (review hole 7): tokens a process used
// beyond its reservations are owed to the fleet's token limit; when the
// process stops, the debt is handed over and another process pays it,
// instead of leaving with it.
func TestTokenDebtOutlivesItsProcess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := GateConfig{Default: Limit{RPM: -1, TPM: 60_000}, Headroom: -1} // 1,000 tokens/s, burst 1,000
	a, err := NewGate(GateConfig{Redis: b.redis.Client(), Default: cfg.Default, Headroom: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := a.Wait(ctx, "m", 10)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(3010) // the answer was far longer than the estimate
	if d := a.Stats().Models["m"].Debt; d != 3000 {
		t.Fatalf("debt of the process: %d, want 3000", d)
	}
	a.Close()
	owed, err := b.redis.Client().Get(ctx, keyspace{prefix: job.KeyPrefix}.debt("m")).Int64()
	if err != nil || owed != 3000 {
		t.Fatalf("debt handed over: %d, %v; want 3000", owed, err)
	}
	// Another process takes it over with its first read of the lane, and
	// its first permit pays it: three bursts' worth of limiter calls.
	g := b.gate(cfg)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p, err = g.Wait(wctx, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(1)
	if n := b.redis.Client().Exists(ctx, keyspace{prefix: job.KeyPrefix}.debt("m")).Val(); n != 0 {
		t.Errorf("the debt is still waiting in Redis after another process took the lane")
	}
	s := g.Stats().Models["m"]
	if s.LimiterCalls < 4 || s.Debt != 0 {
		t.Errorf("the second process made %d limiter calls and owes %d; want it to pay 3000 tokens first (4 calls of at most 1000)",
			s.LimiterCalls, s.Debt)
	}
}
