package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/job"
)

// batchFile is a JSONL batch of n requests with custom IDs c1…cn.
func batchFile(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"q%d"}]}}`+"\n", i, i)
	}
	return b.String()
}

// batchJobs maps custom ID to job ID for the batch lines waiting in asynq.
func (b *bundle) batchJobs(batchID string) map[string]string {
	b.t.Helper()
	// No worker runs: the batch's tasks are parked, waiting for their turn.
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	q := job.AsynqQueue(enqueue.QueueBatch, "mimo-v2.6-flash")
	tasks, err := insp.ListScheduledTasks(q, asynq.PageSize(1000))
	out := map[string]string{}
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return out
	}
	if err != nil {
		b.t.Fatal(err)
	}
	for _, task := range tasks {
		var p job.Payload
		if err := json.Unmarshal(task.Payload, &p); err != nil {
			b.t.Fatal(err)
		}
		if p.BatchID == batchID {
			out[p.CustomID] = p.JobID
		}
	}
	return out
}

func resultLines(t *testing.T, r response) []enqueue.ResultLine {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("results: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("results Content-Type %q", ct)
	}
	var out []enqueue.ResultLine
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		var l enqueue.ResultLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("result line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestBatchLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.post("/v1/batches", batchFile(3))
	batch := decode[enqueue.Batch](t, r, http.StatusAccepted)
	if batch.ID == "" || batch.Total != 3 || batch.State != enqueue.BatchRunning || batch.Queue != enqueue.QueueBatch {
		t.Fatalf("batch %+v", batch)
	}
	if loc := r.header.Get("Location"); loc != "/v1/batches/"+batch.ID {
		t.Errorf("Location %q", loc)
	}
	if got := decode[enqueue.Batch](t, b.get("/v1/batches/"+batch.ID), http.StatusOK); got.ID != batch.ID || got.Pending != 3 {
		t.Errorf("GET batch %+v", got)
	}
	list := decode[struct {
		Data       []enqueue.Batch `json:"data"`
		NextCursor *string         `json:"next_cursor"`
	}](t, b.get("/v1/batches"), http.StatusOK)
	if len(list.Data) != 1 || list.Data[0].ID != batch.ID || list.NextCursor != nil {
		t.Errorf("list %+v", list)
	}

	// Nothing final yet: an empty results file, and the state says more comes.
	r = b.get("/v1/batches/" + batch.ID + "/results")
	if lines := resultLines(t, r); len(lines) != 0 || r.header.Get("X-Mimoq-Batch-State") != "running" {
		t.Errorf("results before any job ended: %d lines, state %q", len(lines), r.header.Get("X-Mimoq-Batch-State"))
	}

	jobs := b.batchJobs(batch.ID)
	if len(jobs) != 3 {
		t.Fatalf("batch jobs %v", jobs)
	}
	b.finish(jobs["c3"], enqueue.StateDead)
	b.finish(jobs["c1"], enqueue.StateSucceeded)
	r = b.get("/v1/batches/" + batch.ID + "/results")
	lines := resultLines(t, r)
	if len(lines) != 2 || lines[0].CustomID != "c1" || lines[1].CustomID != "c3" {
		t.Fatalf("results %s, want c1 then c3", r.body)
	}
	if lines[0].Response == nil || lines[0].Response.StatusCode != 200 || lines[0].Error != nil || lines[0].ID != jobs["c1"] {
		t.Errorf("c1 line %+v", lines[0])
	}
	if lines[1].Error == nil || lines[1].Error.Code != "invalid_request" {
		t.Errorf("c3 line %+v", lines[1])
	}
	if !bytes.Contains(r.body, []byte(`hello <b>`)) {
		t.Errorf("result body HTML-escaped or missing: %s", r.body)
	}
	lines = resultLines(t, b.get("/v1/batches/"+batch.ID+"/results?errors=true"))
	if len(lines) != 1 || lines[0].CustomID != "c3" {
		t.Errorf("errors-only results %+v", lines)
	}

	got := decode[enqueue.Batch](t, b.post("/v1/batches/"+batch.ID+"/cancel", ""), http.StatusOK)
	if got.State != enqueue.BatchCanceled {
		t.Errorf("after cancel: %+v", got)
	}
	lines = resultLines(t, b.get("/v1/batches/"+batch.ID+"/results"))
	if len(lines) != 3 || lines[1].CustomID != "c2" || lines[1].Error == nil || lines[1].Error.Code != "canceled" {
		t.Errorf("results after cancel %+v", lines)
	}

	for _, p := range []string{"/v1/batches/nope", "/v1/batches/nope/results"} {
		wantError(t, b.get(p), http.StatusNotFound, "not_found")
	}
	wantError(t, b.post("/v1/batches/nope/cancel", ""), http.StatusNotFound, "not_found")
	e := wantError(t, b.get("/v1/batches/"+batch.ID+"/results?errors=maybe"), http.StatusBadRequest, "invalid_request")
	if e.Param != "errors" {
		t.Errorf("param %q", e.Param)
	}
	wantError(t, b.get("/v1/batches?limit=0"), http.StatusBadRequest, "invalid_request")
}

func TestBatchResubmitWithIDIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := decode[enqueue.Batch](t, b.post("/v1/batches?id=nightly-1", batchFile(4)), http.StatusAccepted)
	again := decode[enqueue.Batch](t, b.post("/v1/batches?id=nightly-1", batchFile(4)), http.StatusAccepted)
	if first.ID != "nightly-1" || again.ID != "nightly-1" || again.Total != 4 {
		t.Errorf("batches %+v and %+v", first, again)
	}
	if jobs := b.batchJobs("nightly-1"); len(jobs) != 4 {
		t.Errorf("%d jobs enqueued for 4 lines submitted twice", len(jobs))
	}
	e := wantError(t, b.post("/v1/batches?id=nightly-1", batchFile(2)), http.StatusConflict, "conflict")
	if e.Param != "id" {
		t.Errorf("conflict param %q", e.Param)
	}
	e = wantError(t, b.post("/v1/batches?id=no%20spaces", batchFile(1)), http.StatusBadRequest, "invalid_request")
	if e.Param != "id" {
		t.Errorf("bad id param %q", e.Param)
	}
	e = wantError(t, b.post("/v1/batches?ID=x", batchFile(1)), http.StatusBadRequest, "invalid_request")
	if e.Param != "ID" || !strings.Contains(e.Message, "id, queue") {
		t.Errorf("unknown query parameter: %+v", e)
	}
	e = wantError(t, b.post("/v1/batches?queue=fast", batchFile(1)), http.StatusBadRequest, "invalid_request")
	if e.Param != "queue" {
		t.Errorf("bad queue param %q", e.Param)
	}
}

// TestBatchWeightAndTenant: weight and tenant are kept on the batch and
// shown; bad values are refused naming the parameter, enqueueing nothing.
func TestBatchWeightAndTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	got := decode[enqueue.Batch](t, b.post("/v1/batches?id=shared&weight=5&tenant=acme", batchFile(2)), http.StatusAccepted)
	if got.Weight != 5 || got.Tenant != "acme" || got.Backlog != 2 {
		t.Errorf("batch %+v, want weight 5, tenant acme and its 2 lines waiting for their turn", got)
	}
	if again := decode[enqueue.Batch](t, b.get("/v1/batches/shared"), http.StatusOK); again.Weight != 5 || again.Tenant != "acme" {
		t.Errorf("GET batch %+v", again)
	}
	for _, tt := range []struct{ query, param string }{
		{"weight=0", "weight"}, {"weight=1001", "weight"}, {"weight=2.5", "weight"}, {"weight=", "weight"},
		{"tenant=", "tenant"}, {"tenant=a%20b", "tenant"}, {"tenant=" + strings.Repeat("t", 65), "tenant"},
	} {
		e := wantError(t, b.post("/v1/batches?id=bad&"+tt.query, batchFile(1)), http.StatusBadRequest, "invalid_request")
		if e.Param != tt.param {
			t.Errorf("%s: param %q, want %q (%s)", tt.query, e.Param, tt.param, e.Message)
		}
	}
	if r := b.get("/v1/batches/bad"); r.status != http.StatusNotFound {
		t.Errorf("a refused batch was created: %d %s", r.status, r.body)
	}
}

func TestBatchInvalidLinesEnqueueNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := batchFile(1) +
		`{"body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}` + "\n" + // no custom_id
		batchFile(1) + // c1 again
		"not json\n"
	e := wantError(t, b.post("/v1/batches", file), http.StatusBadRequest, "invalid_request")
	for _, want := range []string{"3 invalid lines", "nothing was enqueued", "2: ", "3: ", "4: "} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not contain %q", e.Message, want)
		}
	}
	if strings.Contains(e.Message, "\n") {
		t.Errorf("message spans lines: %q", e.Message)
	}
	list := decode[struct {
		Data []enqueue.Batch `json:"data"`
	}](t, b.get("/v1/batches"), http.StatusOK)
	if len(list.Data) != 0 {
		t.Errorf("an invalid file created batches %+v", list.Data)
	}
	if keys, _ := b.rdb.Keys(context.Background(), "asynq:*").Result(); len(keys) != 0 {
		t.Errorf("an invalid file enqueued tasks: %v", keys)
	}
	if jobs := b.batchJobs(""); len(jobs) != 0 {
		t.Errorf("an invalid file enqueued %v", jobs)
	}
	e = wantError(t, b.post("/v1/batches", ""), http.StatusBadRequest, "invalid_request")
	if !strings.Contains(e.Message, "empty") {
		t.Errorf("empty upload: %q", e.Message)
	}
	e = wantError(t, b.post("/v1/batches", "\n\n"), http.StatusBadRequest, "invalid_request")
	if !strings.Contains(e.Message, "no requests") {
		t.Errorf("blank upload: %q", e.Message)
	}
}
