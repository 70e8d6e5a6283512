package mockapi

import (
	"testing"
	"time"
)

func TestWindowMax(t *testing.T) {
	t.Parallel()
	sec := int64(time.Second)
	for _, tt := range []struct {
		name   string
		events []int64 // in ms
		want   int
	}{
		{"none", nil, 0},
		{"one", []int64{0}, 1},
		{"same instant", []int64{5, 5, 5}, 3},
		{"exactly one span apart are two windows", []int64{0, 1000, 2000}, 1},
		{"just inside", []int64{0, 999, 1998}, 2},
		{"burst later", []int64{0, 100, 1500, 1600, 1700, 2400}, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow(time.Second)
			for _, ms := range tt.events {
				w.add(ms * sec / 1000)
			}
			if w.max != tt.want {
				t.Errorf("max = %d, want %d", w.max, tt.want)
			}
		})
	}
}

func TestRingGrows(t *testing.T) {
	t.Parallel()
	var r ring[int64]
	next := int64(0)
	for i := int64(0); i < 1000; i++ {
		r.push(i)
		if i%3 == 0 {
			if got := r.pop(); got != next {
				t.Fatalf("pop = %d, want %d", got, next)
			}
			next++
		}
	}
	for r.len() > 0 {
		if got := r.pop(); got != next {
			t.Fatalf("pop = %d, want %d", got, next)
		}
		next++
	}
	if next != 1000 {
		t.Fatalf("popped %d", next)
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	s := int64(time.Second)
	var l limiter
	admit := func(at int64, rpm int, tpm, cost int64) time.Duration {
		w, _ := l.admit(at, rpm, tpm, cost)
		return w
	}
	// 3 a minute.
	for i, at := range []int64{0, 10 * s, 20 * s} {
		if w := admit(at, 3, 0, 1); w != 0 {
			t.Fatalf("request %d refused, wait %s", i, w)
		}
	}
	if w := admit(30*s, 3, 0, 1); w != 30*time.Second {
		t.Errorf("wait = %s, want 30s (the first leaves at 60s)", w)
	}
	if w := admit(60*s, 3, 0, 1); w != 0 {
		t.Errorf("at 60s: wait %s", w)
	}
	// The limit lowered at run time: 10s, 20s and 60s in the log, rpm 2: the
	// entries at 10s and 20s must both leave.
	if w := admit(61*s, 2, 0, 1); w != 19*time.Second {
		t.Errorf("rpm lowered: wait %s, want 19s (until the entry at 20s leaves)", w)
	}
	// Tokens: 100 a minute.
	var tl limiter
	if w, _ := tl.admit(0, 0, 100, 60); w != 0 {
		t.Fatal("first refused")
	}
	if w, _ := tl.admit(5*s, 0, 100, 30); w != 0 {
		t.Fatal("second refused")
	}
	if w, why := tl.admit(6*s, 0, 100, 20); w != 54*time.Second || why != "tokens" {
		t.Errorf("over tokens: %s %q, want 54s (the first frees 60)", w, why)
	}
	if w, why := tl.admit(6*s, 0, 100, 101); w != time.Minute || why != "request_too_large" {
		t.Errorf("too large: %s %q", w, why)
	}
}

func TestFaultPick(t *testing.T) {
	t.Parallel()
	var r faultRates
	r[faultHTTP500], r[faultHang] = 0.25, 0.5
	for _, tt := range []struct {
		u    float64
		want faultKind
	}{{0, faultHTTP500}, {0.2499, faultHTTP500}, {0.25, faultHang}, {0.7499, faultHang}, {0.75, faultNone}, {0.9999, faultNone}} {
		if got := r.pick(tt.u); got != tt.want {
			t.Errorf("pick(%v) = %v, want %v", tt.u, got, tt.want)
		}
	}
	if (faultRates{}).pick(0) != faultNone {
		t.Error("no rates, yet a fault")
	}
}
