package webui

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/browsertest"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/internal/ops"
	"github.com/mimoq/mimoq/worker"
)

// svgPoint is one data point of a chart, as the page wrote it.
type svgPoint struct {
	Chart  string `json:"chart"`
	Series string `json:"series"`
	T      string `json:"t"`
	V      string `json:"v"`
}

// TestBrowserOverviewCharts runs a real worker against the mock API (500s
// to retry, a content filter that dead-letters, two attempts so that some
// jobs are exhausted) on two models, pauses a lane, then opens the overview
// in Chromium: every bar and point of its SVG charts must match the
// per-minute counters in Redis, and their sums the batches' own counts.
func TestBrowserOverviewCharts(t *testing.T) {
	ctx := browsertest.New(t, 3*time.Minute)
	b := setup(t)
	models := []string{"mimo-v2.6-flash", "mimo-v2.6-pro"}

	mock, err := mockapi.New(mockapi.Config{Key: "sk-ui", Seed: 16, Rate500: 0.3, BlockedTerms: []string{"forbidden"}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(mock)
	t.Cleanup(api.Close)
	w, err := worker.New(worker.Config{Redis: b.rdb, BaseURL: api.URL + "/v1", APIKey: "sk-ui", Concurrency: 8,
		MaxAttempts: 2, Backoff: worker.Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		Limit: worker.Limit{RPM: 600, TPM: 10_000_000}, ModelLimits: map[string]worker.Limit{"mimo-v2.6-pro": {RPM: 120, TPM: 10_000_000}},
		DelayedTaskCheckInterval: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { stopWorker(); <-done })

	runStart := time.Now().Unix() / 60
	backfill(t, b, models, time.Unix(runStart*60, 0))

	batches := map[string]string{}
	for _, m := range models {
		var buf bytes.Buffer
		for i := range 30 {
			word := "question"
			if i%10 == 3 {
				word = "forbidden" // the content filter answers 421: dead at once
			}
			fmt.Fprintf(&buf, `{"custom_id":"r-%d","body":{"model":%q,"messages":[{"role":"user","content":"%s %d"}]}}`+"\n", i, m, word, i)
		}
		bt, err := b.client.SubmitBatch(b.ctx, bytes.NewReader(buf.Bytes()), enqueue.BatchOptions{Source: m + ".jsonl"})
		if err != nil {
			t.Fatal(err)
		}
		batches[m] = bt.ID
	}
	final := map[string]*enqueue.Batch{}
	waitFor(t, "both batches to finish", func() bool {
		for m, id := range batches {
			bt, err := b.client.GetBatch(b.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			final[m] = bt
			if !bt.Over() {
				return false
			}
		}
		return true
	})
	// A lane paused by an error, and a batch waiting behind a paused lane.
	reason := "402 insufficient_quota on job " + batches["mimo-v2.6-pro"]
	if _, err := b.lanes.Pause(b.ctx, "mimo-v2.6-pro", reason); err != nil {
		t.Fatal(err)
	}
	if _, err := b.lanes.Pause(b.ctx, "mimo-v2.6-pro-ultraspeed", "operator: key rotation"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for i := range 12 {
		fmt.Fprintf(&buf, `{"custom_id":"w-%d","body":{"model":"mimo-v2.6-pro-ultraspeed","messages":[{"role":"user","content":"hi %d"}]}}`+"\n", i, i)
	}
	waiting, err := b.client.SubmitBatch(b.ctx, bytes.NewReader(buf.Bytes()), enqueue.BatchOptions{Source: "waiting.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	// The worker samples lanes and dead letters every 10 s: wait for a
	// sample that saw the pause and every dead letter.
	waitFor(t, "a sample of the paused lane", func() bool {
		key := fmt.Sprintf("mimoq:{stats:mimo-v2.6-pro}:%d", time.Now().Unix()/60)
		h := b.rdb.HGetAll(b.ctx, key).Val()
		return h["lane_paused"] == "1" && h["dlq"] == strconv.Itoa(final["mimo-v2.6-pro"].Dead)
	})
	stopWorker() // its last counts are written as it stops
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil

	err = chromedp.Do(ctx,
		chromedp.Navigate(b.srv.URL+"/ui?refresh=off"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), testToken),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS(`figure[data-chart="lanes"]`)),
	)
	if err != nil {
		t.Fatalf("sign in and open the overview: %v", err)
	}
	points, err := chromedp.Run(ctx, chromedp.Evaluate[[]svgPoint](`[...document.querySelectorAll('figure[data-chart] [data-series]')]
		.filter(e => e.closest('svg.plot'))
		.map(e => ({chart: e.closest('figure').dataset.chart, series: e.dataset.series, t: e.dataset.t, v: e.dataset.v}))`))
	if err != nil {
		t.Fatal(err)
	}
	spans, err := chromedp.Run(ctx, chromedp.Evaluate[[]map[string]string](`[...document.querySelectorAll('rect.span')]
		.map(e => ({model: e.dataset.model, state: e.dataset.state, title: e.querySelector('title').textContent}))`))
	if err != nil {
		t.Fatal(err)
	}

	// Every point against Redis; sums against the batches.
	got := map[string]int64{} // chart/series/minute -> value
	for _, p := range points {
		v, _ := strconv.ParseInt(p.V, 10, 64)
		got[p.Chart+"/"+p.Series+"/"+p.T] = v
	}
	field := map[string]string{"succeeded": "ok", "retried": "retried", "dead_terminal": "dead_terminal", "dead_exhausted": "dead_exhausted"}
	// The page's own last minute (the clock may have moved on since it
	// was drawn): its calls bars must be the 60 minutes up to it.
	var now int64
	for _, p := range points {
		if p.Chart == "calls-"+models[0] && p.Series == "calls" {
			tm, _ := strconv.ParseInt(p.T, 10, 64)
			now = max(now, tm)
		}
	}
	if wall := time.Now().Unix() / 60; now < wall-1 || now > wall {
		t.Fatalf("the page's last minute is %d, the clock's %d", now, wall)
	}
	for _, m := range models {
		var sums = map[string]int64{}
		for minute := now - 59; minute <= now; minute++ {
			h := b.rdb.HGetAll(b.ctx, fmt.Sprintf("mimoq:{stats:%s}:%d", m, minute)).Val()
			n := func(f string) int64 { v, _ := strconv.ParseInt(h[f], 10, 64); return v }
			tk := strconv.FormatInt(minute, 10)
			if v, ok := got["calls-"+m+"/calls/"+tk]; !ok || v != n("calls") {
				t.Errorf("%s minute %d: calls bar %d (present %v), Redis %d", m, minute, v, ok, n("calls"))
			}
			for series, f := range field {
				v := got["outcomes-"+m+"/"+series+"/"+tk]
				if v != n(f) {
					t.Errorf("%s minute %d: %s bar %d, Redis %s=%d", m, minute, series, v, f, n(f))
				}
				sums[series] += v
			}
			if d, ok := h["dlq"]; ok {
				if v, ok := got["dlq/dlq:"+m+"/"+tk]; !ok || strconv.FormatInt(v, 10) != d {
					t.Errorf("%s minute %d: dead-letter point %d (present %v), Redis %s", m, minute, v, ok, d)
				}
			}
		}
		bt := final[m]
		sums = map[string]int64{}
		for minute := runStart; minute <= now; minute++ {
			for series := range field {
				sums[series] += got["outcomes-"+m+"/"+series+"/"+strconv.FormatInt(minute, 10)]
			}
		}
		if sums["succeeded"] != int64(bt.Succeeded) || sums["dead_terminal"]+sums["dead_exhausted"] != int64(bt.Dead) {
			t.Errorf("%s: charts show %v, the batch %d succeeded and %d dead", m, sums, bt.Succeeded, bt.Dead)
		}
		if sums["succeeded"] == 0 || sums["retried"] == 0 || sums["dead_terminal"] < 3 {
			t.Errorf("%s: the run should have successes, retries and dead letters: %v", m, sums)
		}
	}
	var pausedTitle string
	for _, s := range spans {
		if s["model"] == "mimo-v2.6-pro" && s["state"] == "paused" {
			pausedTitle = s["title"]
		}
	}
	if !bytes.Contains([]byte(pausedTitle), []byte(reason)) {
		t.Errorf("no paused span of mimo-v2.6-pro with its reason in %v", spans)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg[data-batch="`+waiting.ID+`"]').length`))
	if err != nil || bars != 1 {
		t.Errorf("batch in progress %s: %d progress bars (%v)", waiting.ID, bars, err)
	}

	// The range switch and the refresh toggle are plain links.
	err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href*="range=24h"]`)), chromedp.WaitVisible(chromedp.CSS(`a.on[href*="range=24h"]`)))
	if err != nil {
		t.Fatalf("switch to 24h: %v", err)
	}
	nbars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('figure[data-chart="calls-mimo-v2.6-flash"] rect[data-series="calls"]').length`))
	if err != nil || nbars != 48 {
		t.Errorf("24h range: %d calls bars, want 48 of 30 min (%v)", nbars, err)
	}
	if shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		browsertest.Save(t, "overview-24h.png", shot)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(b.srv.URL+"/ui?range=1h&refresh=off"), chromedp.WaitVisible(chromedp.ID("refresh-on")),
		chromedp.EmulateViewport(1280, 1500)); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Save(t, "overview-charts.png", shot)
	// MIMOQ_OVERVIEW_PNG=docs/overview.png (relative to the repository
	// root) refreshes the README's screenshot.
	if p := os.Getenv("MIMOQ_OVERVIEW_PNG"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join("..", "..", p)
		}
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Errorf("write %s: %v", p, err)
		}
	}
}

// backfill writes the 48 minutes before the run through the functions the
// worker uses (ops.CountMinute, ops.SampleLanes), so that the charts, and the
// README's screenshot, have an hour's shape: a 429 storm with cooldowns on
// one model, a pause on the other.
func backfill(t *testing.T, b *bundle, models []string, before time.Time) {
	t.Helper()
	pipe := b.rdb.Pipeline()
	for k := range 48 {
		at := before.Add(time.Duration(k-50) * time.Minute)
		for i, m := range models {
			c := ops.MinuteCounts{Calls: int64(60 + 25*math.Sin(float64(k+9*i)/5))}
			c.Retried = int64(2 + (k+i)%4)
			if k%7 == i {
				c.DeadTerminal = 1
			}
			if k%11 == 5 {
				c.DeadExhausted = 1
			}
			st := lane.State{Model: m, Status: lane.StatusRunning}
			switch {
			case i == 0 && k >= 16 && k < 22:
				c.RateLimited, c.Cooldowns, c.Retried = 14, 2, 14
				st.Status = lane.StatusCoolingDown
			case i == 1 && k >= 28 && k < 37:
				c = ops.MinuteCounts{Calls: 1, DeadTerminal: 1}
				st.Status, st.Reason = lane.StatusPaused, "401 authentication_failed on job 01JEXAMPLE"
			}
			c.Succeeded = c.Calls - c.Retried - c.DeadTerminal - c.DeadExhausted
			_ = ops.CountMinute(b.ctx, pipe, m, c, at)
			dead := int64(k/6 + i)
			if k >= 40 {
				dead = 0 // requeued
			}
			_ = ops.SampleLanes(b.ctx, pipe, []lane.State{st}, map[string]int64{m: dead}, at)
		}
	}
	if _, err := pipe.Exec(b.ctx); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
