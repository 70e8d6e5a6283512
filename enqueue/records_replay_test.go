package enqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestRecordWritesSurviveReplay runs record writes twice, as go-redis does
// when a command's reply is lost on the network (a reset connection) and it
// sends the command again: the second run must change nothing, so that no
// attempt is counted twice and no delivery is taken for an interrupted one.
func TestRecordWritesSurviveReplay(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	recs := enqueue.NewRecords(rdb, "", time.Hour)
	ctx := context.Background()
	p := &enqueue.Payload{JobID: enqueue.NewID(), Queue: enqueue.QueueInteractive, Model: "mimo-v2-flash", SubmittedAt: time.Now()}
	if _, _, err := recs.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	for range 2 {
		b, err := recs.Begin(ctx, p, "w1", now)
		if err != nil {
			t.Fatal(err)
		}
		if b.State != enqueue.StateRunning || b.Interrupted || b.Interrupts != 0 || b.Attempts != 0 {
			t.Fatalf("Begin (run again) = %+v; want running, not interrupted", b)
		}
	}
	retry := enqueue.Outcome{State: enqueue.StateRetrying, Counted: true,
		Entry: &enqueue.Attempt{Attempt: 1, Class: "retryable", Reason: "connection"}}
	for i := range 2 {
		f, err := recs.Finish(ctx, p.JobID, retry, now)
		if err != nil {
			t.Fatal(err)
		}
		if f.State != enqueue.StateRetrying || f.Attempts != 1 || f.Changed != (i == 0) {
			t.Fatalf("Finish run %d = %+v; want retrying with 1 attempt, changed only the first time", i+1, f)
		}
	}

	// The next delivery is no interruption, counts attempt 2, and succeeds.
	b, err := recs.Begin(ctx, p, "w2", now.Add(time.Second))
	if err != nil || b.Interrupted || b.Attempts != 1 {
		t.Fatalf("Begin of attempt 2 = %+v, %v; want 1 attempt, not interrupted", b, err)
	}
	ok := enqueue.Outcome{State: enqueue.StateSucceeded, Counted: true, Entry: &enqueue.Attempt{Attempt: 2, Class: "success"},
		Result: []byte(`{"id":"x"}`), StatusCode: 200}
	for range 2 {
		if f, err := recs.Finish(ctx, p.JobID, ok, now.Add(2*time.Second)); err != nil || f.State != enqueue.StateSucceeded || f.Attempts != 2 {
			t.Fatalf("Finish succeeded = %+v, %v; want succeeded after 2 attempts", f, err)
		}
	}
	j, err := recs.Get(ctx, p.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if j.Attempts != 2 || len(j.History) != 2 || j.History[0].Attempt != 1 || j.History[1].Attempt != 2 {
		t.Fatalf("job after replays: attempts %d, history %+v; want attempts 1 and 2 once each", j.Attempts, j.History)
	}

	// A genuine interruption (a later Begin finding the job running) still counts.
	q := &enqueue.Payload{JobID: enqueue.NewID(), Queue: enqueue.QueueInteractive, Model: "mimo-v2-flash", SubmittedAt: time.Now()}
	if _, err := recs.Begin(ctx, q, "w1", now); err != nil {
		t.Fatal(err)
	}
	if b, err := recs.Begin(ctx, q, "w2", now.Add(time.Minute)); err != nil || !b.Interrupted || b.Interrupts != 1 {
		t.Fatalf("Begin after a crash = %+v, %v; want interrupted once", b, err)
	}
}
