package worker

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	zero := func() float64 { return 0 }
	half := func() float64 { return 0.5 }
	tests := []struct {
		name       string
		b          Backoff
		n          int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first attempt", Backoff{Base: time.Second, Max: time.Minute, Rand: zero}, 1, 0, time.Second},
		{"doubles", Backoff{Base: time.Second, Max: time.Minute, Rand: zero}, 4, 0, 8 * time.Second},
		{"jitter added", Backoff{Base: time.Second, Max: time.Minute, Rand: half}, 2, 0, 2500 * time.Millisecond},
		{"capped at max", Backoff{Base: time.Second, Max: time.Minute, Rand: zero}, 10, 0, time.Minute},
		{"jitter never passes max", Backoff{Base: time.Second, Max: time.Minute, Rand: half}, 7, 0, time.Minute},
		{"huge n does not overflow", Backoff{Base: time.Second, Max: time.Minute, Rand: zero}, 500, 0, time.Minute},
		{"retry-after wins when longer", Backoff{Base: time.Second, Max: time.Minute, Rand: zero}, 1, 7 * time.Second, 7 * time.Second},
		{"retry-after above max still honoured", Backoff{Base: time.Second, Max: time.Minute, Rand: zero}, 1, 2 * time.Minute, 2 * time.Minute},
		{"retry-after shorter than backoff", Backoff{Base: time.Second, Max: time.Minute, Rand: zero}, 3, time.Second, 4 * time.Second},
		{"n below one acts as one", Backoff{Base: 100 * time.Millisecond, Max: time.Second, Rand: zero}, 0, 0, 100 * time.Millisecond},
		{"defaults", Backoff{Rand: zero}, 2, 0, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.b.Delay(tt.n, tt.retryAfter); got != tt.want {
				t.Fatalf("Delay(%d, %s) = %s, want %s", tt.n, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestBackoffJitterRange(t *testing.T) {
	t.Parallel()
	b := Backoff{Base: time.Second, Max: time.Hour}
	for range 1000 {
		d := b.Delay(3, 0)
		if d < 4*time.Second || d >= 5*time.Second {
			t.Fatalf("Delay(3) = %s, want in [4s, 5s)", d)
		}
	}
}
