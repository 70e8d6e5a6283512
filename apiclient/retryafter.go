package apiclient

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter caps what [ParseRetryAfter] returns: a longer wait is taken as
// this one, so that a broken header cannot stall a lane for years.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads how long the server asked the client to wait.
//
// retry-after-ms (milliseconds, possibly fractional, as OpenAI-style servers
// send) wins when present and valid. Otherwise Retry-After is read as seconds
// (an integer or a decimal like "1.5") or as an HTTP date, taken relative to now;
// a date in the past means 0. Negative numbers, signs, exponents and other
// garbage are ignored (ok is false). Waits over [MaxRetryAfter] are capped to it.
// The result is never negative.
func ParseRetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if d, ok := parseDecimal(h.Get("Retry-After-Ms"), time.Millisecond); ok {
		return d, true
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if d, ok := parseDecimal(v, time.Second); ok {
		return d, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter), true
}

// parseDecimal reads "12" or "1.5" (digits, at most one dot with digits after it)
// as a count of unit, capped to MaxRetryAfter.
func parseDecimal(s string, unit time.Duration) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return 0, false
	}
	dot := -1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
		case c == '.' && dot < 0 && i > 0 && i < len(s)-1:
			dot = i
		default:
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return 0, false
	}
	ns := f * float64(unit)
	if math.IsInf(ns, 0) || math.IsNaN(ns) || ns >= float64(MaxRetryAfter) {
		return MaxRetryAfter, true
	}
	return time.Duration(ns), true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}
