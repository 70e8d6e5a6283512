package worker

import (
	"errors"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/records"
)

// TestCooldownHoldsNoSlots (issue 13 §1): the jobs of a model whose lane
// cannot call (cooling down after a 429, or at a rate far below its demand)
// wait for their permit without a slot, so another model's jobs get the
// slots at once; the waiting jobs then succeed with one attempt each.
func TestCooldownHoldsNoSlots(t *testing.T) {
	t.Parallel()
	const slow = "mimo-v2.6-pro"
	for _, tc := range []struct {
		name string
		rpm  int // of slow
		cool time.Duration
	}{
		{"cooldown", 1_000_000, 8 * time.Second},
		{"rate below demand", 12, 0}, // a call every 5 s for 4 jobs
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			w := b.start(Config{Concurrency: 2, Limit: Limit{RPM: 1_000_000, TPM: -1},
				ModelLimits: map[string]Limit{slow: {RPM: tc.rpm}}})
			if tc.cool > 0 {
				g, err := lane.NewGate(lane.GateConfig{Redis: b.rdb})
				if err != nil {
					t.Fatal(err)
				}
				defer g.Close()
				if err := g.Cooldown(b.ctx, slow, tc.cool); err != nil {
					t.Fatal(err)
				}
			}
			var pro []string
			for range 4 {
				id := records.NewID()
				body := []byte(`{"model":"` + slow + `","messages":[{"role":"user","content":"hi"}],"max_tokens":16}`)
				if _, err := b.records.Submit(b.ctx, records.NewJob{ID: id, Queue: job.QueueBatch, Model: slow, Body: body,
					SubmittedAt: time.Now()}); err != nil {
					t.Fatal(err)
				}
				pro = append(pro, id)
			}
			waitUntil(t, "the slow model's jobs waiting for their lane", func() bool {
				return w.gate.Stats().Models[slow].Waiting >= 2
			})

			flash := []string{b.submit(), b.submit(), b.submit()}
			for id, j := range b.waitFinal(flash, 4*time.Second) {
				if j.State != job.StateSucceeded {
					t.Errorf("job %s: %s", id, j.State)
				}
			}
			if n := w.slots.InUse(); n != 0 {
				t.Errorf("%d slots held while the only jobs left wait for their lane", n)
			}
			if n := w.gate.Stats().Models[slow].Waiting; n == 0 {
				t.Error("no job of the slow model waits for its lane; the test proves nothing")
			}
			for id, j := range b.waitFinal(pro, time.Minute) {
				if j.State != job.StateSucceeded || j.Attempts != 1 {
					t.Errorf("job %s: %s after %d attempts, want succeeded after 1", id, j.State, j.Attempts)
				}
			}
			if st := b.mock.Stats(); st.Duplicates != 0 || st.MaxCallsPerJob != 1 {
				t.Errorf("mock: %d duplicates, at most %d calls per job; want 0 and 1", st.Duplicates, st.MaxCallsPerJob)
			}
		})
	}
}

// TestPermitWithoutSlotIsGivenUp: a permit is for a moment of the lane's
// pace; while every slot is busy it is canceled after its grace and a new
// one awaited, until MaxHold; a slot that frees meanwhile is taken with a
// fresh permit.
func TestPermitWithoutSlotIsGivenUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 6,000 RPM: permits 10 ms apart, a grace of minSlotGrace.
	w := b.start(Config{Concurrency: 1, Limit: Limit{RPM: 6000, TPM: -1}, MaxHold: time.Second})
	release, err := w.slots.Acquire(b.ctx, job.QueueInteractive)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = w.callTurn(b.ctx, testModel, job.QueueBatch, 1)
	if !errors.Is(err, errNoSlot) {
		t.Fatalf("callTurn with every slot busy: %v, want errNoSlot", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("gave up after %s, before MaxHold", d)
	}
	st := w.gate.Stats().Models[testModel]
	// About MaxHold / minSlotGrace permits; well above one, well below one per interval.
	if st.Permits < 10 || st.Permits > 60 || st.Waiting != 0 {
		t.Errorf("%d permits taken, %d waiting; want one per grace of %s over 1 s, none left waiting",
			st.Permits, st.Waiting, minSlotGrace)
	}
	if n := w.slots.Waiting(); n != 0 {
		t.Errorf("%d slot waiters left", n)
	}

	time.AfterFunc(300*time.Millisecond, release)
	permit, rel, err := w.callTurn(b.ctx, testModel, job.QueueBatch, 1)
	if err != nil {
		t.Fatalf("callTurn after a slot freed: %v", err)
	}
	if permit.Model != testModel || w.slots.InUse() != 1 {
		t.Errorf("permit of %q, %d slots in use; want %s and 1", permit.Model, w.slots.InUse(), testModel)
	}
	permit.Cancel()
	rel()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
