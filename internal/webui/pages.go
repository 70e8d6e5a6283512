package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
)

// pageSize is how many rows a list page shows by default.
const pageSize = 50

func (u *ui) overview(w http.ResponseWriter, r *http.Request, q *request) {
	ctx := r.Context()
	data := map[string]any{}
	st, err := u.cfg.Ops.Stats(ctx, u.cfg.Models)
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not read the stats: "+err.Error())
		return
	}
	data["Stats"] = st
	batches, _, err := u.cfg.Client.ListBatches(ctx, "", 10)
	data["Batches"], data["BatchesErr"] = batches, errText(err)
	data["InProgress"] = batchBars(batches)

	// The charts: the same per-minute counters as the stats above.
	sp := parseSpan(r.URL.Query().Get("range"))
	now := u.now()
	hist, err := u.cfg.Ops.History(ctx, u.cfg.Models, now.Add(-sp.D+time.Minute), now)
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not read the history: "+err.Error())
		return
	}
	var calls, outcomes []chart
	for i, h := range hist {
		calls = append(calls, callsChart(h, st.Models[i].Lane.Limit, sp))
		outcomes = append(outcomes, outcomesChart(h, sp))
	}
	data["Span"] = sp
	data["Calls"], data["Outcomes"] = calls, outcomes
	data["DLQChart"], data["LaneChart"] = dlqChart(hist, sp), laneChart(hist, sp)
	refresh := r.URL.Query().Get("refresh") != "off"
	data["Refresh"] = refresh
	data["RefreshOn"] = "/ui?" + url.Values{"range": {sp.Name}}.Encode()
	data["RefreshOff"] = "/ui?" + url.Values{"range": {sp.Name}, "refresh": {"off"}}.Encode()
	type rangeLink struct {
		Name, URL string
		On        bool
	}
	var links []rangeLink
	for _, o := range spans {
		v := url.Values{"range": {o.Name}}
		if !refresh {
			v.Set("refresh", "off")
		}
		links = append(links, rangeLink{Name: o.Name, URL: "/ui?" + v.Encode(), On: o.Name == sp.Name})
	}
	data["Ranges"] = links
	if refresh {
		w.Header().Set("Refresh", strconv.Itoa(refreshSeconds))
	}
	u.render(w, r, http.StatusOK, "overview", q, data)
}

// refreshSeconds is how often the overview reloads itself unless told
// refresh=off (an HTTP Refresh header: no script, and the CSP allows it).
const refreshSeconds = 30

func (u *ui) batches(w http.ResponseWriter, r *http.Request, q *request) {
	batches, next, err := u.cfg.Client.ListBatches(r.Context(), r.URL.Query().Get("after"), pageSize)
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not list the batches: "+err.Error())
		return
	}
	u.render(w, r, http.StatusOK, "batches", q, map[string]any{"Batches": batches, "Next": next})
}

func (u *ui) batch(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	b, err := u.cfg.Client.GetBatch(r.Context(), id)
	if errors.Is(err, enqueue.ErrNotFound) {
		u.fail(w, r, q, http.StatusNotFound, "There is no batch "+id+" (never submitted, or expired after MIMOQ_RESULT_TTL).")
		return
	}
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not read the batch: "+err.Error())
		return
	}
	recs, next, err := u.cfg.DLQ.List(r.Context(), dlq.Filter{BatchID: id}, "", 20)
	u.render(w, r, http.StatusOK, "batch", q, map[string]any{"Batch": b, "Dead": recs, "MoreDead": next != "", "DeadErr": errText(err)})
}

// dlqForm is the filter form of the dead-letter list, as GET parameters
// (the names of the `mimoq dlq list` flags).
type dlqForm struct {
	Queue, Batch, Model, Code, Status, Class, Since string
	Limit                                           int
	After                                           string
}

func parseDLQForm(v url.Values) dlqForm {
	f := dlqForm{
		Queue: strings.TrimSpace(v.Get("queue")), Batch: strings.TrimSpace(v.Get("batch")),
		Model: strings.TrimSpace(v.Get("model")), Code: strings.TrimSpace(v.Get("code")),
		Status: strings.TrimSpace(v.Get("status")), Class: strings.TrimSpace(v.Get("class")),
		Since: strings.TrimSpace(v.Get("since")), After: v.Get("after"), Limit: pageSize,
	}
	if n, err := strconv.Atoi(v.Get("limit")); err == nil && n > 0 {
		f.Limit = min(n, 1000)
	}
	return f
}

// filter checks the form through dlq.ParseFilter; a bad value names its
// field.
func (f dlqForm) filter(now time.Time) (dlq.Filter, error) {
	return dlq.ParseFilter(dlq.FilterInput{Queue: f.Queue, Batch: f.Batch, Model: f.Model, Code: f.Code,
		Status: f.Status, Class: f.Class, Since: f.Since}, now)
}

// query renders the filters as URL parameters (without paging).
func (f dlqForm) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"queue": f.Queue, "batch": f.Batch, "model": f.Model, "code": f.Code,
		"status": f.Status, "class": f.Class, "since": f.Since} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Limit != pageSize {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	return v
}

// Any reports whether a filter is set.
func (f dlqForm) Any() bool {
	return f.Queue != "" || f.Batch != "" || f.Model != "" || f.Code != "" || f.Status != "" || f.Class != "" || f.Since != ""
}

// Hidden renders the filters as hidden form fields.
func (f dlqForm) Hidden() template.HTML {
	var b strings.Builder
	for k, vs := range f.query() {
		fmt.Fprintf(&b, `<input type="hidden" name="%s" value="%s">`, template.HTMLEscapeString(k), template.HTMLEscapeString(vs[0]))
	}
	return template.HTML(b.String())
}

// Query is the filter as a URL query string.
func (f dlqForm) Query() string { return f.query().Encode() }

func (u *ui) dlqList(w http.ResponseWriter, r *http.Request, q *request) {
	form := parseDLQForm(r.URL.Query())
	data := map[string]any{"Form": form}
	f, err := form.filter(u.now())
	if err != nil {
		data["FormErr"] = err.Error()
		u.render(w, r, http.StatusBadRequest, "dlq", q, data)
		return
	}
	recs, next, err := u.cfg.DLQ.List(r.Context(), f, form.After, form.Limit)
	if errors.Is(err, dlq.ErrBadCursor) {
		recs, next, err = u.cfg.DLQ.List(r.Context(), f, "", form.Limit)
	}
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not list the dead letters: "+err.Error())
		return
	}
	total, err := u.cfg.DLQ.Count(r.Context(), f)
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not count the dead letters: "+err.Error())
		return
	}
	data["Records"], data["Total"] = recs, total
	if next != "" {
		v := form.query()
		v.Set("after", next)
		data["NextURL"] = "/ui/dlq?" + v.Encode()
	}
	if form.After != "" {
		data["FirstURL"] = "/ui/dlq?" + form.Query()
	}
	u.render(w, r, http.StatusOK, "dlq", q, data)
}

func (u *ui) dlqShow(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	rec, err := u.cfg.DLQ.Get(r.Context(), id)
	if errors.Is(err, dlq.ErrNotFound) {
		msg := "Job " + id + " is not in the dead-letter queue: no such job, or its record expired."
		if j, err := u.cfg.Client.Get(r.Context(), id); err == nil {
			msg = "Job " + id + " is not in the dead-letter queue: it is " + string(j.State) + "."
		}
		u.fail(w, r, q, http.StatusNotFound, msg)
		return
	}
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not read the dead letter: "+err.Error())
		return
	}
	u.render(w, r, http.StatusOK, "dead", q, map[string]any{"R": rec, "Request": prettyJSON(rec.Request)})
}

// dlqAction requeues or deletes: the jobs checked (ids), the one whose
// button was pressed (one), or with all=1 every dead letter matching the
// filters, after a confirmation page.
func (u *ui) dlqAction(w http.ResponseWriter, r *http.Request, q *request) {
	verb := "requeue"
	act := u.cfg.Ops.Requeue
	if strings.HasSuffix(r.URL.Path, "/delete") {
		verb, act = "delete", u.cfg.Ops.Delete
	}
	form := parseDLQForm(r.PostForm)
	back := r.PostFormValue("back")
	if !strings.HasPrefix(back, "/ui/") || strings.HasPrefix(back, "//") {
		back = "/ui/dlq?" + form.Query()
	}
	var opts ops.Options
	if sm := strings.TrimSpace(r.PostFormValue("set_model")); sm != "" && verb == "requeue" {
		models, _, _, err := u.cfg.Client.Catalog(r.Context())
		if err != nil {
			u.fail(w, r, q, http.StatusInternalServerError, "Could not read the model catalog: "+err.Error())
			return
		}
		if _, ok := models.Lookup(sm); !ok {
			u.fail(w, r, q, http.StatusBadRequest, fmt.Sprintf("New model %q is not one of %s.", sm, strings.Join(models.Names(), ", ")))
			return
		}
		opts.SetModel = sm
	}
	var sel ops.Selection
	switch {
	case r.PostFormValue("one") != "":
		sel.IDs = []string{r.PostFormValue("one")}
	case len(r.PostForm["ids"]) > 0:
		sel.IDs = r.PostForm["ids"]
	case r.PostFormValue("all") == "1":
		f, err := form.filter(u.now())
		if err != nil {
			u.fail(w, r, q, http.StatusBadRequest, "Bad filter: "+err.Error())
			return
		}
		sel.All, sel.Filter = true, f
		if r.PostFormValue("confirm") != "1" {
			n, err := u.cfg.DLQ.Count(r.Context(), f)
			if err != nil {
				u.fail(w, r, q, http.StatusInternalServerError, "Could not count the dead letters: "+err.Error())
				return
			}
			u.render(w, r, http.StatusOK, "confirm", q, map[string]any{"Verb": verb, "N": n, "Form": form, "Back": back,
				"SetModel": opts.SetModel})
			return
		}
	default:
		http.Redirect(w, r, withParams(back, "done", "none"), http.StatusSeeOther)
		return
	}
	res, err := act(r.Context(), sel, opts)
	ev := u.cfg.Logger.Info()
	if err != nil {
		ev = u.cfg.Logger.Error().Err(err)
	}
	ev.Str("action", verb).Bool("all", sel.All).Int("ids", len(sel.IDs)).Int("matched", res.Matched).
		Int("done", res.Done).Int("not_dead", len(res.NotDead)).Str("remote", r.RemoteAddr).Msg("web ui dead-letter action")
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, fmt.Sprintf("%s stopped after %d dead letters: %v", verb, res.Done, err))
		return
	}
	done := map[string]string{"requeue": "requeued", "delete": "deleted"}[verb]
	if len(res.NotDead) > 0 && res.Done == 0 {
		http.Redirect(w, r, withParams(back, "done", "notdead", "n", strconv.Itoa(len(res.NotDead))), http.StatusSeeOther)
		return
	}
	// After acting on the one dead letter shown on its own page, go back
	// to the list: the detail page is gone.
	if strings.HasPrefix(back, "/ui/dlq/") {
		back = "/ui/dlq"
	}
	http.Redirect(w, r, withParams(back, "done", done, "n", strconv.Itoa(res.Done)), http.StatusSeeOther)
}

// withParams sets query parameters on a local URL.
func withParams(target string, kv ...string) string {
	p, err := url.Parse(target)
	if err != nil {
		return "/ui"
	}
	v := p.Query()
	for _, k := range []string{"done", "n", "model", "after"} {
		v.Del(k)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	p.RawQuery = v.Encode()
	return p.String()
}

type laneRow struct {
	lane.State
	Stats *ops.ModelStats
}

func (u *ui) lanes(w http.ResponseWriter, r *http.Request, q *request) {
	st, err := u.cfg.Ops.Stats(r.Context(), u.cfg.Models)
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not read the lanes: "+err.Error())
		return
	}
	rows := make([]laneRow, len(st.Models))
	for i := range st.Models {
		rows[i] = laneRow{State: st.Models[i].Lane, Stats: &st.Models[i]}
	}
	u.render(w, r, http.StatusOK, "lanes", q, map[string]any{"Lanes": rows, "Shares": st.Shares})
}

func (u *ui) laneAction(w http.ResponseWriter, r *http.Request, q *request) {
	model, action := r.PathValue("model"), r.PathValue("action")
	if !u.knownModel(model) {
		u.fail(w, r, q, http.StatusNotFound, "There is no lane "+model+".")
		return
	}
	var err error
	switch action {
	case "pause":
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		if reason == "" {
			reason = "paused from the web page"
		}
		_, err = u.cfg.Lanes.Pause(r.Context(), model, reason)
	case "resume":
		_, err = u.cfg.Lanes.Resume(r.Context(), model)
	default:
		u.fail(w, r, q, http.StatusNotFound, "Unknown lane action "+action+".")
		return
	}
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not "+action+" lane "+model+": "+err.Error())
		return
	}
	u.cfg.Logger.Info().Str("action", action).Str("model", model).Str("remote", r.RemoteAddr).Msg("web ui lane action")
	http.Redirect(w, r, withParams("/ui/lanes", "done", action+"d", "model", model), http.StatusSeeOther)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(raw)
	}
	return string(b)
}

// funcs are the template helpers.
var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t)
		switch {
		case d < 0:
			return "in " + roundDur(-d)
		case d < 5*time.Second:
			return "just now"
		}
		return roundDur(d) + " ago"
	},
	"until": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return roundDur(time.Until(t))
	},
	"ms": func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return "–"
		}
		return roundDur(d)
	},
	"short": func(s string, n int) string {
		s = strings.Join(strings.Fields(s), " ")
		r := []rune(s)
		if len(r) <= n {
			return s
		}
		return string(r[:n-1]) + "…"
	},
	"finished": func(b *enqueue.Batch) int { return b.Succeeded + b.Dead + b.Canceled + b.Expired },
	"pct": func(part, total int) string {
		if total <= 0 {
			return "0%"
		}
		return strconv.FormatFloat(float64(part)*100/float64(total), 'f', 1, 64) + "%"
	},
	"dash": func(v any) any {
		switch x := v.(type) {
		case string:
			if x == "" {
				return "–"
			}
		case int:
			if x == 0 {
				return "–"
			}
		}
		return v
	},
	"add": func(a, b int64) int64 { return a + b },
	// f, add2, sub and div2 place SVG elements.
	"f":    func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"add2": func(a, b float64) float64 { return a + b },
	"sub":  func(a, b float64) float64 { return a - b },
	"div2": func(a float64) float64 { return a / 2 },
	"rate": func(f float64) string {
		if f <= 0 {
			return "–"
		}
		if f < 1 {
			return strconv.FormatFloat(f*60, 'f', 1, 64) + "/min"
		}
		return strconv.FormatFloat(f, 'f', 1, 64) + "/s"
	},
	"batchDLQ": func(id string) string { return "/ui/dlq?" + url.Values{"batch": {id}}.Encode() },
	"limit": func(l lane.Limit) string {
		if l.RPM <= 0 {
			return "unlimited"
		}
		return strconv.Itoa(l.RPM) + " rpm"
	},
	"mul100": func(f float64) float64 { return f * 100 },
	"pctOf": func(part int64, total int) string {
		if total <= 0 {
			return ""
		}
		return strconv.FormatFloat(float64(part)*100/float64(total), 'f', 0, 64) + "%"
	},
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}
