package webui

import (
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
)

func minutes(start time.Time, n int, f func(k int) ops.Minute) []ops.Minute {
	out := make([]ops.Minute, n)
	for k := range out {
		m := f(k)
		m.At = start.Add(time.Duration(k) * time.Minute)
		out[k] = m
	}
	return out
}

func TestBuckets(t *testing.T) {
	start := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	mins := minutes(start, 360, func(k int) ops.Minute {
		m := ops.Minute{MinuteCounts: ops.MinuteCounts{Calls: 2, Succeeded: 1, DeadTerminal: int64(k % 2)}, DLQ: int64(k)}
		switch {
		case k == 15:
			m.Lane, m.Reason = lane.StatusPaused, "401 on job x"
		case k == 16:
			m.Lane = lane.StatusCoolingDown
		case k < 30:
			m.Lane = lane.StatusRunning
		default:
			m.DLQ = -1
		}
		return m
	})
	bs := buckets(mins, parseSpan("6h"))
	if len(bs) != 36 {
		t.Fatalf("%d buckets of 10 min in 6h, want 36", len(bs))
	}
	b := bs[1] // minutes 10..19
	if b.T != start.Unix()/60+10 || b.Counts.Calls != 20 || b.Counts.DeadTerminal != 5 || b.DLQ != 19 ||
		b.Lane != lane.StatusPaused || b.Reason != "401 on job x" {
		t.Errorf("bucket 1: %+v", b)
	}
	if b := bs[3]; b.DLQ != -1 || b.Lane != "" {
		t.Errorf("a bucket nobody sampled: %+v", b)
	}
	if got := len(buckets(minutes(start, 1440, func(int) ops.Minute { return ops.Minute{} }), parseSpan("24h"))); got != 48 {
		t.Errorf("%d buckets in 24h, want 48", got)
	}
	// 10:03 to 16:02 in 10-min bars: the round hours 11:00 to 15:00 are
	// labelled, where they fall; 16:00, at the very edge, is not.
	ticks := xTicks(buckets(minutes(start.Add(3*time.Minute), 360, func(int) ops.Minute { return ops.Minute{} }), parseSpan("6h")), parseSpan("6h"))
	if len(ticks) != 5 || ticks[0].Label != "11:00" || ticks[4].Label != "15:00" ||
		math.Abs(ticks[0].Pos-(plotX+plotW*57/360)) > 1e-9 {
		t.Errorf("6h ticks %+v", ticks)
	}
	// Midnight is labelled with the date.
	day := xTicks(buckets(minutes(start.Add(-10*time.Hour), 1440, func(int) ops.Minute { return ops.Minute{} }), parseSpan("24h")), parseSpan("24h"))
	var labels []string
	for _, tk := range day {
		labels = append(labels, tk.Label)
	}
	if strings.Join(labels, " ") != "Dec 2 04:00 08:00 12:00 16:00 20:00" {
		t.Errorf("24h ticks %v", labels)
	}
	if got := parseSpan("24h").label(start.Unix() / 60); got != "Dec 2 10:00" {
		t.Errorf("a 24h table row is labelled %q", got)
	}
	if sp := parseSpan("bogus"); sp.Name != "1h" {
		t.Errorf("an unknown range is %s, want 1h", sp.Name)
	}

	// Lane spans merge equal buckets and keep the reason.
	h := ops.ModelHistory{Model: "m", Minutes: mins[:60]}
	c := laneChart([]ops.ModelHistory{h}, parseSpan("1h"))
	var states []string
	for _, s := range c.Spans {
		states = append(states, s.State)
	}
	if strings.Join(states, ",") != "running,paused,cooling_down,running," {
		t.Errorf("spans %v", states)
	}
	if !strings.Contains(c.Spans[1].Title, "401 on job x") {
		t.Errorf("paused span title %q lacks the reason", c.Spans[1].Title)
	}
}

func TestNiceMax(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 0.5, 1: 1, 7: 10, 11: 20, 110: 200, 100: 100, 260: 500} {
		if got := niceMax(in); got != want {
			t.Errorf("niceMax(%v) = %v, want %v", in, got, want)
		}
	}
}

// TestOverviewChartsHTTP: the overview carries its charts and tables, the
// range switch, the refresh toggle, and the strict CSP.
func TestOverviewChartsHTTP(t *testing.T) {
	b := setup(t)
	now := time.Now()
	if err := ops.CountMinute(b.ctx, b.rdb, "mimo-v2.6-flash", ops.MinuteCounts{Calls: 42, Succeeded: 40, Retried: 2}, now); err != nil {
		t.Fatal(err)
	}
	get := func(q string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/ui"+q, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /ui%s: %d\n%s", q, resp.StatusCode, body)
		}
		return resp, string(body)
	}
	resp, body := get("")
	if resp.Header.Get("Refresh") != "30" {
		t.Errorf("Refresh header %q, want 30", resp.Header.Get("Refresh"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(body, "<script") {
		t.Error("the overview has a script")
	}
	minute := now.Unix() / 60
	bar := regexp.MustCompile(`data-series="calls" data-t="` + strconv.FormatInt(minute, 10) + `" data-v="42"`)
	if n := strings.Count(body, `<svg class="plot"`); n < 8 || !bar.MatchString(body) {
		t.Errorf("%d charts; calls bar of minute %d found: %v", n, minute, bar.MatchString(body))
	}
	if strings.Count(body, `<table class="data">`) != strings.Count(body, `<svg class="plot"`) {
		t.Error("not every chart has its table")
	}
	for _, want := range []string{`href="/ui?range=6h"`, `href="/ui?range=24h"`, `id="refresh-off"`, "limit 100", "calls per minute"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	resp, body = get("?range=24h&refresh=off")
	if resp.Header.Get("Refresh") != "" || !strings.Contains(body, `id="refresh-on"`) || !strings.Contains(body, `href="/ui?range=6h&amp;refresh=off"`) {
		t.Errorf("refresh=off: Refresh %q; the links keep it off", resp.Header.Get("Refresh"))
	}
	if !strings.Contains(body, "calls per 30 min") {
		t.Error("24h range: no 30-minute bars")
	}
}
