package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
)

func TestSparkline(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		want string
	}{
		{nil, ""},
		{[]int64{0, 0, 0}, "   "},
		{[]int64{0, 1, 4, 8}, " ▁▄█"},
		{[]int64{1, 100}, "▁█"}, // a small non-zero value still shows
		{[]int64{50, 100, 75}, "▄█▆"},
	} {
		if got := sparkline(tc.in); got != tc.want {
			t.Errorf("sparkline(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPrintStatsSparklines(t *testing.T) {
	calls := make([]int64, 60)
	dead := make([]int64, 60)
	for i := range calls {
		calls[i] = int64(i)
	}
	dead[59] = 3
	st := &ops.Stats{At: time.Now(), Models: []ops.ModelStats{{Model: "mimo-v2.6-flash", CallsPerMinute: calls,
		DeadPerMinute: dead, Lane: lane.State{Status: lane.StatusRunning}}}}
	var buf bytes.Buffer
	printStats(&buf, st)
	out := buf.String()
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "calls/min |") {
			line = l
		}
	}
	if !strings.Contains(line, "mimo-v2.6-flash") || !strings.Contains(line, "|"+sparkline(calls)+"|") ||
		!strings.Contains(line, "peak 59") || !strings.Contains(line, "dead |"+sparkline(dead)+"|") || !strings.HasSuffix(line, " 3") {
		t.Errorf("sparkline line: %q\nin:\n%s", line, out)
	}
}
