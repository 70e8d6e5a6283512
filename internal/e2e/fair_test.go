package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
)

// writeFairBatch writes a batch of n lines of model whose custom IDs are
// prefix-0, prefix-1, ….
func writeFairBatch(t *testing.T, n int, model, prefix string) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"custom_id":"%s-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"%s %d"}],"max_tokens":16}}`+"\n",
			prefix, i, model, prefix, i)
	}
	path := filepath.Join(t.TempDir(), prefix+".jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// submitCLI submits a batch with `mimoq batch submit` and its flags.
func (f *fleet) submitCLI(path, id string, flags ...string) {
	f.t.Helper()
	if _, stderr, code := f.run(append([]string{"batch", "submit", path, "--id", id}, flags...)...); code != 0 {
		f.t.Fatalf("batch submit %s exited %d: %s", id, code, stderr)
	}
}

// finished is how many jobs of batch id are final.
func (f *fleet) finished(id string) int {
	f.t.Helper()
	b, err := f.client.GetBatch(context.Background(), id)
	if err != nil {
		f.t.Fatalf("get batch %s: %v", id, err)
	}
	return b.Total - b.Pending
}

// startOrder is the lines of batch id by the start of their first call,
// but for those whose delivery died with a killed worker (asynq hands them
// out again only after their lease, 30 s later).
func (f *fleet) startOrder(id string) []int {
	f.t.Helper()
	var ids []string
	line := map[string]int{}
	if err := f.client.Results(context.Background(), id, false, func(l *enqueue.ResultLine) error {
		ids = append(ids, l.ID)
		var n int
		_, _ = fmt.Sscanf(l.CustomID[strings.LastIndexByte(l.CustomID, '-')+1:], "%d", &n)
		line[l.ID] = n
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	js := slices.DeleteFunc(f.getJobs(ids), func(j *enqueue.Job) bool {
		all, _ := interruptions(j, "")
		return all > 0
	})
	slices.SortStableFunc(js, func(a, b *enqueue.Job) int {
		if len(a.History) == 0 || len(b.History) == 0 {
			return len(a.History) - len(b.History)
		}
		return a.History[0].Start.Compare(b.History[0].Start)
	})
	out := make([]int, len(js))
	for i, j := range js {
		out[i] = line[j.ID]
	}
	return out
}

// misplaced counts the lines of order that started more than d places
// from their own among them.
func misplaced(order []int, d int) int {
	sorted := slices.Sorted(slices.Values(order))
	n := 0
	for rank, line := range order {
		place, _ := slices.BinarySearch(sorted, line)
		if rank-place > d || place-rank > d {
			n++
		}
	}
	return n
}

// TestSmallBatchIsNotStuckBehindABigOne (issue 13 §2): a small batch
// submitted after a big one on the same model gets its share of the
// model's rate at once and finishes long before the big one, across two
// workers (one of them started after another was SIGKILLed); both keep
// their line order, and no job is lost.
func TestSmallBatchIsNotStuckBehindABigOne(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "100000", "--tpm", "0", "--latency", "40ms")
	env := []string{"MIMOQ_CONCURRENCY=5", "MIMOQ_RPM=900", "MIMOQ_TPM=0"}
	const model, nx, ny = "mimo-v2.6-flash", 300, 40
	f.submitCLI(writeFairBatch(t, nx, model, "x"), "x")
	w1 := f.startWorker(env...)
	f.startWorker(env...)
	Eventually(t, time.Minute, "x under way", func() bool { return f.finished("x") >= 20 })
	// The killed worker held jobs of x (asynq hands them out again after
	// its lease, 30 s) and, maybe, the lane's feeder lease (3 s).
	w1.Signal(syscall.SIGKILL)
	f.startWorker(env...)
	f.submitCLI(writeFairBatch(t, ny, model, "y"), "y")

	// Alone, y would wait for the rest of x (over 15 s at 15 calls a
	// second); sharing, it takes about 2 × 40 calls' time.
	var xAtY int
	Eventually(t, 2*time.Minute, "y done", func() bool {
		done := f.finished("y") == ny
		if done {
			xAtY = f.finished("x")
		}
		return done
	})
	if xAtY > nx*2/3 {
		t.Errorf("when y (%d lines, submitted after x) was done, x had %d of %d lines done: y waited behind x", ny, xAtY, nx)
	}
	bx, _ := f.waitBatchFinal("x", 3*time.Minute)
	by, _ := f.waitBatchFinal("y", time.Minute)
	for _, b := range []*enqueue.Batch{bx, by} {
		if b.State != enqueue.BatchDone || b.Succeeded != b.Total {
			t.Errorf("batch %s: %s, %d of %d succeeded", b.ID, b.State, b.Succeeded, b.Total)
		}
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if st.JobsSeen != nx+ny {
		t.Errorf("the mock saw %d jobs, want %d", st.JobsSeen, nx+ny)
	}
	// Each worker takes a lane's jobs in order, five calls at a time: a
	// line starts within 20 places of its own, but for the few the killed
	// worker held (asynq hands them out again only after their lease).
	for _, id := range []string{"x", "y"} {
		if n := misplaced(f.startOrder(id), 20); n > 10 {
			t.Errorf("batch %s: %d lines started more than 20 places from their own: its order was not kept", id, n)
		}
	}
	t.Logf("x had %d of %d lines done when y was", xAtY, nx)
}

// TestWeightsAndTenantsShareALane (issue 13 §2): three batches of weights
// 1:1:2 on one model get their calls in those shares (±15 %), and on
// another model a tenant's five batches together get the share of a
// tenant with one batch; canceling them all then loses nothing.
func TestWeightsAndTenantsShareALane(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "100000", "--tpm", "0", "--latency", "30ms")
	const pro, ultra = "mimo-v2.6-pro", "mimo-v2.6-pro-ultraspeed"
	f.submitCLI(writeFairBatch(t, 300, pro, "a"), "a")
	f.submitCLI(writeFairBatch(t, 300, pro, "b"), "b")
	f.submitCLI(writeFairBatch(t, 300, pro, "c"), "c", "--weight", "2")
	f.submitCLI(writeFairBatch(t, 300, ultra, "solo"), "solo", "--tenant", "solo")
	acme := []string{"acme0", "acme1", "acme2", "acme3", "acme4"}
	for _, id := range acme {
		f.submitCLI(writeFairBatch(t, 100, ultra, id), id, "--tenant", "acme")
	}
	if out, _, code := f.run("batch", "list"); code != 0 || !strings.Contains(out, "WEIGHT") || !strings.Contains(out, "acme") {
		t.Errorf("batch list shows no weight and tenant:\n%s", out)
	}
	f.startWorker("MIMOQ_CONCURRENCY=10", "MIMOQ_RPM=900", "MIMOQ_TPM=0")

	Eventually(t, 2*time.Minute, "240 calls on each model", func() bool {
		return f.finished("a")+f.finished("b")+f.finished("c") >= 240 && f.finished("solo")+f.finishedAll(acme) >= 240
	})
	a, b, c := f.finished("a"), f.finished("b"), f.finished("c")
	solo, tenant := f.finished("solo"), f.finishedAll(acme)
	total := float64(a + b + c)
	for _, s := range []struct {
		name string
		got  int
		want float64
	}{{"a (weight 1)", a, total / 4}, {"b (weight 1)", b, total / 4}, {"c (weight 2)", c, total / 2}} {
		if d := float64(s.got) - s.want; d > 0.15*s.want || -d > 0.15*s.want {
			t.Errorf("%s had %d of %.0f calls, want %.0f ±15%%", s.name, s.got, total, s.want)
		}
	}
	if d := float64(solo - tenant); d > 0.15*float64(solo+tenant)/2 || -d > 0.15*float64(solo+tenant)/2 {
		t.Errorf("tenant solo (1 batch) had %d calls, tenant acme (5 batches) %d: want equal ±15%%", solo, tenant)
	}
	out, _, code := f.run("stats")
	if code != 0 || !strings.Contains(out, "tenant acme") || !strings.Contains(out, "WAITING TURN") {
		t.Errorf("stats shows no shares:\n%s", out)
	}
	t.Logf("weights 1:1:2 → %d:%d:%d; tenants 1 vs 5 batches → %d:%d", a, b, c, solo, tenant)

	// Cancel everything: every line ends once, the counts add up.
	all := append([]string{"a", "b", "c", "solo"}, acme...)
	for _, id := range all {
		if _, stderr, code := f.run("batch", "cancel", id); code != 0 {
			t.Fatalf("cancel %s: %s", id, stderr)
		}
	}
	succeeded := 0
	for _, id := range all {
		bt, jobs := f.waitBatchFinal(id, time.Minute)
		if bt.Succeeded+bt.Canceled != bt.Total || len(jobs) != bt.Total {
			t.Errorf("batch %s after cancel: %+v", id, bt)
		}
		succeeded += bt.Succeeded
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if st.JobsSeen != int64(succeeded) || st.Duplicates != 0 {
		t.Errorf("the mock saw %d jobs (%d twice); the batches count %d succeeded", st.JobsSeen, st.Duplicates, succeeded)
	}
}

// finishedAll adds up finished over batches.
func (f *fleet) finishedAll(ids []string) int {
	n := 0
	for _, id := range ids {
		n += f.finished(id)
	}
	return n
}
