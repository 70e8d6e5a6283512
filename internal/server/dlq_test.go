package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
)

type dlqPage struct {
	Data       []map[string]any `json:"data"`
	NextCursor *string          `json:"next_cursor"`
}

// deadLetters stores three dead letters and returns their IDs, newest first:
// a 400 on flash (batch lane), a 400 on flash an hour older, and an
// exhausted 429 on pro two hours older still.
func (b *bundle) deadLetters() []string {
	b.t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(model, queue string, status int, code string, class job.Class, age time.Duration) string {
		id := enqueue.NewID()
		j := &job.Job{ID: id, Queue: queue, Model: model, State: job.StateDead, Attempts: 1, FinishedAt: now.Add(-age),
			Request: json.RawMessage(`{"model":"` + model + `","messages":[{"role":"user","content":"x"}]}`),
			Error:   &job.Error{StatusCode: status, Code: code, Message: "m", Class: class},
			History: []job.Attempt{{Attempt: 1, Start: now.Add(-age), StatusCode: status, ErrorCode: code, Class: class}}}
		if err := b.store.Put(context.Background(), dlq.FromJob(j)); err != nil {
			b.t.Fatal(err)
		}
		return id
	}
	return []string{
		mk("mimo-v2.6-flash", "batch", 400, "invalid_request", job.ClassTerminal, 0),
		mk("mimo-v2.6-flash", "batch", 400, "invalid_request", job.ClassTerminal, time.Hour),
		mk("mimo-v2.6-pro", "interactive", 429, "rate_limit_exceeded", job.ClassExhausted, 2*time.Hour),
	}
}

func ids(p dlqPage) []string {
	var out []string
	for _, r := range p.Data {
		out = append(out, r["id"].(string))
	}
	return out
}

func TestDLQList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	empty := decode[dlqPage](t, b.get("/v1/dlq"), http.StatusOK)
	if empty.Data == nil || len(empty.Data) != 0 || empty.NextCursor != nil {
		t.Errorf("empty dlq: %+v", empty)
	}
	dead := b.deadLetters()
	all := decode[dlqPage](t, b.get("/v1/dlq"), http.StatusOK)
	if !slices.Equal(ids(all), dead) {
		t.Errorf("list %v, want %v newest first", ids(all), dead)
	}
	if _, ok := all.Data[0]["request"]; ok {
		t.Error("list carries the request; it is for GET /v1/dlq/{id}")
	}
	for q, want := range map[string][]string{
		"model=mimo-v2.6-pro":              dead[2:],
		"status=400":                       dead[:2],
		"class=exhausted":                  dead[2:],
		"code=invalid_request&queue=batch": dead[:2],
		"since=90m":                        dead[:2],
		"until=30m":                        dead[1:],
		"batch=none":                       nil,
		"since=" + url.QueryEscape(time.Now().Add(-30*time.Minute).UTC().Format(time.RFC3339)): dead[:1],
	} {
		if got := ids(decode[dlqPage](t, b.get("/v1/dlq?"+q), http.StatusOK)); !slices.Equal(got, want) {
			t.Errorf("?%s: %v, want %v", q, got, want)
		}
	}
	// Paging: every record once, in order.
	var seen []string
	path := "/v1/dlq?limit=1"
	for range 5 {
		p := decode[dlqPage](t, b.get(path), http.StatusOK)
		seen = append(seen, ids(p)...)
		if p.NextCursor == nil {
			break
		}
		path = "/v1/dlq?limit=1&cursor=" + url.QueryEscape(*p.NextCursor)
	}
	if !slices.Equal(seen, dead) {
		t.Errorf("paged %v, want %v", seen, dead)
	}
	for q, param := range map[string]string{
		"cursor=garbage": "cursor", "status=abc": "status", "status=42": "status", "class=fatal": "class",
		"since=yesterday": "since", "limit=0": "limit", "limit=5000": "limit", "modle=x": "modle",
	} {
		if e := wantError(t, b.get("/v1/dlq?"+q), http.StatusBadRequest, "invalid_request"); e.Param != param {
			t.Errorf("?%s: param %q, want %q", q, e.Param, param)
		}
	}

	rec := decode[dlq.Record](t, b.get("/v1/dlq/"+dead[0]), http.StatusOK)
	if rec.ID != dead[0] || len(rec.Request) == 0 || len(rec.History) != 1 || rec.StatusCode != 400 {
		t.Errorf("dead letter %+v", rec)
	}
	wantError(t, b.get("/v1/dlq/01NOSUCH"), http.StatusNotFound, "not_found")
}

type requeueAnswer struct {
	Matched  int      `json:"matched"`
	Requeued int      `json:"requeued"`
	NotDead  []string `json:"not_dead"`
	DryRun   bool     `json:"dry_run"`
}

func TestDLQRequeue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dead := b.deadLetters()

	res := decode[requeueAnswer](t, b.post("/v1/dlq/requeue", `{"all":true,"dry_run":true}`), http.StatusOK)
	if res.Matched != 3 || res.Requeued != 0 || !res.DryRun || res.NotDead == nil {
		t.Errorf("dry run %+v", res)
	}
	if n, _ := b.store.Count(context.Background(), dlq.Filter{}); n != 3 {
		t.Errorf("dry run changed the store: %d left", n)
	}

	res = decode[requeueAnswer](t, b.post("/v1/dlq/requeue", `{"ids":["`+dead[0]+`","01NOTDEAD"]}`), http.StatusOK)
	if res.Matched != 1 || res.Requeued != 1 || !slices.Equal(res.NotDead, []string{"01NOTDEAD"}) || res.DryRun {
		t.Errorf("requeue by id %+v", res)
	}
	j := decode[enqueue.Job](t, b.get("/v1/jobs/"+dead[0]), http.StatusOK)
	if j.State != enqueue.StateQueued || j.Attempts != 0 {
		t.Errorf("requeued job %s, %d attempts", j.State, j.Attempts)
	}

	res = decode[requeueAnswer](t, b.post("/v1/dlq/requeue", `{"all":true,"filter":{"model":"mimo-v2.6-pro","status":429}}`), http.StatusOK)
	if res.Matched != 1 || res.Requeued != 1 {
		t.Errorf("requeue by filter %+v", res)
	}
	left := ids(decode[dlqPage](t, b.get("/v1/dlq"), http.StatusOK))
	if !slices.Equal(left, dead[1:2]) {
		t.Errorf("left in the dlq %v, want %v", left, dead[1:2])
	}

	for body, param := range map[string]string{
		`{}`:                                     "ids",
		`{"ids":[]}`:                             "ids",
		`{"all":false}`:                          "ids",
		`{"ids":["a"],"all":true}`:               "all",
		`{"ids":"a"}`:                            "ids",
		`{"ids":[""]}`:                           "ids",
		`{"all":"yes"}`:                          "all",
		`{"all":true,"filter":{"colour":"red"}}`: "filter.colour",
		`{"all":true,"filter":{"status":"abc"}}`: "filter.status",
		`{"all":true,"filter":[]}`:               "filter",
		`{"all":true,"dryrun":true}`:             "dryrun",
		`{"all":true`:                            "",
		`{"all":true,"set_model":"no-such"}`:     "set_model",
		`{"all":true,"set_model":3}`:             "set_model",
	} {
		e := wantError(t, b.post("/v1/dlq/requeue", body), http.StatusBadRequest, "invalid_request")
		if e.Param != param {
			t.Errorf("%s: param %q (%s), want %q", body, e.Param, e.Message, param)
		}
	}
	if n, _ := b.store.Count(context.Background(), dlq.Filter{}); n != 1 {
		t.Errorf("refused requeues changed the store: %d left", n)
	}

	// The last one, its request's model rewritten.
	res = decode[requeueAnswer](t, b.post("/v1/dlq/requeue", `{"ids":["`+dead[1]+`"],"set_model":"mimo-v2.6-flash"}`), http.StatusOK)
	if res.Requeued != 1 {
		t.Errorf("requeue with set_model %+v", res)
	}
	if j := decode[enqueue.Job](t, b.get("/v1/jobs/"+dead[1]), http.StatusOK); j.Model != "mimo-v2.6-flash" || j.State != enqueue.StateQueued {
		t.Errorf("job after requeue with set_model: %s, %s", j.Model, j.State)
	}
}
