package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/lane"
)

func TestHistory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Date(2026, 11, 25, 10, 30, 30, 0, time.UTC)
	const m = "mimo-v2.6-flash"
	for _, c := range []struct {
		at time.Time
		c  MinuteCounts
	}{
		{now.Add(-3 * time.Minute), MinuteCounts{Calls: 5, Succeeded: 4, Retried: 1, RateLimited: 1, Cooldowns: 1}},
		{now.Add(-3 * time.Minute), MinuteCounts{Calls: 2, DeadTerminal: 2}},
		{now, MinuteCounts{Calls: 3, Succeeded: 1, Retried: 1, DeadExhausted: 1}},
		{now.Add(-25 * time.Hour), MinuteCounts{Calls: 100}}, // outside the retention
	} {
		if err := CountMinute(b.ctx, b.rdb, m, c.c, c.at); err != nil {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("401 authentication_failed on job 01JD ", 4)
	samples := []lane.State{{Model: m, Status: lane.StatusPaused, Reason: long}}
	if err := SampleLanes(b.ctx, b.rdb, samples, map[string]int64{m: 7}, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := SampleLanes(b.ctx, b.rdb, []lane.State{{Model: m, Status: lane.StatusRunning}}, nil, now); err != nil {
		t.Fatal(err)
	}

	h, err := b.ops.History(b.ctx, []string{m, "mimo-v2.6-pro"}, now.Add(-time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || len(h[0].Minutes) != 61 || len(h[1].Minutes) != 61 {
		t.Fatalf("history shape: %d models, %d minutes", len(h), len(h[0].Minutes))
	}
	mins := h[0].Minutes
	last := mins[60]
	if !last.At.Equal(now.Truncate(time.Minute)) || last.Calls != 3 || last.Succeeded != 1 || last.Retried != 1 ||
		last.DeadExhausted != 1 || last.DLQ != 0 || last.Lane != lane.StatusRunning {
		t.Errorf("current minute: %+v", last)
	}
	if p := mins[59]; p.Lane != lane.StatusPaused || p.DLQ != 7 || p.Reason != long[:maxReason] || p.Calls != 0 {
		t.Errorf("minute of the pause: %+v", p)
	}
	if p := mins[57]; p.Calls != 7 || p.Succeeded != 4 || p.DeadTerminal != 2 || p.Dead() != 2 || p.RateLimited != 1 ||
		p.Lane != lane.StatusCoolingDown || p.DLQ != -1 {
		t.Errorf("minute with a cooldown: %+v", p)
	}
	if p := mins[0]; p.Lane != "" || p.DLQ != -1 || !p.MinuteCounts.Zero() {
		t.Errorf("a minute nobody counted: %+v", p)
	}
	// A day back is the limit, whatever is asked.
	h, err = b.ops.History(b.ctx, []string{m}, now.Add(-48*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h[0].Minutes); n != int(HistoryRetention/time.Minute)+1 {
		t.Errorf("%d minutes for 48h, want %d", n, HistoryRetention/time.Minute+1)
	}
	for _, x := range h[0].Minutes {
		if x.Calls == 100 {
			t.Errorf("a minute older than the retention was read: %+v", x)
		}
	}
	// Stats reads the same counters.
	o := New(b.rdb)
	o.now = func() time.Time { return now }
	st, err := o.Stats(b.ctx, []string{m})
	if err != nil {
		t.Fatal(err)
	}
	ms := st.Models[0]
	if len(ms.CallsPerMinute) != 60 || ms.CallsPerMinute[59] != 3 || ms.CallsPerMinute[56] != 7 ||
		ms.DeadPerMinute[56] != 2 || ms.DeadPerMinute[59] != 1 || ms.SucceededLastHour != 5 {
		t.Errorf("stats of the last hour: %+v", ms)
	}
}

// TestHistoryMemory fills one model's full day of minutes as busy workers
// would, and measures what Redis holds: a typical day (calls, successes,
// retries, the lane running) and the worst case (every counter, every lane
// state and a long pause reason in every minute).
func TestHistoryMemory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		c     MinuteCounts
		lanes []lane.State
		limit int64
	}{
		{"typical", MinuteCounts{Calls: 100, Succeeded: 97, Retried: 3}, []lane.State{{Status: lane.StatusRunning}}, 300_000},
		{"worst", MinuteCounts{Calls: 100, Succeeded: 90, Retried: 8, DeadTerminal: 1, DeadExhausted: 1, RateLimited: 6, Cooldowns: 2},
			[]lane.State{{Status: lane.StatusRunning}, {Status: lane.StatusCoolingDown},
				{Status: lane.StatusPaused, Reason: strings.Repeat("x", 200)}}, 600_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			total, keys := fillHistory(t, b, tc.c, tc.lanes)
			t.Logf("24 h history of one model, %s: %d keys, %d bytes (%.0f bytes a minute)", tc.name, keys, total,
				float64(total)/float64(keys))
			if total > tc.limit {
				t.Errorf("a day of one model's history takes %d bytes, more than the %d the docs promise", total, tc.limit)
			}
		})
	}
}

func fillHistory(t *testing.T, b *bundle, c MinuteCounts, lanes []lane.State) (total int64, nkeys int) {
	t.Helper()
	now := time.Now()
	const m = "mimo-v2.6-pro-ultraspeed"
	for i := range lanes {
		lanes[i].Model = m
	}
	minutes := int(counterTTL / time.Minute)
	pipe := b.rdb.Pipeline()
	for k := range minutes {
		at := now.Add(-time.Duration(k) * time.Minute)
		_ = CountMinute(b.ctx, pipe, m, c, at)
		_ = SampleLanes(b.ctx, pipe, lanes, map[string]int64{m: 123456}, at)
	}
	if _, err := pipe.Exec(b.ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := b.rdb.Keys(b.ctx, "mimoq:{stats:"+m+"}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != minutes {
		t.Fatalf("%d keys, want %d", len(keys), minutes)
	}
	for _, k := range keys {
		n, err := b.rdb.MemoryUsage(b.ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if enc, _ := b.rdb.ObjectEncoding(b.ctx, k).Result(); enc != "listpack" {
			t.Fatalf("key %s is encoded %s, want listpack", k, enc)
		}
	}
	return total, len(keys)
}

// BenchmarkHistory24h reads a full day of three models' minutes, what the
// overview's 24h range reads on every refresh.
func BenchmarkHistory24h(b *testing.B) {
	bb := setup(b)
	now := time.Now()
	models := []string{"mimo-v2.6-pro", "mimo-v2.6-flash", "mimo-v2.6-pro-ultraspeed"}
	pipe := bb.rdb.Pipeline()
	for k := range int(HistoryRetention / time.Minute) {
		for _, m := range models {
			_ = CountMinute(bb.ctx, pipe, m, MinuteCounts{Calls: 90, Succeeded: 88, Retried: 2}, now.Add(-time.Duration(k)*time.Minute))
		}
	}
	if _, err := pipe.Exec(bb.ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		h, err := bb.ops.History(bb.ctx, models, now.Add(-HistoryRetention), now)
		if err != nil || len(h[0].Minutes) != 1441 {
			b.Fatal(err)
		}
	}
}
