package records

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestRecordsOnCluster runs every transition on a Redis Cluster, through
// empty script caches: each script's keys (and the keys it names from them:
// a job's request, a batch's line bitmap) share one slot, a batch's with
// all its jobs', and the pipelines that span slots (tasks, the live index,
// the reconciler's checks) are split by the client.
func TestRecordsOnCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := redistest.NewCluster(t).Client()
	s := New(rdb, time.Hour)
	flush := func() {
		if err := rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ScriptFlush(ctx).Err()
		}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()

	// A single job: submitted, begun, answered.
	flush()
	id := NewID()
	if _, err := s.Submit(ctx, NewJob{ID: id, Queue: job.QueueInteractive, Model: testModel, Body: testBody, SubmittedAt: now}); err != nil {
		t.Fatalf("submit on a cluster: %v", err)
	}
	bg, err := s.Begin(ctx, id, NewLease(), "w", now)
	if err != nil || bg.Verdict != Run || string(bg.Body) != string(testBody) {
		t.Fatalf("begin on a cluster: %+v, %v", bg, err)
	}
	if f, err := s.Finish(ctx, bg.Delivery, succeeded, now); err != nil || f.Written != Applied {
		t.Fatalf("finish on a cluster: %+v, %v", f, err)
	}

	// A batch of 300 lines, half enqueued (an interrupted submit), then
	// completed by a second submit.
	flush()
	const n = 300
	cb, err := s.CreateBatch(ctx, BatchSpec{ID: "cluster-batch", Queue: job.QueueBatch, SHA256: "x", Total: n}, now)
	if err != nil {
		t.Fatal(err)
	}
	lines := make([]Line, n)
	for i := range lines {
		lines[i] = Line{Index: i, CustomID: fmt.Sprintf("c%d", i), Model: testModel, Body: testBody}
	}
	for _, part := range [][]Line{lines[:150], lines} {
		if err := s.EnqueueLines(ctx, "cluster-batch", job.QueueBatch, cb.CreatedMs, part, now); err != nil {
			t.Fatalf("enqueue lines on a cluster: %v", err)
		}
	}
	if _, err := s.Seal(ctx, "cluster-batch", now); err != nil {
		t.Fatal(err)
	}
	// 100 succeed, one dies and is requeued, the rest are canceled.
	flush()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = batchJobID("cluster-batch", cb.CreatedMs, i)
	}
	for _, jid := range ids[:100] {
		bg, err := s.Begin(ctx, jid, NewLease(), "w", now)
		if err != nil || bg.Verdict != Run {
			t.Fatalf("begin %s: %+v, %v", jid, bg, err)
		}
		if _, err := s.Finish(ctx, bg.Delivery, succeeded, now); err != nil {
			t.Fatal(err)
		}
	}
	bg, _ = s.Begin(ctx, ids[100], NewLease(), "w", now)
	if _, err := s.Finish(ctx, bg.Delivery, died, now); err != nil {
		t.Fatal(err)
	}
	dead, err := s.Get(ctx, ids[100], true)
	if err != nil || string(dead.Request) != string(testBody) {
		t.Fatalf("dead job keeps its request: %+v, %v", dead, err)
	}
	flush()
	if res, _, err := s.Requeue(ctx, DeadJob{ID: ids[100], BatchID: "cluster-batch", Queue: job.QueueBatch, Model: testModel,
		Request: testBody, DeadAt: dead.FinishedAt}, now); err != nil || res != Requeued {
		t.Fatalf("requeue on a cluster: %v, %v", res, err)
	}
	flush()
	canceled, err := s.CancelBatch(ctx, "cluster-batch", now)
	if err != nil || canceled != n-100 {
		t.Fatalf("cancel on a cluster: %d, %v; want %d", canceled, err, n-100)
	}
	wctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	b, err := s.WaitBatch(wctx, "cluster-batch")
	if err != nil || b.State != job.BatchCanceled || b.Succeeded != 100 || b.Canceled != n-100 || b.Dead != 0 ||
		b.Usage.TotalTokens != 700 {
		t.Fatalf("batch at its end: %+v, %v", b, err)
	}
	count := 0
	if err := s.Results(ctx, "cluster-batch", false, func(*job.ResultLine) error { count++; return nil }); err != nil || count != n {
		t.Fatalf("results: %d lines, %v; want %d", count, err, n)
	}

	// The reconciler: a single job whose task was lost gets one again.
	lost := NewID()
	if _, err := s.Submit(ctx, NewJob{ID: lost, Queue: job.QueueInteractive, Model: testModel, Body: testBody,
		SubmittedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, "asynq:{"+job.AsynqQueue(job.QueueInteractive, testModel)+"}:t:"+lost).Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	rep, err := s.Reconcile(ctx, nil, ReconcileOptions{Grace: time.Minute}, now.Add(2*time.Minute))
	if err != nil || rep.TasksRecreated != 1 {
		t.Fatalf("reconcile on a cluster: %+v, %v", rep, err)
	}
}
