package apiclient

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		ms, ra string
		want   time.Duration
		ok     bool
	}{
		{"", "", 0, false},
		{"", "7", 7 * time.Second, true},
		{"", " 7 ", 7 * time.Second, true},
		{"", "0", 0, true},
		{"", "1.5", 1500 * time.Millisecond, true},
		{"", "Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second, true},
		{"", "Saturday, 01-Mar-25 12:01:00 GMT", time.Minute, true},
		{"", "Sat Mar  1 12:00:10 2025", 10 * time.Second, true},
		{"", "Sat, 01 Mar 2025 11:00:00 GMT", 0, true}, // in the past: go now
		{"", "-5", 0, false},
		{"", "+5", 0, false},
		{"", "1e3", 0, false},
		{"", "0x10", 0, false},
		{"", "NaN", 0, false},
		{"", "Inf", 0, false},
		{"", "5s", 0, false},
		{"", "1.", 0, false},
		{"", ".5", 0, false},
		{"", "1.2.3", 0, false},
		{"", "soon", 0, false},
		{"", "100000", MaxRetryAfter, true},
		{"", "99999999999999999999999999999999999999", MaxRetryAfter, true},
		{"", "Fri, 01 Mar 2030 12:00:00 GMT", MaxRetryAfter, true},
		{"1500", "", 1500 * time.Millisecond, true},
		{"250.5", "7", 250*time.Millisecond + 500*time.Microsecond, true},
		{"0", "7", 0, true},
		{"-1", "7", 7 * time.Second, true},  // invalid ms falls back
		{"abc", "7", 7 * time.Second, true}, // invalid ms falls back
		{"abc", "", 0, false},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.ms != "" {
			h.Set("retry-after-ms", tc.ms)
		}
		if tc.ra != "" {
			h.Set("retry-after", tc.ra)
		}
		got, ok := ParseRetryAfter(h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(ms=%q, ra=%q) = %s, %v; want %s, %v", tc.ms, tc.ra, got, ok, tc.want, tc.ok)
		}
	}
}
