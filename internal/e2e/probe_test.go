package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
)

// laneState reads one lane with `mimoq lane list --json`.
func (f *fleet) laneState(model string) lane.State {
	f.t.Helper()
	out, stderr, code := f.run("lane", "list", "--json")
	if code != 0 {
		f.t.Fatalf("lane list exited %d: %s", code, stderr)
	}
	for _, l := range Lines(out) {
		var s lane.State
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			f.t.Fatalf("lane list --json: %v in %s", err, l)
		}
		if s.Model == model {
			return s
		}
	}
	f.t.Fatalf("lane list has no lane %s:\n%s", model, out)
	return lane.State{}
}

func (f *fleet) mockTotal() int64 {
	var st mockStats
	f.mock.Stats(f.t, &st)
	return st.TotalRequests
}

// TestProbeResumesLaneAfter402Burst: a burst of spurious 402s pauses the
// lane; probes (one job at a time, fleet-wide) fail while it lasts, costing
// their jobs no attempt; once the mock recovers, a probe succeeds and the
// lane resumes by itself, and every job that was not in flight when it
// paused succeeds after exactly one attempt. A lane the operator paused is
// never probed, even one an error paused first.
func TestProbeResumesLaneAfter402Burst(t *testing.T) {
	t.Parallel()
	f := setup(t, "--latency", "20ms")
	f.mock.Configure(t, map[string]any{"burst_402": 1_000_000})
	f.startWorker("MIMOQ_CONCURRENCY=2", "MIMOQ_RPM=600", "MIMOQ_LANE_PROBE_INTERVAL=1s")
	const model = apiclient.ModelPro
	ids := f.submit(15, model, enqueue.QueueBatch)

	Eventually(t, 20*time.Second, "lane paused by the 402", func() bool {
		s := f.laneState(model)
		return s.Status == lane.StatusPaused && strings.Contains(s.Reason, "402")
	})
	if s := f.laneState(model); !s.Probed {
		t.Fatalf("lane paused by a 402 is not probed: %+v", s)
	}
	dead, err := dlq.New(f.rdb).Count(context.Background(), dlq.Filter{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	// Probes fail while the burst lasts: more 402s than dead letters, the
	// lane still paused.
	calls := f.mockTotal()
	Eventually(t, 20*time.Second, "two failed probes", func() bool { return f.mockTotal() >= calls+2 })
	if s := f.laneState(model); s.Status != lane.StatusPaused {
		t.Fatalf("lane %s during the burst", s.Status)
	}
	if out, _, _ := f.run("stats"); !strings.Contains(out, "next probe") {
		t.Errorf("stats does not show the next probe:\n%s", out)
	}

	f.mock.Configure(t, map[string]any{"burst_402": 0})
	Eventually(t, 30*time.Second, "lane resumed by a probe", func() bool {
		return f.laneState(model).Status == lane.StatusRunning
	})
	jobs := f.waitFinal(ids, time.Minute)
	succeeded, probed := 0, 0
	for _, j := range jobs {
		switch j.State {
		case enqueue.StateSucceeded:
			succeeded++
			if j.Attempts != 1 {
				t.Errorf("job %s succeeded after %d attempts; probes must not count", j.ID, j.Attempts)
			}
			for _, h := range j.History {
				if h.Reason == "probe" {
					probed++
					if h.StatusCode != 402 {
						t.Errorf("job %s: probe entry %+v", j.ID, h)
					}
				}
			}
		case enqueue.StateDead:
		default:
			t.Errorf("job %s ended %s", j.ID, j.State)
		}
	}
	if succeeded+int(dead) != len(ids) || probed < 2 {
		t.Errorf("%d succeeded, %d dead of %d; %d failed probes in histories (want at least 2)", succeeded, dead, len(ids), probed)
	}

	// An operator's pause of a lane an error paused is never probed.
	f.mock.Configure(t, map[string]any{"burst_402": 1_000_000})
	more := f.submit(5, model, enqueue.QueueBatch)
	Eventually(t, 20*time.Second, "lane paused by the second burst", func() bool {
		return f.laneState(model).Status == lane.StatusPaused
	})
	if out, stderr, code := f.run("lane", "pause", model); code != 0 {
		t.Fatalf("lane pause: %d %s %s", code, out, stderr)
	}
	if s := f.laneState(model); s.Probed || s.PausedBy != "operator" {
		t.Fatalf("operator's pause: %+v", s)
	}
	f.mock.Configure(t, map[string]any{"burst_402": 0})
	calls = f.mockTotal()
	time.Sleep(3 * time.Second) // three probe intervals
	if n := f.mockTotal(); n != calls {
		t.Errorf("the API got %d calls while the operator had the lane paused", n-calls)
	}
	if s := f.laneState(model); s.Status != lane.StatusPaused {
		t.Errorf("operator-paused lane is %s", s.Status)
	}
	if _, _, code := f.run("lane", "resume", model); code != 0 {
		t.Fatal("lane resume failed")
	}
	for _, j := range f.waitFinal(more, time.Minute) {
		if j.State != enqueue.StateSucceeded && j.State != enqueue.StateDead {
			t.Errorf("job %s ended %s", j.ID, j.State)
		}
	}
}
