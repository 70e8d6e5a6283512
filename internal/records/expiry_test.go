package records

import (
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/job"
)

// TestBeginExpiresAJobPastItsDeadline: a job whose deadline passed before
// a delivery came is expired by that delivery instead of being run, and a
// waiter hears it; a job running when its deadline passes finishes.
func TestBeginExpiresAJobPastItsDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name     string
		deadline time.Duration // from now
		want     Verdict
	}{
		{"deadline passed", -time.Second, Final},
		{"deadline ahead", time.Minute, Run},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := NewID()
			if _, err := b.s.Submit(b.ctx, NewJob{ID: id, Queue: job.QueueInteractive, Model: testModel, Body: testBody,
				SubmittedAt: time.Now(), Deadline: time.Now().Add(tt.deadline)}); err != nil {
				t.Fatal(err)
			}
			bg := b.begin(id)
			if bg.Verdict != tt.want {
				t.Fatalf("verdict %v, want %v", bg.Verdict, tt.want)
			}
			if tt.want == Final {
				if bg.State != job.StateExpired {
					t.Errorf("state %s, want expired", bg.State)
				}
				j, err := b.s.Wait(b.ctx, id)
				if err != nil || j.State != job.StateExpired || j.Deadline.IsZero() {
					t.Errorf("wait: %+v, %v; want expired with its deadline", j, err)
				}
			}
		})
	}
}

// TestExpireDueEndsABatchWindow: at the end of a batch's window, its jobs
// that have not started (and the lines an interrupted submit never
// enqueued) expire, a running one finishes, and the batch ends expired
// with every line counted once; its results say batch_expired.
func TestExpireDueEndsABatchWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	end := now.Add(time.Minute)
	cb, err := b.s.CreateBatch(b.ctx, BatchSpec{ID: "w", Queue: job.QueueBatch, SHA256: "x", Total: 4, ExpiresAt: end}, now)
	if err != nil {
		t.Fatal(err)
	}
	var lines []Line
	for i := range 3 { // line 3 is never enqueued: an interrupted submit
		lines = append(lines, Line{Index: i, CustomID: string(rune('a' + i)), Model: testModel, Body: testBody})
	}
	if err := b.s.EnqueueLines(b.ctx, "w", job.QueueBatch, cb.CreatedMs, lines, now); err != nil {
		t.Fatal(err)
	}
	ids := []string{batchJobID("w", cb.CreatedMs, 0), batchJobID("w", cb.CreatedMs, 1), batchJobID("w", cb.CreatedMs, 2)}
	b.finish(b.begin(ids[0]).Delivery, Outcome{State: job.StateSucceeded, Counted: true, Result: []byte(`{}`), StatusCode: 200})
	running := b.begin(ids[1])

	// Before the window ends, nothing expires.
	if rep, err := b.s.ExpireDue(b.ctx, end.Add(-time.Second), 100); err != nil || rep.Batches != 0 {
		t.Fatalf("early pass: %+v, %v", rep, err)
	}
	rep, err := b.s.ExpireDue(b.ctx, end, 100)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Batches != 1 || rep.Lines != 2 {
		t.Errorf("pass: %+v, want 1 batch, 2 lines expired", rep)
	}
	if st := b.state(ids[2]); st != job.StateExpired {
		t.Errorf("queued job is %s, want expired", st)
	}
	bt := b.getBatch("w")
	if bt.State != job.BatchExpired || bt.Over() || bt.Expired != 2 || bt.ExpiredAt.IsZero() || bt.ExpiresAt.Sub(end).Abs() > time.Millisecond {
		t.Errorf("batch %+v: want expired, not over (a job runs), 2 expired", bt)
	}
	b.finish(running.Delivery, Outcome{State: job.StateSucceeded, Counted: true, Result: []byte(`{}`), StatusCode: 200})
	bt = b.getBatch("w")
	if bt.State != job.BatchExpired || !bt.Over() || bt.Succeeded != 2 || bt.Expired != 2 || bt.Pending != 0 {
		t.Errorf("batch %+v: want expired and over, 2 succeeded, 2 expired", bt)
	}
	var codes []string
	if err := b.s.Results(b.ctx, "w", true, func(l *job.ResultLine) error {
		if l.Error != nil {
			codes = append(codes, l.Error.Code)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(codes) != 2 || codes[0] != "batch_expired" || codes[1] != "batch_expired" {
		t.Errorf("error codes %v, want two batch_expired", codes)
	}
	// A second pass, or a cancel, changes nothing.
	if rep, err := b.s.ExpireDue(b.ctx, end.Add(time.Hour), 100); err != nil || rep.Lines != 0 {
		t.Errorf("second pass: %+v, %v", rep, err)
	}
	if n, err := b.s.CancelBatch(b.ctx, "w", end); err != nil || n != 0 {
		t.Errorf("cancel of an expired batch: %d, %v", n, err)
	}
}
