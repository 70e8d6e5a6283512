package e2e

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
)

// opsN is how many jobs TestOperatorRepairsABatch kills and requeues:
// more than the 10,000 tasks asynq's own archive would keep per queue.
const opsN = 12_000

// deadLine is one line of `mimoq dlq list --json`, with the fields SPEC.md
// promises.
type deadLine struct {
	ID           string    `json:"id"`
	BatchID      string    `json:"batch_id"`
	CustomID     string    `json:"custom_id"`
	Queue        string    `json:"queue"`
	Model        string    `json:"model"`
	Class        job.Class `json:"class"`
	StatusCode   int       `json:"status_code"`
	ErrorCode    string    `json:"error_code"`
	ErrorMessage string    `json:"error_message"`
	RequestID    string    `json:"request_id"`
	Attempts     int       `json:"attempts"`
	DeadAt       time.Time `json:"dead_at"`
}

// TestOperatorRepairsABatch is the night the operator is paged: a batch of
// 12,000 requests for a model the API does not serve dies line by line
// (404, terminal). The operator finds every one of them with `mimoq dlq
// list --batch`, checks filters and a dry run, fixes the cause (the API
// starts serving the model) and requeues exactly that batch: every job then
// succeeds and the batch's dead letters are gone.
func TestOperatorRepairsABatch(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "0", "--tpm", "0")
	worker := f.startWorker("MIMOQ_CONCURRENCY=100", "MIMOQ_RPM=0", "MIMOQ_TPM=0")

	batchID := f.submitBatch(writeBatch(t, opsN, ghostModel), "nightly")
	// One healthy job, to ask about a job that is not dead.
	alive := f.submit(1, "mimo-v2.6-flash", enqueue.QueueInteractive)[0]
	f.waitBatch(batchID, func(b *enqueue.Batch) bool { return b.Dead == opsN }, 5*time.Minute)
	f.waitFinal([]string{alive}, time.Minute)

	// asynq's archive is not where they went: it would have kept 10,000.
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetQueueInfo(job.AsynqQueue(enqueue.QueueBatch, ghostModel))
	if err != nil {
		t.Fatal(err)
	}
	if info.Archived != 0 {
		t.Errorf("asynq archived %d tasks; dead letters belong in mimoq's store", info.Archived)
	}

	// What died, and why.
	start := time.Now()
	lines := f.deadLines("--batch", batchID)
	t.Logf("dlq list --batch --json: %d dead letters in %s", len(lines), time.Since(start).Round(time.Millisecond))
	if len(lines) != opsN {
		t.Fatalf("dlq list --batch listed %d dead letters, want %d", len(lines), opsN)
	}
	seen := make(map[string]bool, opsN)
	for i, l := range lines {
		if l.BatchID != batchID || l.Model != ghostModel || l.Queue != enqueue.QueueBatch || l.Class != job.ClassTerminal ||
			l.StatusCode != 404 || l.ErrorCode == "" || l.ErrorMessage == "" || l.Attempts != 1 || l.DeadAt.IsZero() ||
			!strings.HasPrefix(l.CustomID, "req-") {
			t.Fatalf("dead letter %d: %+v", i, l)
		}
		// Newest first, to the millisecond (the store's order; ties by ID).
		if i > 0 && l.DeadAt.Truncate(time.Millisecond).After(lines[i-1].DeadAt) {
			t.Fatalf("dead letters not newest first at %d: %s after %s", i, l.DeadAt, lines[i-1].DeadAt)
		}
		if seen[l.ID] {
			t.Fatalf("dead letter %s listed twice", l.ID)
		}
		seen[l.ID] = true
	}
	code := lines[0].ErrorCode

	// Filters combine; values that match nothing give nothing.
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--batch", batchID, "--model", ghostModel, "--status", "404", "--code", code, "--class", "terminal", "--since", "1h", "--limit", "7"}, 7},
		{[]string{"--batch", batchID, "--class", "exhausted"}, 0},
		{[]string{"--batch", batchID, "--status", "401"}, 0},
		{[]string{"--batch", batchID, "--model", "mimo-v2.6-flash"}, 0},
		{[]string{"--batch", batchID, "--queue", enqueue.QueueInteractive}, 0},
		{[]string{"--model", ghostModel, "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, 0},
	} {
		if got := len(f.deadLines(tc.args...)); got != tc.want {
			t.Errorf("dlq list %v: %d lines, want %d", tc.args, got, tc.want)
		}
	}
	for flag, val := range map[string]string{"--status": "abc", "--since": "yesterday", "--class": "fatal", "--limit": "-5"} {
		_, stderr, code := f.run("dlq", "list", flag, val)
		if code != 2 || !strings.Contains(stderr, flag) {
			t.Errorf("dlq list %s %s: exit %d, stderr %q; want 2 naming the flag", flag, val, code, stderr)
		}
	}

	// One in full.
	out, stderr, rc := f.run("dlq", "show", lines[0].ID, "--json")
	if rc != 0 {
		t.Fatalf("dlq show exited %d: %s", rc, stderr)
	}
	var rec dlq.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil || len(rec.Request) == 0 || len(rec.History) != 1 ||
		rec.History[0].StatusCode != 404 {
		t.Errorf("dlq show --json: %v %s", err, out)
	}
	if out, _, rc := f.run("dlq", "show", lines[0].ID); rc != 0 || !strings.Contains(out, "404") || !strings.Contains(out, "request:") {
		t.Errorf("dlq show: exit %d\n%s", rc, out)
	}

	// A dry run counts and changes nothing.
	out, stderr, rc = f.run("dlq", "requeue", "--all", "--batch", batchID, "--dry-run")
	if rc != 0 || !strings.Contains(out, "would requeue 12000") {
		t.Errorf("requeue --dry-run: exit %d: %s %s", rc, out, stderr)
	}
	if n := f.deadCount(dlq.Filter{BatchID: batchID}); n != opsN {
		t.Errorf("dry run changed the store: %d dead letters", n)
	}

	// A job that is not dead is refused by name, exit status 1; the dead
	// one next to it is requeued (it dies again: nothing is fixed yet).
	out, stderr, rc = f.run("dlq", "requeue", alive, "no-such-job", lines[1].ID)
	if rc != 1 || !strings.Contains(stderr, alive+" is not in the dead-letter queue (it is succeeded)") ||
		!strings.Contains(stderr, "no-such-job is not in the dead-letter queue") || !strings.Contains(out, "requeued 1 ") {
		t.Errorf("requeue of jobs that are not dead: exit %d\nstdout %s\nstderr %s", rc, out, stderr)
	}
	// …and dies again, as a new dead letter of the same batch.
	Eventually(t, time.Minute, "requeued job dead again", func() bool {
		j, err := f.client.Get(t.Context(), lines[1].ID)
		return err == nil && j.State == enqueue.StateDead && f.deadCount(dlq.Filter{BatchID: batchID}) == opsN
	})

	// Fix the cause: the API now serves the model (a mock restarted with it
	// in its list; the worker follows it).
	fixed := StartMock(t, bin, f.mock.Key, "--rpm", "0", "--tpm", "0", "--models", testModels)
	worker.Signal(syscall.SIGTERM)
	if code := worker.Wait(time.Minute); code != 0 {
		t.Fatalf("worker exited %d", code)
	}
	for i, e := range f.env {
		if strings.HasPrefix(e, "MIMO_BASE_URL=") {
			f.env[i] = "MIMO_BASE_URL=" + fixed.URL
		}
	}
	f.startWorker("MIMOQ_CONCURRENCY=100", "MIMOQ_RPM=0", "MIMOQ_TPM=0")

	start = time.Now()
	out, stderr, rc = f.run("dlq", "requeue", "--all", "--batch", batchID)
	took := time.Since(start)
	if rc != 0 || !strings.Contains(out, "requeued 12000 dead letters") {
		t.Fatalf("requeue --all --batch: exit %d\nstdout %s\nstderr %s", rc, out, stderr)
	}
	t.Logf("dlq requeue --all --batch: %d in %s (%.0f/s, the worker running alongside)", opsN, took.Round(time.Millisecond), opsN/took.Seconds())
	b := f.waitBatch(batchID, func(b *enqueue.Batch) bool { return b.Succeeded == opsN }, 5*time.Minute)
	if b.Dead != 0 || b.Pending != 0 || b.State != enqueue.BatchDone {
		t.Errorf("batch after repair: %+v", b)
	}
	if n := len(f.deadLines("--batch", batchID)); n != 0 {
		t.Errorf("%d dead letters of the batch left", n)
	}
	for _, l := range lines[:20] {
		j, err := f.client.Get(t.Context(), l.ID)
		if err != nil || j.State != enqueue.StateSucceeded || j.Attempts != 1 || len(j.Result) == 0 {
			t.Errorf("job %s after repair: %+v %v", l.ID, j, err)
		}
	}
	// Running it again finds nothing to do.
	if out, _, rc := f.run("dlq", "requeue", "--all", "--batch", batchID); rc != 0 || !strings.Contains(out, "requeued 0 ") {
		t.Errorf("second requeue: exit %d: %s", rc, out)
	}
	if out, _, rc := f.run("stats", "--json"); rc != 0 || !strings.Contains(out, `"succeeded_last_hour"`) {
		t.Errorf("stats --json: exit %d: %s", rc, out)
	}
}
