package lane

import (
	"context"
	"testing"
	"time"
)

// TestProbeClaims: a lane paused by an error is probed once its first
// probe is due, by one claimant at a time, each claim holding off the next
// for the interval; an operator's pause of it takes it over and is never
// probed; a resume forgets the probe.
func TestProbeClaims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	worker := b.lanes(WithActor("worker w1"))
	operator := b.lanes()
	const model = "m"

	if _, err := worker.PauseForError(ctx, model, "402 payment_required", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	st, _ := operator.State(ctx, model)
	if st.Status != StatusPaused || !st.Probed || st.NextProbe.IsZero() || time.Until(st.NextProbe) > 300*time.Millisecond {
		t.Fatalf("after a pause by error: %+v", st)
	}
	if ok, _ := worker.ClaimProbe(ctx, model, "w1", time.Hour); ok {
		t.Fatal("probe claimed before it was due")
	}
	time.Sleep(350 * time.Millisecond)
	if st, _ := operator.State(ctx, model); !st.NextProbe.IsZero() {
		t.Fatalf("probe not due after its time: %+v", st)
	}
	tests := []struct {
		who  string
		want bool
	}{{"w1", true}, {"w2", false}, {"w1", false}}
	for _, tt := range tests {
		if ok, err := worker.ClaimProbe(ctx, model, tt.who, time.Hour); err != nil || ok != tt.want {
			t.Fatalf("claim by %s: %v, %v; want %v", tt.who, ok, err, tt.want)
		}
	}

	// An operator's pause of the lane: never probed from then on.
	if changed, err := operator.Pause(ctx, model, "by hand"); err != nil || changed {
		t.Fatalf("operator pause of a paused lane: %v, %v", changed, err)
	}
	st, _ = operator.State(ctx, model)
	if !(st.Status == StatusPaused && !st.Probed && st.PausedBy == "operator") {
		t.Fatalf("after the operator's pause: %+v", st)
	}
	if ok, _ := worker.ClaimProbe(ctx, model, "w1", time.Millisecond); ok {
		t.Fatal("an operator's pause was probed")
	}
	// A pause by an error never replaces an operator's.
	if changed, _ := worker.PauseForError(ctx, model, "401", time.Millisecond); changed {
		t.Fatal("a pause by error replaced the operator's")
	}
	if st, _ := operator.State(ctx, model); st.Probed {
		t.Fatalf("operator's pause turned probed: %+v", st)
	}

	// Resume forgets everything; a later pause by error is probed again.
	if _, err := operator.Resume(ctx, model); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.PauseForError(ctx, model, "403", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if ok, _ := worker.ClaimProbe(ctx, model, "w1", time.Hour); !ok {
		t.Fatal("a new pause by error was not probed")
	}
}
