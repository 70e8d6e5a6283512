package mockapi

import "time"

// ring is a growable FIFO queue.
type ring[T any] struct {
	buf  []T // len(buf) is 0 or a power of two
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }

func (r *ring[T]) at(i int) T { return r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		size := max(16, 2*len(r.buf))
		buf := make([]T, size)
		for i := 0; i < r.n; i++ {
			buf[i] = r.at(i)
		}
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

func (r *ring[T]) pop() T {
	v := r.buf[r.head]
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return v
}

// window finds the most events in any sliding window of a fixed span. Windows
// are half-open, (t-span, t], as the rate limiter's: an event exactly one span
// after another is in a new window. Events must be added in time order.
type window struct {
	span int64 // nanoseconds
	ts   ring[int64]
	max  int
}

func newWindow(span time.Duration) window { return window{span: int64(span)} }

func (w *window) add(now int64) {
	for w.ts.n > 0 && w.ts.at(0) <= now-w.span {
		w.ts.pop()
	}
	w.ts.push(now)
	w.max = max(w.max, w.ts.n)
}

// admission is one request the limiter let through.
type admission struct {
	at     int64 // nanoseconds since the state's epoch
	tokens int64
}

// limiter is a sliding-window log: it admits a request when the requests and
// tokens admitted in the last minute, this one included, stay within the
// limits. It is exact, so no 60-s window ever holds more than RPM admitted
// requests — stricter than a token bucket, which lets a burst through on top
// of the refill.
type limiter struct {
	log    ring[admission]
	tokens int64
}

const minute = int64(time.Minute)

// admit records the request and returns 0, or returns how long until it would
// be admitted and what limit stops it ("requests", "tokens", or "request_too_large"
// when the request alone is above the token limit).
func (l *limiter) admit(now int64, rpm int, tpm int64, cost int64) (time.Duration, string) {
	for l.log.n > 0 && l.log.at(0).at <= now-minute {
		l.tokens -= l.log.pop().tokens
	}
	var wait int64
	reason := ""
	if rpm > 0 && l.log.n >= rpm {
		// The request fits once the entry rpm places from the end has left.
		wait = l.log.at(l.log.n-rpm).at + minute - now
		reason = "requests"
	}
	if tpm > 0 && l.tokens+cost > tpm {
		if cost > tpm {
			return time.Duration(minute), "request_too_large"
		}
		need, freed := l.tokens+cost-tpm, int64(0)
		for i := 0; i < l.log.n; i++ {
			e := l.log.at(i)
			freed += e.tokens
			if freed >= need {
				if w := e.at + minute - now; w > wait {
					wait, reason = w, "tokens"
				}
				break
			}
		}
	}
	if reason != "" {
		return time.Duration(max(wait, 1)), reason
	}
	l.log.push(admission{at: now, tokens: cost})
	l.tokens += cost
	return 0, ""
}
