package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/redistest"
)

// The Redis topologies mimoq runs on, and the variables that select them.
const (
	topoSingle   = "single"   // MIMOQ_REDIS_URL (+ MIMOQ_REDIS_PASSWORD)
	topoSentinel = "sentinel" // MIMOQ_REDIS_SENTINEL_ADDRS + MIMOQ_REDIS_SENTINEL_MASTER
	topoCluster  = "cluster"  // MIMOQ_REDIS_CLUSTER_ADDRS
)

// topology is one test's Redis deployment: the environment that points
// mimoq at it, and a client of the same kind for the test's own checks.
type topology struct {
	env      []string
	rdb      redis.UniversalClient
	sentinel *redistest.Sentinel // set for topoSentinel
}

func newTopology(t *testing.T, kind string, redisArgs ...string) *topology {
	t.Helper()
	switch kind {
	case topoSentinel:
		s := redistest.NewSentinel(t, redisArgs...)
		return &topology{
			env: []string{"MIMOQ_REDIS_SENTINEL_ADDRS=" + strings.Join(s.Addrs(), ","), "MIMOQ_REDIS_SENTINEL_MASTER=" + s.MasterName()},
			rdb: s.Client(), sentinel: s,
		}
	case topoCluster:
		c := redistest.NewCluster(t)
		return &topology{env: []string{"MIMOQ_REDIS_CLUSTER_ADDRS=" + strings.Join(c.Addrs(), ",")}, rdb: c.Client()}
	}
	// A password kept out of the URL, as a Secret would hold it.
	s := redistest.NewWithOptions(t, redistest.Options{Password: "pw-" + enqueue.NewID()})
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	return &topology{
		env: []string{"MIMOQ_REDIS_URL=redis://" + s.Addr() + "/0", "MIMOQ_REDIS_PASSWORD=" + opt.Password},
		rdb: s.Client(),
	}
}

// topoFleet is the mock API and the environment of a fleet on a topology.
type topoFleet struct {
	t    *testing.T
	topo *topology
	mock *Mock
	env  []string
}

func setupTopology(t *testing.T, topo func() *topology, mockFlags ...string) *topoFleet {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test (skipped under -short)")
	}
	f := &topoFleet{t: t, topo: topo()}
	key := "sk-e2e-" + enqueue.NewID()
	f.mock = StartMock(t, bin, key, mockFlags...)
	f.env = append([]string{
		"MIMO_API_KEY=" + key,
		"MIMO_BASE_URL=" + f.mock.URL,
		"MIMOQ_MODELS=" + testModels,
		// Off: the tests' ghost model is one the mock never lists, which a
		// live catalog refuses at submit time (catalog tests turn it on).
		"MIMOQ_CATALOG_INTERVAL=0",
		"MIMOQ_BACKOFF_BASE=20ms",
		"MIMOQ_BACKOFF_MAX=200ms",
		"MIMOQ_LOG_LEVEL=info",
	}, f.topo.env...)
	return f
}

// startWorker starts a worker on the topology and waits until it is ready.
func (f *topoFleet) startWorker(env ...string) *Proc {
	f.t.Helper()
	addr := FreeAddr(f.t)
	p := Start(f.t, bin, append(append(append([]string{}, f.env...), "MIMOQ_HTTP_ADDR="+addr), env...), "worker")
	WaitHTTP(f.t, "http://"+addr+"/readyz", 30*time.Second)
	return p
}

// run runs the binary to completion (at most d) and returns stdout, stderr
// and the exit code.
func (f *topoFleet) run(d time.Duration, args ...string) (string, string, int) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, f.env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		f.t.Fatalf("mimoq %v did not finish within %s; stderr:\n%s", args, d, tail(errb.String(), 2000))
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// writeMixedBatch writes n lines, every ghostEvery-th for the model the API
// does not know (404: dead-lettered at once), the rest for mimo-v2.6-flash.
func writeMixedBatch(t *testing.T, n, ghostEvery int) (path string, ghosts int) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "batch.jsonl")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(file)
	for i := range n {
		model := "mimo-v2.6-flash"
		if i%ghostEvery == ghostEvery-1 {
			model = ghostModel
			ghosts++
		}
		fmt.Fprintf(w, `{"custom_id":"req-%d","body":{"model":%q,"messages":[{"role":"user","content":"line %d"}],"max_tokens":32}}`+"\n", i, model, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	return path, ghosts
}

// batchOutcome is what a batch left behind.
type batchOutcome struct {
	batch enqueue.Batch
	dead  map[string]bool // job IDs of lines that did not succeed
	lines int
}

// collect reads the batch record, its results file and checks that every
// line is there once and final.
func (f *topoFleet) collect(id string, n int) batchOutcome {
	f.t.Helper()
	out, stderr, code := f.run(time.Minute, "batch", "status", id, "--json")
	if code != 0 {
		f.t.Fatalf("batch status exited %d: %s", code, stderr)
	}
	var o batchOutcome
	if err := json.Unmarshal([]byte(out), &o.batch); err != nil {
		f.t.Fatalf("batch status printed %q: %v", out, err)
	}
	res := filepath.Join(f.t.TempDir(), "results.jsonl")
	if _, stderr, code := f.run(time.Minute, "batch", "results", id, "-o", res); code != 0 {
		f.t.Fatalf("batch results exited %d: %s", code, stderr)
	}
	o.dead = map[string]bool{}
	seen := map[string]bool{}
	for i, l := range readLines(f.t, res) {
		var r enqueue.ResultLine
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			f.t.Fatalf("results line %d: %v", i+1, err)
		}
		if seen[r.CustomID] {
			f.t.Errorf("results hold %s twice", r.CustomID)
		}
		seen[r.CustomID] = true
		if r.Error != nil {
			o.dead[r.ID] = true
		}
		o.lines++
	}
	if o.lines != n {
		f.t.Errorf("results hold %d lines; want %d", o.lines, n)
	}
	return o
}

// checkDLQ checks that the dead-letter store lists exactly the batch's dead
// jobs.
func (f *topoFleet) checkDLQ(batchID string, dead map[string]bool) {
	f.t.Helper()
	var listed []string
	err := dlq.New(f.topo.rdb).Iterate(context.Background(), dlq.Filter{BatchID: batchID}, 100, func(r dlq.Record) error {
		listed = append(listed, r.ID)
		return nil
	})
	if err != nil {
		f.t.Fatalf("list dead letters: %v", err)
	}
	for _, id := range listed {
		if !dead[id] {
			f.t.Errorf("dead letter %s is not a dead job of the batch", id)
		}
	}
	if len(listed) != len(dead) {
		f.t.Errorf("the DLQ lists %d dead letters of batch %s; %d jobs are dead", len(listed), batchID, len(dead))
	}
}

// TestTopologies runs a batch with faults to completion through two worker
// processes on each Redis topology: a single Redis (password from
// MIMOQ_REDIS_PASSWORD), Sentinel and a three-master Cluster. The fleet-wide
// rate limit binds (more requests than the per-minute limit) and must hold
// at the mock; every line ends final, once; the DLQ lists every dead job.
func TestTopologies(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{topoSingle, topoSentinel, topoCluster} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			const (
				n   = 500
				rpm = 480 // ~545 requests with retries: the 60-s window binds
			)
			f := setupTopology(t, func() *topology { return newTopology(t, kind) }, "--rpm", fmt.Sprint(rpm), "--tpm", "0", "--seed", "11")
			f.mock.Configure(t, map[string]any{"rate_500": 0.08, "rate_429": 0.04, "fault_retry_after": "50ms", "error_shape": "mixed"})
			path, ghosts := writeMixedBatch(t, n, 25)
			id := "topo-" + kind
			if _, stderr, code := f.run(time.Minute, "batch", "submit", path, "--id", id); code != 0 {
				t.Fatalf("batch submit exited %d: %s", code, stderr)
			}
			start := time.Now()
			for range 2 {
				f.startWorker("MIMOQ_CONCURRENCY=20", fmt.Sprintf("MIMOQ_RPM=%d", rpm), "MIMOQ_TPM=0", "MIMOQ_MAX_ATTEMPTS=5")
			}
			if _, stderr, code := f.run(5*time.Minute, "batch", "status", id, "--watch", "--json"); code != 0 {
				t.Fatalf("batch status --watch exited %d: %s", code, stderr)
			}
			took := time.Since(start)
			o := f.collect(id, n)
			b := o.batch
			if b.State != enqueue.BatchDone || b.Succeeded+b.Dead != n || b.Pending != 0 {
				t.Errorf("batch %+v; want done with every line final", b)
			}
			if b.Dead < ghosts || len(o.dead) != b.Dead {
				t.Errorf("%d dead (%d in the results); want at least the %d lines of the unknown model", b.Dead, len(o.dead), ghosts)
			}
			f.checkDLQ(id, o.dead)

			var st mockStats
			f.mock.Stats(t, &st)
			m := st.Models["mimo-v2.6-flash"]
			if m.LimitExceeded != 0 {
				t.Errorf("the mock's limit of %d/min was exceeded %d times", rpm, m.LimitExceeded)
			}
			if m.Requests <= rpm {
				t.Errorf("%d requests: the limit of %d/min never bound", m.Requests, rpm)
			}
			if st.Duplicates != 0 {
				t.Errorf("the mock answered %d jobs successfully twice", st.Duplicates)
			}
			if st.Faults["500"] == 0 || st.Faults["429"] == 0 {
				t.Errorf("faults not exercised: %v", st.Faults)
			}
			t.Logf("%s: %d lines in %s: %d succeeded, %d dead; mock: %d flash requests (limit %d/min, at most %d ok in 1 s), faults %v",
				kind, n, took.Round(time.Second), b.Succeeded, b.Dead, m.Requests, rpm, m.MaxPerSecond.OK, st.Faults)
		})
	}
}

// TestSentinelFailoverMidBatch promotes the replica (SENTINEL FAILOVER)
// while two workers run a batch. Every line must end final, once; the test
// reports how long the fleet stopped calling the API, how many deliveries
// were interrupted and redelivered, and how many calls the API saw twice.
//
// The data nodes run with min-replicas-to-write 1 (docs/deploy.md): the
// moment the replica is promoted, the old master refuses writes instead of
// accepting ones that the failover then discards, so no acknowledged write
// is lost; the price is that writes stop until the old master follows the
// new one (about 10 s: the sentinel's INFO period). With
// MIMOQ_TEST_FAILOVER_ASYNC=1 the test runs with plain asynchronous
// replication instead, to measure what that loses (docs/deploy.md has the
// numbers).
func TestSentinelFailoverMidBatch(t *testing.T) {
	t.Parallel()
	const n = 500
	args := []string{"--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"}
	if os.Getenv("MIMOQ_TEST_FAILOVER_ASYNC") == "1" {
		args = nil
	}
	f := setupTopology(t, func() *topology { return newTopology(t, topoSentinel, args...) }, "--rpm", "0", "--tpm", "0", "--latency", "20ms")
	path, ghosts := writeMixedBatch(t, n, 50)
	const id = "failover"
	if _, stderr, code := f.run(time.Minute, "batch", "submit", path, "--id", id); code != 0 {
		t.Fatalf("batch submit exited %d: %s", code, stderr)
	}
	for range 2 {
		// 40 calls a second, fleet-wide: the batch runs about 12 s.
		f.startWorker("MIMOQ_CONCURRENCY=10", "MIMOQ_RPM=2400", "MIMOQ_TPM=0")
	}

	// Sample the mock's request count, to see how long calls stopped.
	var (
		mu      sync.Mutex
		samples []sample
	)
	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for sctx.Err() == nil {
			if n, err := requestCount(f.mock); err == nil {
				mu.Lock()
				samples = append(samples, sample{time.Now(), n})
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	Eventually(t, time.Minute, "a third of the batch done", func() bool {
		var st mockStats
		f.mock.Stats(t, &st)
		return st.TotalRequests >= n/3
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failoverAt := time.Now()
	oldM, newM, err := f.topo.sentinel.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover %s -> %s complete (old master following) after %s", oldM, newM, time.Since(failoverAt).Round(time.Millisecond))

	if _, stderr, code := f.run(5*time.Minute, "batch", "status", id, "--watch", "--json"); code != 0 {
		t.Fatalf("batch status --watch exited %d: %s", code, stderr)
	}
	finished := time.Since(failoverAt)
	stop()
	wg.Wait()
	o := f.collect(id, n)
	b := o.batch
	if b.State != enqueue.BatchDone || b.Succeeded+b.Dead != n || b.Dead != ghosts {
		t.Errorf("batch %+v; want done, %d succeeded and the %d lines of the unknown model dead", b, n-ghosts, ghosts)
	}
	f.checkDLQ(id, o.dead)

	// What the failover cost.
	interrupted, extraAttempts := 0, 0
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: f.topo.rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for jid := range jobIDs(t, c, id) {
		j, err := c.Get(context.Background(), jid)
		if err != nil {
			t.Fatalf("job %s: %v", jid, err)
		}
		if !j.State.Final() {
			t.Errorf("job %s ended %s", jid, j.State)
		}
		for _, h := range j.History {
			if h.Reason == "interrupted" {
				interrupted++
			}
		}
		if j.Attempts > 1 {
			extraAttempts += j.Attempts - 1
		}
	}
	var st mockStats
	f.mock.Stats(t, &st)
	mu.Lock()
	pause := longestPause(samples, failoverAt)
	mu.Unlock()
	t.Logf("failover mid-batch (redis %v): %d lines final (%d succeeded, %d dead); API calls paused for at most %s after the failover began; "+
		"batch done %s after it began; %d deliveries interrupted and redelivered, %d extra counted attempts, "+
		"%d jobs answered successfully twice by the API, %d requests for %d jobs",
		args, n, b.Succeeded, b.Dead, pause.Round(10*time.Millisecond), finished.Round(100*time.Millisecond),
		interrupted, extraAttempts, st.Duplicates, st.TotalRequests, st.JobsSeen)
	if args != nil {
		// No write was acknowledged and then lost: no job ran twice.
		if st.Duplicates != 0 || st.TotalRequests != st.JobsSeen || extraAttempts != 0 {
			t.Errorf("with min-replicas-to-write, the failover made the API see %d duplicate successes and %d requests for %d jobs, %d extra attempts; want none",
				st.Duplicates, st.TotalRequests, st.JobsSeen, extraAttempts)
		}
	}
}

// requestCount reads the mock's total request count (no t: it runs on a
// goroutine of its own).
func requestCount(m *Mock) (int64, error) {
	resp, err := http.Get(m.Root() + "/mock/stats")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st mockStats
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st.TotalRequests, err
}

type sample struct {
	at       time.Time
	requests int64
}

// longestPause is the longest time after from during which the request
// count did not grow (up to the last growth: the end of the batch is not a
// pause).
func longestPause(samples []sample, from time.Time) time.Duration {
	var worst time.Duration
	var last sample
	for i, s := range samples {
		if i == 0 || s.requests != last.requests {
			if i > 0 && s.at.After(from) {
				start := last.at
				if start.Before(from) {
					start = from
				}
				worst = max(worst, s.at.Sub(start))
			}
			last = s
		}
	}
	return worst
}

// jobIDs returns the job IDs of a batch, from its results.
func jobIDs(t *testing.T, c *enqueue.Client, batchID string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	err := c.Results(context.Background(), batchID, false, func(l *enqueue.ResultLine) error {
		ids[l.ID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
