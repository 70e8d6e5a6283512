package e2e

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
)

// These tests break things on purpose — processes, Redis, the network, the
// API — and check the promise: every job ends in one final state, none is
// lost, none is dead-lettered for anything but the API's own refusals, and
// the API never answers a stored job twice. They run CI-sized in `make
// test` and bigger with MIMOQ_SOAK=1 (`make soak`).

// TestChaosSIGKILLMidBatch kills one of two workers in the middle of a
// batch and starts a replacement. Every job must succeed on its first
// counted attempt; a job may be answered twice by the API only when the
// killed worker died between the answer and storing it (its history then
// shows the interrupted delivery), never after its result was stored.
func TestChaosSIGKILLMidBatch(t *testing.T) {
	t.Parallel()
	n := soak(2000, 10000)
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--latency", "150ms", "--jitter", "100ms")
	f.submitBatchFile(writeBatch(t, n, "mimo-v2.6-flash"), "sigkill")
	env := []string{"MIMOQ_CONCURRENCY=30", "MIMOQ_RPM=1000000", "MIMOQ_TPM=0"}
	victim := f.startWorker(env...)
	f.startWorker(env...)
	Eventually(t, 2*time.Minute, "a quarter of the batch done", func() bool {
		b, err := f.client.GetBatch(context.Background(), "sigkill")
		return err == nil && b.Succeeded >= n/4
	})
	victimID := workerID(victim)
	victim.Signal(syscall.SIGKILL)
	victim.Wait(10 * time.Second)
	killedAt, _ := f.client.GetBatch(context.Background(), "sigkill")
	f.startWorker(env...)

	// asynq recovers the killed worker's tasks once their lease expired:
	// 60 to 120 s.
	b, jobs := f.waitBatchFinal("sigkill", 6*time.Minute)
	if b.State != enqueue.BatchDone || b.Succeeded != n || b.Dead != 0 {
		t.Fatalf("batch after SIGKILL: %+v; want done with %d succeeded", b, n)
	}
	ids := make([]string, len(jobs))
	redelivered, byVictim := 0, 0
	for i, j := range jobs {
		ids[i] = j.ID
		if j.State != enqueue.StateSucceeded || j.Attempts != 1 {
			t.Errorf("job %s: %s after %d attempts; a crash must not burn one", j.ID, j.State, j.Attempts)
		}
		all, v := interruptions(j, victimID)
		if all > 0 {
			redelivered++
		}
		byVictim += v
	}
	calls := f.mockCalls(ids)
	dupJobs := 0
	for _, j := range jobs {
		c := calls[j.ID]
		if c.Successes <= 1 {
			continue
		}
		dupJobs++
		// The only excuse for a second answer: the first went to the killed
		// worker, which died before it could store it.
		if _, v := interruptions(j, victimID); v == 0 {
			t.Errorf("job %s was answered %d times by the API, but no delivery of it was interrupted by the kill: its stored result was not honoured", j.ID, c.Successes)
		}
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if st.JobsSeen != int64(n) {
		t.Errorf("the mock saw %d jobs, want %d", st.JobsSeen, n)
	}
	if byVictim == 0 {
		t.Errorf("no job shows an interrupted delivery by the killed worker %s: the kill hit nothing in flight", victimID)
	}
	t.Logf("killed at %d/%d succeeded; %d jobs redelivered (%d interrupted deliveries of the killed worker); mock duplicates %d (jobs answered twice: %d), max calls per job %d",
		killedAt.Succeeded, n, redelivered, byVictim, st.Duplicates, dupJobs, st.MaxCallsPerJob)
}

// TestChaosRedisRestart stops Redis (SHUTDOWN) in the middle of a batch and
// starts it again on the same data directory (AOF). Workers and `mimoq
// serve` must stay up, report unready while Redis is gone and ready again
// after, and every job must end succeeded.
func TestChaosRedisRestart(t *testing.T) {
	t.Parallel()
	n := soak(1000, 5000)
	outage := time.Duration(soak(5, 20)) * time.Second
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--latency", "50ms")
	f.submitBatchFile(writeBatch(t, n, "mimo-v2.6-flash"), "restart")
	env := []string{"MIMOQ_CONCURRENCY=20", "MIMOQ_RPM=6000", "MIMOQ_TPM=0"}
	w1, a1 := f.startWorkerAddr(env...)
	w2, a2 := f.startWorkerAddr(env...)
	srv := f.startServe()
	readyURLs := []string{"http://" + a1 + "/readyz", "http://" + a2 + "/readyz", srv.URL + "/readyz"}
	Eventually(t, 2*time.Minute, "some jobs done", func() bool {
		b, err := f.client.GetBatch(context.Background(), "restart")
		return err == nil && b.Succeeded >= n/5
	})

	f.redis.Shutdown()
	down := time.Now()
	for _, u := range readyURLs {
		Eventually(t, 30*time.Second, u+" unready while Redis is down", func() bool { return httpStatus(u) == 503 })
	}
	time.Sleep(time.Until(down.Add(outage)))
	for _, p := range []*Proc{w1, w2, srv.Proc} {
		if p.Exited() {
			t.Fatalf("%v exited while Redis was down:\n%s", p.cmd.Args, tail(p.Output(), 3000))
		}
	}
	f.redis.Restart()
	for _, u := range readyURLs {
		Eventually(t, time.Minute, u+" ready after Redis is back", func() bool { return httpStatus(u) == 200 })
	}

	b, jobs := f.waitBatchFinal("restart", 5*time.Minute)
	if b.State != enqueue.BatchDone || b.Succeeded != n {
		t.Fatalf("batch after a Redis restart: %+v; want done with %d succeeded", b, n)
	}
	redelivered := 0
	for _, j := range jobs {
		if j.State != enqueue.StateSucceeded {
			t.Errorf("job %s ended %s (error %+v)", j.ID, j.State, j.Error)
		}
		if all, _ := interruptions(j, ""); all > 0 {
			redelivered++
		}
	}
	for _, p := range []*Proc{w1, w2, srv.Proc} {
		if p.Exited() {
			t.Errorf("%v exited after the Redis restart", p.cmd.Args)
		}
	}
	if c, err := dlq.New(f.rdb).Count(context.Background(), dlq.Filter{}); err != nil || c != 0 {
		t.Errorf("dead-letter store holds %d records (%v); a Redis restart must dead-letter nothing", c, err)
	}
	// serve answers again, with the data from before the restart.
	var got enqueue.Batch
	srv.callJSON(t, "GET", "/v1/batches/restart", nil, 200, &got)
	if got.Total != n {
		t.Errorf("serve after the restart: batch %+v", got)
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if st.JobsSeen != int64(n) {
		t.Errorf("the mock saw %d jobs, want %d", st.JobsSeen, n)
	}
	t.Logf("Redis down for %s; %d jobs redelivered; mock duplicates %d, max calls per job %d, requests %d",
		outage, redelivered, st.Duplicates, st.MaxCallsPerJob, st.TotalRequests)
}

// TestChaosNetworkFaults puts a fault proxy between the workers and Redis
// and another between the workers and the API: delays, silent stalls,
// resets and refused connections. Every job must end final, and the
// dead-letter store must hold exactly the jobs the API refused (a model it
// does not know, 404), none dead because of the network.
func TestChaosNetworkFaults(t *testing.T) {
	t.Parallel()
	n := soak(600, 3000)
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--latency", "20ms")
	rp := StartProxy(t, f.redis.Addr(), 1)
	mockURL, err := url.Parse(f.mock.URL)
	if err != nil {
		t.Fatal(err)
	}
	ap := StartProxy(t, mockURL.Host, 2)
	// Some genuine API failures too, so that retries are written while
	// the network to Redis misbehaves.
	f.mock.Configure(t, map[string]any{"rate_500": 0.15, "rate_503": 0.05})
	env := []string{
		"MIMOQ_REDIS_URL=redis://" + rp.Addr() + "/0",
		"MIMO_BASE_URL=http://" + ap.Addr() + "/v1",
		"MIMOQ_CONCURRENCY=30", "MIMOQ_RPM=1000000", "MIMOQ_TPM=0",
		"MIMOQ_MAX_ATTEMPTS=10", "MIMOQ_REQUEST_TIMEOUT=10s",
	}
	f.startWorker(env...)
	f.startWorker(env...)
	rp.SetFaults(ProxyFaults{Delay: 2 * time.Millisecond, ResetRate: float64(soak(5, 10)) / 1000, StallRate: 0.0005, StallFor: 2 * time.Second, RefuseRate: 0.05})
	ap.SetFaults(ProxyFaults{Delay: 5 * time.Millisecond, ResetRate: 0.03, StallRate: 0.005, StallFor: 2 * time.Second, RefuseRate: 0.05})

	good := f.submit(n, "mimo-v2.6-flash", enqueue.QueueBatch)
	ghost := f.submit(n/10, ghostModel, enqueue.QueueInteractive)
	all := append(append([]string{}, good...), ghost...)
	Eventually(t, 3*time.Minute, "most jobs final under network faults", func() bool {
		final := 0
		for _, j := range f.getJobs(all) {
			if j.State.Final() {
				final++
			}
		}
		return final >= len(all)*3/4
	})
	// Faults are bounded: the rest runs on a healed network.
	rp.SetFaults(ProxyFaults{})
	ap.SetFaults(ProxyFaults{})
	jobs := f.waitFinal(all, 5*time.Minute)

	for _, id := range good {
		j := jobs[id]
		if j.State != enqueue.StateSucceeded {
			t.Errorf("job %s ended %s after %d attempts (error %+v); only the API's refusals may be dead", id, j.State, j.Attempts, j.Error)
		}
		checkAttemptNumbers(t, j)
	}
	for _, id := range ghost {
		checkAttemptNumbers(t, jobs[id])
		j := jobs[id]
		if j.State != enqueue.StateDead || j.Error == nil || j.Error.Class != "terminal" || j.Error.StatusCode != 404 {
			t.Errorf("ghost job %s: %s, error %+v; want dead, terminal 404", id, j.State, j.Error)
		}
	}
	recs, _, err := dlq.New(f.rdb).List(context.Background(), dlq.Filter{}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !slices.Contains(ghost, r.ID) {
			t.Errorf("dead letter %s (%s %s %d: %s) is not a job the API refused", r.ID, r.Class, r.ErrorCode, r.StatusCode, r.ErrorMessage)
		}
	}
	if len(recs) != len(ghost) {
		t.Errorf("dead-letter store holds %d records, want the %d refused jobs", len(recs), len(ghost))
	}
	var st mockStats
	f.mock.Stats(t, &st)
	t.Logf("redis proxy %+v; api proxy %+v; mock requests %d, duplicates %d, max calls per job %d",
		rp.Stats(), ap.Stats(), st.TotalRequests, st.Duplicates, st.MaxCallsPerJob)
	if s := rp.Stats(); s.Resets+s.Stalls+s.Refused == 0 {
		t.Error("the Redis proxy injected no fault")
	}
	if s := ap.Stats(); s.Resets+s.Stalls+s.Refused == 0 {
		t.Error("the API proxy injected no fault")
	}
}

// TestChaosMockFaults runs a batch against a mock that fails 30 % of calls
// in every way it knows: 429 with Retry-After, 500, 502, 503, resets,
// truncated bodies and calls that hang past the worker's request timeout.
// Every job ends succeeded, or dead as exhausted after exactly
// MIMOQ_MAX_ATTEMPTS retryable failures; no job is called more often than
// that, and no Retry-After is undercut.
func TestChaosMockFaults(t *testing.T) {
	t.Parallel()
	n := soak(2000, 10000)
	const attempts = 5
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--seed", "11", "--latency", "10ms")
	f.mock.Configure(t, map[string]any{
		"rate_429": 0.08, "rate_500": 0.05, "rate_502": 0.02, "rate_503": 0.04, "rate_reset": 0.04,
		"rate_truncate": 0.04, "rate_hang": 0.03,
		"hang_for": "10s", "fault_retry_after": "50ms", "error_shape": "mixed",
	})
	f.submitBatchFile(writeBatch(t, n, "mimo-v2.6-flash"), "chaos")
	env := []string{"MIMOQ_CONCURRENCY=100", "MIMOQ_RPM=1000000", "MIMOQ_TPM=0",
		"MIMOQ_MAX_ATTEMPTS=" + strconv.Itoa(attempts), "MIMOQ_REQUEST_TIMEOUT=2s"}
	f.startWorker(env...)
	f.startWorker(env...)
	b, jobs := f.waitBatchFinal("chaos", 8*time.Minute)
	if b.Succeeded+b.Dead != n || b.Canceled != 0 {
		t.Fatalf("batch: %+v; want every job succeeded or dead", b)
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	calls := f.mockCalls(ids)
	succeeded, dead := 0, 0
	for _, j := range jobs {
		c := calls[j.ID]
		switch j.State {
		case enqueue.StateSucceeded:
			succeeded++
			if c.Successes != 1 {
				t.Errorf("job %s succeeded; the API answered it %d times", j.ID, c.Successes)
			}
		case enqueue.StateDead:
			dead++
			if j.Error == nil || j.Error.Class != "exhausted" || j.Attempts != attempts {
				t.Errorf("job %s dead with %d attempts, error %+v; want exhausted after %d", j.ID, j.Attempts, j.Error, attempts)
			}
			for _, h := range j.History {
				if h.Class != "retryable" && h.Reason != "interrupted" && h.Reason != "requeued" {
					t.Errorf("dead job %s has a %q attempt in its history: %+v", j.ID, h.Class, h)
				}
			}
		default:
			t.Errorf("job %s ended %s", j.ID, j.State)
		}
		checkAttemptNumbers(t, j)
		if len(c.Calls) > attempts {
			t.Errorf("job %s called %d times, more than MIMOQ_MAX_ATTEMPTS=%d: %+v", j.ID, len(c.Calls), attempts, c.Calls)
		}
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if st.MaxCallsPerJob > attempts {
		t.Errorf("mock max_calls_per_job %d > %d", st.MaxCallsPerJob, attempts)
	}
	if st.RetryAfterUndercut != 0 {
		t.Errorf("mock saw Retry-After undercut %d times", st.RetryAfterUndercut)
	}
	if st.Duplicates != 0 {
		t.Errorf("mock saw %d duplicate answers", st.Duplicates)
	}
	for _, k := range []string{"429", "500", "502", "503", "reset", "truncate", "hang"} {
		if st.Faults[k] == 0 {
			t.Errorf("fault %s never injected: %v", k, st.Faults)
		}
	}
	n2, err := dlq.New(f.rdb).Count(context.Background(), dlq.Filter{})
	if err != nil || int(n2) != dead {
		t.Errorf("dead-letter store holds %d (%v), %d jobs are dead", n2, err, dead)
	}
	t.Logf("%d jobs: succeeded %d, dead (exhausted) %d; mock requests %d, faults %v, max calls per job %d",
		n, succeeded, dead, st.TotalRequests, st.Faults, st.MaxCallsPerJob)
}

// checkAttemptNumbers checks that a job's counted history entries are its
// attempts 1..Attempts, each exactly once: an attempt counted twice (a
// record write replayed after a lost reply) or not at all would show here.
func checkAttemptNumbers(t *testing.T, j *enqueue.Job) {
	t.Helper()
	seen := map[int]int{}
	for _, h := range j.History {
		if h.Reason != "interrupted" && h.Reason != "requeued" {
			seen[h.Attempt]++
		}
	}
	for n := 1; n <= j.Attempts; n++ {
		if seen[n] != 1 {
			t.Errorf("job %s: attempt %d appears %d times in its history (attempts %d): %+v", j.ID, n, seen[n], j.Attempts, j.History)
		}
		delete(seen, n)
	}
	if len(seen) > 0 {
		t.Errorf("job %s: history has attempts %v beyond its %d counted ones", j.ID, seen, j.Attempts)
	}
}
