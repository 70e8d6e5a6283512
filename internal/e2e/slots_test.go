package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/lane"
)

// TestCooldownHoldsNoSlots (issue 13 §1): a model whose lane cools down
// after a 429 holds none of the worker's MIMOQ_CONCURRENCY slots while it
// waits, so the interactive jobs of another model are answered at once
// instead of after the cooldown. The cooled model's jobs all succeed once it
// ends, each called once, no attempt burned by the wait.
func TestCooldownHoldsNoSlots(t *testing.T) {
	t.Parallel()
	const cooldown = 20 * time.Second
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--latency", "50ms")
	f.startWorker("MIMOQ_CONCURRENCY=2", "MIMOQ_RPM=1000000", "MIMOQ_TPM=0")

	ctx := context.Background()
	g, err := lane.NewGate(lane.GateConfig{Redis: f.rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Cooldown(ctx, "mimo-v2.6-pro", cooldown); err != nil {
		t.Fatal(err)
	}
	coolEnd := time.Now().Add(cooldown)
	pro := f.submit(10, "mimo-v2.6-pro", enqueue.QueueBatch)
	// The worker's pro servers take their tasks and wait for the lane.
	Eventually(t, 10*time.Second, "pro jobs taken", func() bool {
		for _, id := range pro {
			if j, err := f.client.Get(ctx, id); err == nil && j.State == enqueue.StateRunning {
				return true
			}
		}
		return false
	})
	time.Sleep(500 * time.Millisecond)

	start := time.Now()
	flash := f.submit(5, "mimo-v2.6-flash", enqueue.QueueInteractive)
	// Far below the cooldown: before the fix they waited for all of it.
	for id, j := range f.waitFinal(flash, 5*time.Second) {
		if j.State != enqueue.StateSucceeded {
			t.Errorf("flash job %s: %s", id, j.State)
		}
	}
	t.Logf("flash jobs final %s after submit", time.Since(start).Round(time.Millisecond))
	if left := time.Until(coolEnd); left < 5*time.Second {
		t.Fatalf("the flash jobs took until %s before the cooldown's end; the test proves nothing", left)
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if n := st.Models["mimo-v2.6-pro"].Requests; n != 0 {
		t.Errorf("the API got %d calls of the cooling model", n)
	}

	for id, j := range f.waitFinal(pro, cooldown+time.Minute) {
		if j.State != enqueue.StateSucceeded || j.Attempts != 1 {
			t.Errorf("pro job %s: %s after %d attempts, want succeeded after 1", id, j.State, j.Attempts)
		}
	}
	t.Logf("pro jobs final %s after the cooldown's end", time.Since(coolEnd).Round(time.Millisecond))
	f.mock.Stats(t, &st)
	if st.Duplicates != 0 || st.MaxCallsPerJob != 1 || st.JobsSeen != int64(len(pro)+len(flash)) {
		t.Errorf("mock: %d duplicates, at most %d calls per job, %d jobs seen; want 0, 1 and %d",
			st.Duplicates, st.MaxCallsPerJob, st.JobsSeen, len(pro)+len(flash))
	}
}
