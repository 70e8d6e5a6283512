package fair_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/fair"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/redistest"
)

const model = "mimo-v2.6-flash"

var lanes = []fair.Lane{{Queue: job.QueueBatch, Model: model}, {Queue: job.QueueInteractive, Model: model}}

// submit writes a sealed batch of n lines.
func submit(t *testing.T, s *records.Store, id string, n, weight int, tenant string) {
	t.Helper()
	ctx := context.Background()
	cb, err := s.CreateBatch(ctx, records.BatchSpec{ID: id, Queue: job.QueueBatch, SHA256: "x", Total: n, Weight: weight, Tenant: tenant}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lines := make([]records.Line, n)
	for i := range lines {
		lines[i] = records.Line{Index: i, CustomID: fmt.Sprint(i), Model: model, Body: []byte(`{}`)}
	}
	if err := s.EnqueueLines(ctx, id, job.QueueBatch, cb.CreatedMs, lines, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// runFeeder runs a feeder named id of depth until the test ends.
func runFeeder(t *testing.T, rdb redis.UniversalClient, s *records.Store, id string, depth int) {
	t.Helper()
	f, err := fair.New(fair.Config{Redis: rdb, Records: s, ID: id, Lanes: func() []fair.Lane { return lanes },
		Depth: func(string) int { return depth }, Busy: 5 * time.Millisecond, Idle: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// take pops the next released task of the batch lane, as an asynq server
// would, and returns its payload; ok false when none is pending.
func take(t *testing.T, rdb redis.UniversalClient) (job.Payload, bool) {
	t.Helper()
	ctx := context.Background()
	q := job.AsynqQueue(job.QueueBatch, model)
	id, err := rdb.RPop(ctx, asynqwire.PendingKey(q)).Result()
	if err == redis.Nil {
		return job.Payload{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := rdb.HGet(ctx, asynqwire.TaskKey(q, id), "state").Result()
	if err != nil || info != "pending" {
		t.Fatalf("released task %s is %q (%v), want pending", id, info, err)
	}
	var p job.Payload
	msg := rdb.HGet(ctx, asynqwire.TaskKey(q, id), "msg").Val()
	// The payload is field 2 of the message; find its JSON.
	start := 0
	for start < len(msg) && msg[start] != '{' {
		start++
	}
	end := len(msg)
	for end > start && msg[end-1] != '}' {
		end--
	}
	if err := json.Unmarshal([]byte(msg[start:end]), &p); err != nil {
		t.Fatalf("payload of %s: %v", id, err)
	}
	return p, true
}

// TestFeederSharesALane: a small batch submitted after a big one gets half
// the lane from its first release on, each batch's jobs leave in line
// order, two feeders at once release every job exactly once, and the lane's
// queue never holds more than its depth.
func TestFeederSharesALane(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	s := records.New(rdb, time.Hour)
	submit(t, s, "x", 300, 1, "")
	submit(t, s, "y", 20, 1, "")
	const depth = 6
	runFeeder(t, rdb, s, "f1", depth)
	runFeeder(t, rdb, s, "f2", depth)

	next := map[string]int{}
	seen := map[string]bool{}
	var order []string
	deadline := time.Now().Add(30 * time.Second)
	for len(order) < 320 && time.Now().Before(deadline) {
		if n := rdb.LLen(ctx, asynqwire.PendingKey(job.AsynqQueue(job.QueueBatch, model))).Val(); n > depth {
			t.Fatalf("the lane's queue holds %d jobs, more than its depth %d", n, depth)
		}
		p, ok := take(t, rdb)
		if !ok {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		if seen[p.JobID] {
			t.Fatalf("job %s released twice", p.JobID)
		}
		seen[p.JobID] = true
		if want := fmt.Sprint(next[p.BatchID]); p.CustomID != want {
			t.Fatalf("batch %s released line %s, want %s (line order)", p.BatchID, p.CustomID, want)
		}
		next[p.BatchID]++
		order = append(order, p.BatchID)
	}
	if len(order) != 320 {
		t.Fatalf("%d of 320 jobs released", len(order))
	}
	// y's 20 jobs come within the first depth + 2×20 (+ a feeder's round
	// of slack) releases.
	lastY := 0
	for i, b := range order {
		if b == "y" {
			lastY = i
		}
	}
	if lastY > depth+40+depth {
		t.Errorf("y's last job was release number %d; want it within about %d (half the lane)", lastY+1, depth+40)
	}
	shares, err := fair.ReadShares(ctx, rdb, s, lanes)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != 1 || shares[0].Released != 320 || shares[0].Backlog != 0 {
		t.Errorf("shares after the run: %+v, want the batch lane with 320 released and no backlog", shares)
	}
}

// TestFeederWeightsAndTenants: shares follow weights, and a tenant's five
// batches share one share.
func TestFeederWeightsAndTenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	s := records.New(rdb, time.Hour)
	submit(t, s, "w1", 400, 1, "")
	submit(t, s, "w2", 400, 2, "")
	for i := range 5 {
		submit(t, s, fmt.Sprintf("acme%d", i), 400, 1, "acme")
	}
	runFeeder(t, rdb, s, "f1", 8)
	got := map[string]int{}
	for taken := 0; taken < 400; {
		p, ok := take(t, rdb)
		if !ok {
			time.Sleep(time.Millisecond)
			continue
		}
		taken++
		if len(p.BatchID) > 4 && p.BatchID[:4] == "acme" {
			got["acme"]++
		} else {
			got[p.BatchID]++
		}
	}
	// Shares 1 : 2 : 1 (the tenant) of 400, ± a round of 8.
	for flow, want := range map[string]int{"w1": 100, "w2": 200, "acme": 100} {
		if d := got[flow] - want; d > 8 || d < -8 {
			t.Errorf("%s got %d of 400 releases, want %d (all: %v)", flow, got[flow], want, got)
		}
	}
	shares, err := fair.ReadShares(ctx, rdb, s, lanes)
	if err != nil || len(shares) != 1 {
		t.Fatalf("shares %+v %v", shares, err)
	}
	for _, fl := range shares[0].Flows {
		if fl.Flow == "t:acme" && (len(fl.Batches) != 5 || fl.Share < 0.2 || fl.Share > 0.3) {
			t.Errorf("the tenant's flow %+v, want its 5 batches with a quarter of the lane", fl)
		}
	}
}

// TestFeederDropsACanceledBatch: the parked tasks of a canceled batch are
// deleted, not run, and the batch leaves its lane's list.
func TestFeederDropsACanceledBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	s := records.New(rdb, time.Hour)
	submit(t, s, "c", 2500, 1, "")
	if n, err := s.CancelBatch(ctx, "c", time.Now()); err != nil || n != 2500 {
		t.Fatalf("cancel: %d %v", n, err)
	}
	runFeeder(t, rdb, s, "f1", 8)
	q := job.AsynqQueue(job.QueueBatch, model)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && (rdb.ZCard(ctx, asynqwire.ScheduledKey(q)).Val() > 0 ||
		rdb.SCard(ctx, records.LaneBatchesKey(q)).Val() > 0) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := rdb.ZCard(ctx, asynqwire.ScheduledKey(q)).Val(); n != 0 {
		t.Errorf("%d parked tasks of the canceled batch left", n)
	}
	if n := rdb.LLen(ctx, asynqwire.PendingKey(q)).Val(); n != 0 {
		t.Errorf("%d tasks of the canceled batch were released", n)
	}
	if rdb.SCard(ctx, records.LaneBatchesKey(q)).Val() != 0 {
		t.Error("the canceled batch is still listed in its lane")
	}
}
