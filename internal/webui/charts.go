package webui

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
)

// span is one choice of the overview's time-range switch: how far back,
// and how many minutes one bar (and one table row) covers.
type span struct {
	Name   string
	D      time.Duration
	Bucket time.Duration
}

var spans = []span{{"1h", time.Hour, time.Minute}, {"6h", 6 * time.Hour, 10 * time.Minute}, {"24h", 24 * time.Hour, 30 * time.Minute}}

func parseSpan(s string) span {
	for _, sp := range spans {
		if sp.Name == s {
			return sp
		}
	}
	return spans[0]
}

// Per returns the unit of a bar's value: "per minute" or "per 10 min".
func (s span) Per() string {
	if s.Bucket == time.Minute {
		return "per minute"
	}
	return "per " + strconv.Itoa(int(s.Bucket/time.Minute)) + " min"
}

// Colours: the Okabe–Ito palette, which stays distinct under the common
// colour-vision deficiencies; series that must be told apart also differ in
// pattern or dash, and every chart has its numbers as a table beside it.
const (
	cBlue      = "#0072B2"
	cOrange    = "#E69F00"
	cVermilion = "#D55E00"
	cPurple    = "#CC79A7"
	cGreen     = "#009E73"
	cSky       = "#56B4E9"
	cGrey      = "#8c959f"
)

var lineStyles = []struct{ Colour, Dash string }{
	{cBlue, ""}, {cOrange, "6 3"}, {cGreen, "2 2"}, {cPurple, "8 3 2 3"}, {cSky, "4 4"}, {cVermilion, "1 3"},
}

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartW   = 600.0
	chartH   = 180.0
	plotX    = 46.0
	plotY    = 10.0
	plotW    = chartW - plotX - 10
	plotH    = chartH - plotY - 34
	laneRowH = 26.0
)

type tick struct {
	Pos   float64
	Label string
}

// bar is one rectangle; Series, T (the bucket's first minute, Unix minutes)
// and V (the counter's value) are written as data- attributes, so that a
// test can compare them with Redis.
type bar struct {
	X, Y, W, H float64
	Fill       string
	Series     string
	T, V       int64
	Title      string
}

type dot struct {
	X, Y   float64
	Colour string
	Series string
	T, V   int64
	Title  string
}

type polyline struct {
	Points string
	Colour string
	Dash   string
}

type legendItem struct {
	Colour, Pattern, Dash, Label string
}

// laneSpan is a run of buckets of one lane in one state.
type laneSpan struct {
	X, Y, W, H float64
	Model      string
	State      string
	Fill       string
	From, To   int64 // Unix minutes, To exclusive
	Title      string
}

// chart is one SVG chart and its data table, ready for the template.
type chart struct {
	ID, Title, YLabel, XLabel string
	W, H                      float64
	PX, PY, PW, PH            float64
	YTicks, XTicks            []tick
	Bars                      []bar
	Dots                      []dot
	Lines                     []polyline
	Spans                     []laneSpan
	Limit                     *tick // horizontal reference line (the rate limit)
	Legend                    []legendItem
	Head                      []string
	Rows                      [][]string
	Empty                     string // shown instead of the chart when there is nothing
}

// bucket adds up a model's minutes into the span's bars.
type bucket struct {
	T      int64 // first minute (Unix minutes)
	Counts ops.MinuteCounts
	DLQ    int64 // last sample, -1 none
	Lane   string
	Reason string
}

func buckets(mins []ops.Minute, sp span) []bucket {
	size := int(sp.Bucket / time.Minute)
	var out []bucket
	for i := 0; i < len(mins); i += size {
		b := bucket{T: mins[i].At.Unix() / 60, DLQ: -1}
		for _, m := range mins[i:min(i+size, len(mins))] {
			b.Counts.Add(m.MinuteCounts)
			if m.DLQ >= 0 {
				b.DLQ = m.DLQ
			}
			if laneRank(m.Lane) > laneRank(b.Lane) {
				b.Lane = m.Lane
			}
			if m.Reason != "" {
				b.Reason = m.Reason
			}
		}
		out = append(out, b)
	}
	return out
}

func laneRank(s string) int {
	switch s {
	case lane.StatusPaused:
		return 3
	case lane.StatusCoolingDown:
		return 2
	case lane.StatusRunning:
		return 1
	}
	return 0
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func yTicks(maxV float64) []tick {
	var t []tick
	for i := 0; i <= 4; i++ {
		v := maxV * float64(i) / 4
		t = append(t, tick{Pos: plotY + plotH - plotH*float64(i)/4, Label: numLabel(v)})
	}
	return t
}

func numLabel(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// xTicks labels the round times (every 10 min, 1 h or 4 h: about six) that
// fall inside the bars, with their UTC time, where they fall.
func xTicks(bs []bucket, sp span) []tick {
	if len(bs) == 0 {
		return nil
	}
	every := map[string]int64{"1h": 10, "6h": 60, "24h": 240}[sp.Name]
	first, total := bs[0].T, int64(len(bs))*int64(sp.Bucket/time.Minute)
	var t []tick
	for m := (first + every - 1) / every * every; m < first+total; m += every {
		pos := plotX + plotW*float64(m-first)/float64(total)
		if pos > plotX+plotW-16 {
			break // its label would be cut off at the edge
		}
		label := minuteLabel(m)
		if label == "00:00" {
			label = time.Unix(m*60, 0).UTC().Format("Jan 2")
		}
		t = append(t, tick{Pos: pos, Label: label})
	}
	return t
}

// newestFirst turns a table's rows around: an operator reads from now back.
func (c *chart) newestFirst() {
	for i, j := 0, len(c.Rows)-1; i < j; i, j = i+1, j-1 {
		c.Rows[i], c.Rows[j] = c.Rows[j], c.Rows[i]
	}
}

func newChart(id, title, ylabel string, sp span) chart {
	return chart{ID: id, Title: title, YLabel: ylabel, XLabel: "time (UTC), one bar " + sp.Per(),
		W: chartW, H: chartH, PX: plotX, PY: plotY, PW: plotW, PH: plotH}
}

func minuteLabel(t int64) string { return time.Unix(t*60, 0).UTC().Format("15:04") }

// label names a minute in tables and hovers: with its date beyond the
// 1-hour range, which may reach into yesterday.
func (s span) label(t int64) string {
	if s.D <= time.Hour {
		return minuteLabel(t)
	}
	return time.Unix(t*60, 0).UTC().Format("Jan 2 15:04")
}

// callsChart is a model's API calls per bar against its limit (rpm times
// the bar's minutes).
func callsChart(h ops.ModelHistory, limit lane.Limit, sp span) chart {
	bs := buckets(h.Minutes, sp)
	size := float64(sp.Bucket / time.Minute)
	c := newChart("calls-"+h.Model, h.Model+": API calls "+sp.Per()+" vs limit", "calls "+sp.Per(), sp)
	peak := 0.0
	for _, b := range bs {
		peak = max(peak, float64(b.Counts.Calls))
	}
	lim := float64(limit.RPM) * size
	top := niceMax(max(peak, lim*1.1))
	c.YTicks, c.XTicks = yTicks(top), xTicks(bs, sp)
	w := plotW / float64(len(bs))
	c.Head = []string{"from (UTC)", "calls", "429s", "limit"}
	limText := "unlimited"
	if limit.RPM > 0 {
		limText = numLabel(lim)
		c.Limit = &tick{Pos: plotY + plotH - plotH*lim/top, Label: "limit " + limText}
	}
	for i, b := range bs {
		v := float64(b.Counts.Calls)
		bh := plotH * v / top
		c.Bars = append(c.Bars, bar{X: plotX + float64(i)*w + w*0.1, Y: plotY + plotH - bh, W: w * 0.8, H: bh, Fill: cBlue,
			Series: "calls", T: b.T, V: b.Counts.Calls,
			Title: fmt.Sprintf("%s: %d calls, %d answered 429", sp.label(b.T), b.Counts.Calls, b.Counts.RateLimited)})
		c.Rows = append(c.Rows, []string{sp.label(b.T), strconv.FormatInt(b.Counts.Calls, 10),
			strconv.FormatInt(b.Counts.RateLimited, 10), limText})
	}
	c.newestFirst()
	c.Legend = []legendItem{{Colour: cBlue, Label: "calls"}, {Colour: "#1f2328", Dash: "5 3", Label: "limit (" + limitRPM(limit) + ")"}}
	return c
}

func limitRPM(l lane.Limit) string {
	if l.RPM <= 0 {
		return "unlimited"
	}
	return strconv.Itoa(l.RPM) + " rpm"
}

// outcomeSeries are the stacked parts of the outcomes chart, bottom up.
var outcomeSeries = []struct {
	Name, Label, Colour, Pattern string
	Of                           func(ops.MinuteCounts) int64
}{
	{"succeeded", "succeeded", cBlue, "", func(c ops.MinuteCounts) int64 { return c.Succeeded }},
	{"retried", "retried", cOrange, "dots", func(c ops.MinuteCounts) int64 { return c.Retried }},
	{"dead_terminal", "dead (terminal)", cVermilion, "hatch", func(c ops.MinuteCounts) int64 { return c.DeadTerminal }},
	{"dead_exhausted", "dead (exhausted)", cPurple, "cross", func(c ops.MinuteCounts) int64 { return c.DeadExhausted }},
}

// outcomesChart stacks a model's outcomes per bar.
func outcomesChart(h ops.ModelHistory, sp span) chart {
	bs := buckets(h.Minutes, sp)
	c := newChart("outcomes-"+h.Model, h.Model+": outcomes "+sp.Per(), "attempts "+sp.Per(), sp)
	peak := 0.0
	for _, b := range bs {
		s := 0.0
		for _, o := range outcomeSeries {
			s += float64(o.Of(b.Counts))
		}
		peak = max(peak, s)
	}
	top := niceMax(peak)
	c.YTicks, c.XTicks = yTicks(top), xTicks(bs, sp)
	w := plotW / float64(len(bs))
	c.Head = []string{"from (UTC)"}
	for _, o := range outcomeSeries {
		c.Head = append(c.Head, o.Label)
		c.Legend = append(c.Legend, legendItem{Colour: o.Colour, Pattern: o.Pattern, Label: o.Label})
	}
	for i, b := range bs {
		y := plotY + plotH
		row := []string{sp.label(b.T)}
		for _, o := range outcomeSeries {
			v := o.Of(b.Counts)
			row = append(row, strconv.FormatInt(v, 10))
			if v == 0 {
				continue
			}
			bh := plotH * float64(v) / top
			y -= bh
			fill := o.Colour
			if o.Pattern != "" {
				fill = "url(#p-" + o.Pattern + ")"
			}
			c.Bars = append(c.Bars, bar{X: plotX + float64(i)*w + w*0.1, Y: y, W: w * 0.8, H: bh, Fill: fill,
				Series: o.Name, T: b.T, V: v, Title: fmt.Sprintf("%s: %d %s", sp.label(b.T), v, o.Label)})
		}
		c.Rows = append(c.Rows, row)
	}
	c.newestFirst()
	return c
}

// dlqChart draws every model's dead letters over time, one line each (the
// last sample of each bar; gaps where no worker sampled).
func dlqChart(hs []ops.ModelHistory, sp span) chart {
	c := newChart("dlq", "Dead letters over time, per model", "dead letters", sp)
	c.XLabel = "time (UTC), one point " + sp.Per()
	all := make([][]bucket, len(hs))
	peak := 0.0
	for i, h := range hs {
		all[i] = buckets(h.Minutes, sp)
		for _, b := range all[i] {
			peak = max(peak, float64(b.DLQ))
		}
	}
	if len(hs) == 0 || len(all[0]) == 0 {
		c.Empty = "No models."
		return c
	}
	top := niceMax(peak)
	c.YTicks, c.XTicks = yTicks(top), xTicks(all[0], sp)
	w := plotW / float64(len(all[0]))
	c.Head = []string{"from (UTC)"}
	for i, h := range hs {
		st := lineStyles[i%len(lineStyles)]
		c.Head = append(c.Head, h.Model)
		c.Legend = append(c.Legend, legendItem{Colour: st.Colour, Dash: cmp.Or(st.Dash, "none"), Label: h.Model})
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				c.Lines = append(c.Lines, polyline{Points: strings.Join(pts, " "), Colour: st.Colour, Dash: st.Dash})
			}
			pts = nil
		}
		for k, b := range all[i] {
			if b.DLQ < 0 {
				flush()
				continue
			}
			x, y := plotX+float64(k)*w+w/2, plotY+plotH-plotH*float64(b.DLQ)/top
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			c.Dots = append(c.Dots, dot{X: x, Y: y, Colour: st.Colour, Series: "dlq:" + h.Model, T: b.T, V: b.DLQ,
				Title: fmt.Sprintf("%s %s: %d dead letters", h.Model, sp.label(b.T), b.DLQ)})
		}
		flush()
	}
	for k := range all[0] {
		row := []string{sp.label(all[0][k].T)}
		for i := range hs {
			if v := all[i][k].DLQ; v >= 0 {
				row = append(row, strconv.FormatInt(v, 10))
			} else {
				row = append(row, "–")
			}
		}
		c.Rows = append(c.Rows, row)
	}
	c.newestFirst()
	return c
}

var laneFill = map[string]struct{ Fill, Label string }{
	lane.StatusRunning:     {cGreen, "running"},
	lane.StatusCoolingDown: {cOrange, "cooling down"},
	lane.StatusPaused:      {cVermilion, "paused"},
	"":                     {"#eaeef2", "no worker reported"},
}

// laneChart draws each lane's states as spans, one row per model.
func laneChart(hs []ops.ModelHistory, sp span) chart {
	c := newChart("lanes", "Lane state over time", "", sp)
	c.H = plotY + laneRowH*float64(len(hs)) + 34
	c.PH = laneRowH * float64(len(hs))
	c.PX, c.PW = 170, chartW-170-10
	c.Head = []string{"model", "state", "from (UTC)", "to (UTC)", "reason"}
	for _, st := range []string{lane.StatusRunning, lane.StatusCoolingDown, lane.StatusPaused, ""} {
		li := legendItem{Colour: laneFill[st].Fill, Label: laneFill[st].Label}
		switch st {
		case lane.StatusPaused:
			li.Pattern = "hatch"
		case lane.StatusCoolingDown:
			li.Pattern = "dots"
		}
		c.Legend = append(c.Legend, li)
	}
	for i, h := range hs {
		bs := buckets(h.Minutes, sp)
		if len(bs) == 0 {
			continue
		}
		w := c.PW / float64(len(bs))
		y := plotY + laneRowH*float64(i)
		c.YTicks = append(c.YTicks, tick{Pos: y + laneRowH/2 + 4, Label: h.Model})
		if i == 0 {
			for _, t := range xTicks(bs, sp) {
				c.XTicks = append(c.XTicks, tick{Pos: c.PX + (t.Pos-plotX)*c.PW/plotW, Label: t.Label})
			}
		}
		for k := 0; k < len(bs); {
			j := k
			reason := ""
			for j < len(bs) && bs[j].Lane == bs[k].Lane {
				if bs[j].Reason != "" {
					reason = bs[j].Reason
				}
				j++
			}
			st := bs[k].Lane
			to := bs[j-1].T + int64(sp.Bucket/time.Minute)
			title := fmt.Sprintf("%s %s %s–%s UTC", h.Model, laneFill[st].Label, sp.label(bs[k].T), sp.label(to))
			if reason != "" {
				title += ": " + reason
			}
			fill := laneFill[st].Fill
			switch st {
			case lane.StatusPaused:
				fill = "url(#p-hatch)"
			case lane.StatusCoolingDown:
				fill = "url(#p-dots)"
			}
			c.Spans = append(c.Spans, laneSpan{X: c.PX + float64(k)*w, Y: y + 3, W: float64(j-k) * w, H: laneRowH - 6,
				Model: h.Model, State: st, Fill: fill, From: bs[k].T, To: to, Title: title})
			c.Rows = append(c.Rows, []string{h.Model, laneFill[st].Label, sp.label(bs[k].T), sp.label(to), reason})
			k = j
		}
	}
	return c
}

// batchBar is a batch in progress: its SVG progress bar and its numbers.
type batchBar struct {
	B        *enqueue.Batch
	Segments []bar
	Done     int
}

func batchBars(bs []*enqueue.Batch) []batchBar {
	var out []batchBar
	for _, b := range bs {
		if b.Over() || b.Total == 0 {
			continue
		}
		bb := batchBar{B: b, Done: b.Succeeded + b.Dead + b.Canceled + b.Expired}
		x := 0.0
		for _, s := range []struct {
			n            int
			fill, series string
		}{{b.Succeeded, cBlue, "succeeded"}, {b.Dead, "url(#p-hatch)", "dead"}, {b.Canceled + b.Expired, cGrey, "canceled"}} {
			if s.n == 0 {
				continue
			}
			w := 300 * float64(s.n) / float64(b.Total)
			bb.Segments = append(bb.Segments, bar{X: x, W: w, H: 14, Fill: s.fill, Series: s.series, V: int64(s.n),
				Title: fmt.Sprintf("%d %s of %d", s.n, s.series, b.Total)})
			x += w
		}
		out = append(out, bb)
	}
	return out
}
