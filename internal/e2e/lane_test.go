package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
)

// TestUnauthorizedPausesLane: a wrong API key makes the API answer 401. The
// first such answers dead-letter their jobs and pause the model's lane fleet
// wide; every other job of that model stays queued, untouched. After the key
// is fixed and the lane resumed, they all succeed.
func TestUnauthorizedPausesLane(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--latency", "50ms")
	f.mock.Configure(t, map[string]any{"key": "sk-someone-elses"})
	f.startWorker("MIMOQ_CONCURRENCY=4", "MIMOQ_RPM=1000000", "MIMOQ_TPM=0")

	pro := f.submit(200, "mimo-v2.6-pro", enqueue.QueueBatch)
	ctx := context.Background()
	Eventually(t, time.Minute, "lane paused", func() bool {
		out, _, _ := f.run("lane", "list")
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "mimo-v2.6-pro ") && strings.Contains(l, "paused") {
				return strings.Contains(l, "401 authentication_failed")
			}
		}
		return false
	})
	// While paused, the lane's jobs wait; the API sees no new call for it.
	var before, after mockStats
	f.mock.Stats(t, &before)
	time.Sleep(time.Second)
	f.mock.Stats(t, &after)
	if after.TotalRequests != before.TotalRequests {
		t.Errorf("the API got %d calls while the lane was paused", after.TotalRequests-before.TotalRequests)
	}
	dead, err := dlq.New(f.rdb).Count(ctx, dlq.Filter{Model: "mimo-v2.6-pro", Status: 401})
	if err != nil {
		t.Fatal(err)
	}
	if dead == 0 || dead > 8 {
		t.Errorf("%d jobs dead-lettered with 401; want the few in flight when the lane paused (concurrency 4)", dead)
	}

	// Fix the cause, resume: the rest succeed.
	f.mock.Configure(t, map[string]any{"key": keyOf(f)})
	if out, stderr, code := f.run("lane", "resume", "mimo-v2.6-pro"); code != 0 || !strings.Contains(out, "resumed") {
		t.Fatalf("lane resume: %d %s %s", code, out, stderr)
	}
	jobs := f.waitFinal(pro, 2*time.Minute)
	succeeded := 0
	for _, j := range jobs {
		switch j.State {
		case enqueue.StateSucceeded:
			succeeded++
		case enqueue.StateDead:
			if j.Error == nil || j.Error.StatusCode != 401 || j.Error.Class != "terminal" || j.Attempts != 1 {
				t.Errorf("dead job %s: %+v after %d attempts", j.ID, j.Error, j.Attempts)
			}
		default:
			t.Errorf("job %s ended %s", j.ID, j.State)
		}
	}
	if succeeded+int(dead) != len(pro) {
		t.Errorf("%d succeeded + %d dead != %d jobs", succeeded, dead, len(pro))
	}
}

// keyOf returns the API key the fleet's workers use.
func keyOf(f *fleet) string {
	for _, kv := range f.env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "MIMO_API_KEY" {
			return v
		}
	}
	return ""
}
