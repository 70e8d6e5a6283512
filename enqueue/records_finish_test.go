package enqueue_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestFinishAnnounce: the outcome, its batch count and its notice in one
// round trip, counted once however often it runs, and never counted with a
// state the job does not have.
func TestFinishAnnounce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var file string
	for _, id := range []string{"a", "b", "c"} {
		file += `{"custom_id":"` + id + `","body":{"model":"mimo-v2-flash","messages":[{"role":"user","content":"hi"}]}}` + "\n"
	}
	b, err := c.SubmitBatch(ctx, strings.NewReader(file), enqueue.BatchOptions{ID: "fa"})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := asynq.NewInspectorFromRedisClient(rdb).ListPendingTasks(enqueue.AsynqQueue(enqueue.QueueBatch, "mimo-v2-flash"))
	if err != nil || len(tasks) != 3 {
		t.Fatalf("pending tasks: %d, %v", len(tasks), err)
	}
	jobs := make([]*enqueue.Payload, 3)
	for i, ti := range tasks {
		jobs[i] = new(enqueue.Payload)
		if err := json.Unmarshal(ti.Payload, jobs[i]); err != nil {
			t.Fatal(err)
		}
	}
	recs := c.Records()
	now := time.Now()
	ok := enqueue.Outcome{State: enqueue.StateSucceeded, Counted: true, Entry: &enqueue.Attempt{Attempt: 1, Class: "success"},
		Result: json.RawMessage(`{"ok":true}`), StatusCode: 200, Usage: &enqueue.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}}
	counts := func() (int, int) {
		t.Helper()
		got, err := c.GetBatch(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Succeeded, got.Dead
	}

	if _, _, err := recs.FinishAnnounce(ctx, b.ID, jobs[0].JobID, enqueue.Outcome{State: enqueue.StateRetrying}, now); err == nil {
		t.Fatal("FinishAnnounce accepted a state that is not final")
	}

	// Job 0 succeeds; the same call again (a replay) changes nothing.
	if _, err := recs.Begin(ctx, jobs[0], "w1", now); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		f, done, err := recs.FinishAnnounce(ctx, b.ID, jobs[0].JobID, ok, now)
		if err != nil || f.State != enqueue.StateSucceeded || f.Changed != (i == 0) || done {
			t.Fatalf("run %d: %+v, done %v, %v; want succeeded, changed the first time only, batch open", i+1, f, done, err)
		}
	}
	if s, d := counts(); s != 1 || d != 0 {
		t.Fatalf("batch counts succeeded %d dead %d; want 1 and 0", s, d)
	}

	// Job 1 was dead-lettered by another delivery whose worker died before
	// counting it: a late success must not count it as succeeded.
	if _, err := recs.Begin(ctx, jobs[1], "w1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := recs.Finish(ctx, jobs[1].JobID, enqueue.Outcome{State: enqueue.StateDead,
		Error: &enqueue.JobError{Code: "invalid_request", Class: "terminal"}}, now); err != nil {
		t.Fatal(err)
	}
	f, done, err := recs.FinishAnnounce(ctx, b.ID, jobs[1].JobID, ok, now)
	if err != nil || f.State != enqueue.StateDead || f.Changed || done {
		t.Fatalf("late success on a dead job: %+v, done %v, %v; want dead, unchanged", f, done, err)
	}
	if s, d := counts(); s != 1 || d != 0 {
		t.Fatalf("batch counts succeeded %d dead %d; want 1 and 0 (the wrong count undone)", s, d)
	}
	if _, err := recs.Announce(ctx, b.ID, jobs[1].JobID, enqueue.StateDead, nil); err != nil {
		t.Fatal(err)
	}

	// Job 2 is the last: its count ends the batch. Redis has lost its
	// scripts and relearned only the batch count's (another worker's
	// Announce), so the count runs in the first try and the outcome only
	// in the second: the end of the batch must still be reported.
	if _, err := recs.Begin(ctx, jobs[2], "w1", now); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := recs.Announce(ctx, "no-such-batch", "x", enqueue.StateSucceeded, nil); err != nil {
		t.Fatal(err)
	}
	if f, done, err := recs.FinishAnnounce(ctx, b.ID, jobs[2].JobID, ok, now); err != nil || !f.Changed || !done {
		t.Fatalf("last job: %+v, done %v, %v; want changed and the batch ended", f, done, err)
	}
	got, err := c.GetBatch(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != enqueue.BatchDone || got.Succeeded != 2 || got.Dead != 1 || got.Usage.TotalTokens != 6 {
		t.Fatalf("batch at its end: %+v; want done, 2 succeeded, 1 dead, 6 tokens", got)
	}
}
