package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
)

// TestDeadlineExpiresAJobThatCouldNotStart: a single job submitted with
// --deadline while its model's lane is paused ends expired at its deadline
// (the worker's expiry pass, not a delivery, ends it), is never called,
// and `submit --wait` reports it with exit status 1; `job get` and
// `mimoq stats` show it, and its webhook gets job.expired. Bad deadlines and
// windows are refused at submit.
func TestDeadlineExpiresAJobThatCouldNotStart(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.env = append(f.env, webhookEnv...)
	rc := startReceiver(t, "", nil)
	const model = "mimo-v2.6-pro"
	if _, stderr, code := f.run("lane", "pause", model); code != 0 {
		t.Fatalf("lane pause: %d %s", code, stderr)
	}
	f.startWorker()

	start := time.Now()
	stdout, stderr, code := f.run("submit", "--model", model, "--prompt", "hi", "--deadline", "3s", "--wait", "--json",
		"--webhook", rc.url())
	if code != 1 {
		t.Fatalf("submit --wait of a job that expires: exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	var j enqueue.Job
	if err := json.Unmarshal([]byte(stdout), &j); err != nil {
		t.Fatalf("submit --json output %q: %v", stdout, err)
	}
	if j.State != enqueue.StateExpired || j.Attempts != 0 || j.Deadline.IsZero() {
		t.Errorf("job %+v: want expired, no attempt, its deadline shown", j)
	}
	if j.FinishedAt.Before(j.Deadline) || j.Deadline.Before(start) {
		t.Errorf("finished %s, deadline %s: the job ended before its deadline", j.FinishedAt, j.Deadline)
	}
	if n := f.mockRequests(); n != 0 {
		t.Errorf("the API was called %d times for a job that expired", n)
	}
	Eventually(t, 20*time.Second, "the job.expired event", func() bool { return len(rc.hooks()) == 1 })
	if h := rc.hooks()[0]; h.Event.Type != "job.expired" || !h.verified(testSecretKey) {
		t.Errorf("event %s (verified %v), want job.expired", h.Event.Type, h.verified(testSecretKey))
	}
	if out, _, code := f.run("job", "get", j.ID); code != 0 || !strings.Contains(out, "expired") || !strings.Contains(out, "deadline:") {
		t.Errorf("job get: %d\n%s", code, out)
	}
	if out, _, code := f.run("stats", "--json"); code != 0 || !strings.Contains(out, `"expired_last_hour":1`) {
		t.Errorf("stats: %d %s", code, out)
	}

	// Resumed, a job without a deadline runs; bad values are refused.
	if _, stderr, code := f.run("lane", "resume", model); code != 0 {
		t.Fatalf("lane resume: %d %s", code, stderr)
	}
	for _, args := range [][]string{
		{"submit", "--model", model, "--prompt", "hi", "--deadline", "0s"},
		{"submit", "--model", model, "--prompt", "hi", "--deadline", "soon"},
		{"batch", "submit", "--completion-window", "30s", "testdata/does-not-matter.jsonl"},
	} {
		if _, stderr, code := f.run(args...); code != 2 || !strings.Contains(stderr, "invalid --") {
			t.Errorf("%v: exit %d, want 2 with the flag named: %s", args, code, stderr)
		}
	}
}
