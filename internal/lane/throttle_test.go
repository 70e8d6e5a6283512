package lane

import (
	"context"
	"testing"
	"time"
)

// TestThrottle: a run of 429s without Retry-After doubles the cooldown up
// to the max, a given Retry-After is used as it is, and successes end the
// run; 429s while the fleet sends more than the API accepts halve the
// effective rate, at most once a second, never below 95 % of what was
// accepted in the last minute nor a tenth of the limit, and not for a
// used-up quota;
// a run of successes raises it back by steps to the configured limit, and
// every Gate of the fleet hears of each change.
func TestThrottle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const model = "m"
	cfg := GateConfig{Default: Limit{RPM: 3000, TPM: -1}, CooldownBase: 100 * time.Millisecond, CooldownMax: time.Second}
	g, other := b.gate(cfg), b.gate(cfg)
	l := b.lanes(WithLimits(cfg.Default, nil))
	// Both gates use the lane, so that they hear its events.
	for _, gg := range []*Gate{g, other} {
		p, err := gg.Wait(ctx, model, 1)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(1)
	}

	// 600 calls went through in the last minute (100 in each of six
	// 10-s buckets), then 429s. (The test's sleeps may cross a bucket
	// boundary: the same 600 then span seven buckets, 514 a minute, and
	// the floor is 95 % of that, 488, not 570.)
	for _, k := range g.ks.okKeys(model, time.Now())[:6] {
		if err := b.redis.Client().Set(ctx, k, 100, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		retryAfter, cooldown time.Duration
		wait                 bool // a second after the last decrease
		quota                bool
		eff                  int
	}{
		{0, 100 * time.Millisecond, false, false, 0},    // a lone 429 is a fault: the configured rate holds
		{0, 200 * time.Millisecond, false, false, 1500}, // two in a row: halved
		{0, 400 * time.Millisecond, true, true, 1500},   // a used-up quota says nothing of the rate
		{0, 800 * time.Millisecond, false, false, 750},
		{2 * time.Second, 2 * time.Second, true, false, 570}, // halving would go below 95 % of what passed
		{0, time.Second, true, false, 570},                   // already below what passed: unchanged
		{0, time.Second, false, false, 570},                  // cooldown capped at the max
	}
	for i, s := range steps {
		if s.wait {
			time.Sleep(1010 * time.Millisecond)
		}
		cool, err := g.Note429(ctx, model, s.retryAfter, s.quota)
		if err != nil {
			t.Fatal(err)
		}
		st, err := l.State(ctx, model)
		if err != nil {
			t.Fatal(err)
		}
		effOK := st.EffectiveRPM == s.eff || s.eff == 570 && st.EffectiveRPM >= 488 && st.EffectiveRPM <= 570
		if cool != s.cooldown || !effOK || st.Throttled != i+1 {
			t.Fatalf("429 #%d: cooldown %s, effective %d, run %d; want %s, %d, %d", i+1, cool, st.EffectiveRPM,
				st.Throttled, s.cooldown, s.eff, i+1)
		}
	}
	st, _ := l.State(ctx, model)
	if !st.QuotaSuspect(time.Nanosecond, time.Now()) || st.QuotaSuspect(time.Hour, time.Now()) {
		t.Errorf("quota suspicion of a run since %s: wrong", st.Since429)
	}
	Eventually(t, 5*time.Second, "the other gate hears the lowered rate", func() bool {
		ln := other.existing(model)
		ln.mu.Lock()
		defer ln.mu.Unlock()
		st, _ := l.State(ctx, model)
		return ln.effRPM == st.EffectiveRPM
	})

	// A success ends the run: the next 429 starts at the base again.
	if err := g.NoteOK(ctx, model, 1); err != nil {
		t.Fatal(err)
	}
	if st, _ := l.State(ctx, model); st.Throttled != 0 || st.QuotaSuspect(time.Nanosecond, time.Now()) {
		t.Fatalf("after a success: %+v", st)
	}
	// Runs of successes (max(10, eff/10) each) raise the rate by 1/200 of
	// the configured limit, up to it.
	for i := 0; i < 200; i++ {
		if err := g.NoteOK(ctx, model, 300); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := l.State(ctx, model); st.EffectiveRPM != 0 {
		t.Fatalf("after many successes the effective rate is %d, want back to the configured", st.EffectiveRPM)
	}
	if cool, _ := g.Note429(ctx, model, 0, false); cool != 100*time.Millisecond {
		t.Fatalf("first 429 of a new run: cooldown %s", cool)
	}
}

// Eventually polls cond until it holds or d passes.
func Eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestThrottleFloor: 429s that keep coming whatever the rate (faults, not
// the API's limit) never take the effective rate below a tenth of the
// configured one.
func TestThrottleFloor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	g := b.gate(GateConfig{Default: Limit{RPM: 1000, TPM: -1}})
	l := b.lanes(WithLimits(Limit{RPM: 1000, TPM: -1}, nil))
	for range 6 {
		if _, err := g.Note429(ctx, "m", 0, false); err != nil {
			t.Fatal(err)
		}
		// Let the next one count as a new signal.
		_ = b.redis.Client().HSet(ctx, g.ks.throttle("m"), "dec", 0).Err()
	}
	if st, _ := l.State(ctx, "m"); st.EffectiveRPM != 100 {
		t.Fatalf("effective rate %d after six halvings of 1000, want the floor of 100", st.EffectiveRPM)
	}
}
