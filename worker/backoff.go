package worker

import (
	"math/rand/v2"
	"time"
)

// Backoff is the retry policy's delay: after the n-th failed attempt (n ≥ 1)
// the job waits max(RetryAfter, min(Base·2^(n-1) + jitter, Max)), jitter
// drawn uniformly from [0, Base). The API's Retry-After is never undercut,
// even when it exceeds Max.
type Backoff struct {
	// Base is the first delay. Default 1s (MIMOQ_BACKOFF_BASE).
	Base time.Duration
	// Max caps the exponential part. Default 60s (MIMOQ_BACKOFF_MAX).
	Max time.Duration
	// Rand returns a number in [0, 1) for the jitter. Default math/rand/v2.
	Rand func() float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = 60 * time.Second
	}
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
	return b
}

// Delay returns the wait before the next attempt after n failed attempts.
func (b Backoff) Delay(n int, retryAfter time.Duration) time.Duration {
	b = b.withDefaults()
	if n < 1 {
		n = 1
	}
	d := b.Max
	// Base·2^(n-1) overflows long before 63 doublings; stop at Max.
	if n-1 < 62 {
		if exp := b.Base << (n - 1); exp > 0 && exp < b.Max {
			d = exp
		}
	}
	d += time.Duration(b.Rand() * float64(b.Base))
	if d > b.Max {
		d = b.Max
	}
	if retryAfter > d {
		d = retryAfter
	}
	return d
}
