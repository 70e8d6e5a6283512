package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
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

// modelStats reads one model's row of `mimoq stats --json`.
func (f *fleet) modelStats(model string) ops.ModelStats {
	f.t.Helper()
	out, stderr, code := f.run("stats", "--json")
	if code != 0 {
		f.t.Fatalf("stats --json exited %d: %s", code, stderr)
	}
	var st ops.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		f.t.Fatalf("stats --json: %v", err)
	}
	for _, m := range st.Models {
		if m.Model == model {
			return m
		}
	}
	f.t.Fatalf("stats has no model %s", model)
	return ops.ModelStats{}
}

// TestThrottleAdaptsAndSuspectsQuota: 429s without Retry-After, while the
// fleet keeps its configured 600 RPM, lower the effective rate (shown by
// stats and /metrics, never below what the API let through); a lane that
// then gets nothing but 429s (a used-up quota) for longer than
// MIMOQ_QUOTA_SUSPECT_AFTER is shown as "quota?".
func TestThrottleAdaptsAndSuspectsQuota(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "30", "--no-retry-after")
	f.env = append(f.env, "MIMOQ_RPM=600", "MIMOQ_QUOTA_SUSPECT_AFTER=3s")
	_, addr := f.startWorkerAddr("MIMOQ_MAX_ATTEMPTS=50", "MIMOQ_BACKOFF_BASE=100ms", "MIMOQ_BACKOFF_MAX=3s")
	const model = apiclient.ModelFlash
	f.submit(40, model, enqueue.QueueBatch)
	var m ops.ModelStats
	Eventually(t, 15*time.Second, "effective rate lowered", func() bool {
		m = f.modelStats(model)
		return m.Lane.EffectiveRPM > 0 && m.Lane.EffectiveRPM < 600
	})
	if m.Lane.Limit.RPM != 600 || m.Lane.EffectiveRPM < 28 {
		t.Errorf("limit %d, effective %d: want 600 and not below 95%% of the 30 that passed", m.Lane.Limit.RPM, m.Lane.EffectiveRPM)
	}
	if out, _, _ := f.run("stats"); !strings.Contains(out, "/600") {
		t.Errorf("stats does not show effective/configured rate:\n%s", out)
	}
	var metrics string
	ok := false
	for deadline := time.Now().Add(15 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(body)
		ok = strings.Contains(metrics, `mimoq_lane_rpm_configured{model="mimo-v2.6-flash"} 600`) &&
			strings.Contains(metrics, `mimoq_lane_rpm_effective{model="mimo-v2.6-flash"}`) &&
			!strings.Contains(metrics, `mimoq_lane_rpm_effective{model="mimo-v2.6-flash"} 600`)
	}
	if !ok {
		var lines []string
		for _, l := range Lines(metrics) {
			if strings.HasPrefix(l, "mimoq_lane_") {
				lines = append(lines, l)
			}
		}
		t.Errorf("metrics do not show the lowered rate:\n%s", strings.Join(lines, "\n"))
	}

	// A used-up quota: nothing but 429s from now on.
	f.mock.Configure(t, map[string]any{"quota_tokens": 1, "rpm": 0})
	Eventually(t, 15*time.Second, "quota? shown", func() bool {
		return f.modelStats(model).QuotaSuspect
	})
	Eventually(t, 10*time.Second, "quota? in the stats table", func() bool {
		out, _, _ := f.run("stats")
		return strings.Contains(out, "quota?") && strings.Contains(out, "used-up quota")
	})
}
