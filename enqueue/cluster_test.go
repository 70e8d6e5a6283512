package enqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestRecordsAndBatchesOnCluster runs the producer API and every record
// script on a Redis Cluster: each script's keys share a {job id} or
// {batch id} hash tag, pipelines span all slots, and the pipelined scripts
// reload after NOSCRIPT on every master. A worker's steps are played by
// hand (Begin, Finish, Announce), the rest of the batch is canceled, and
// the waiter hears the end over pub/sub.
func TestRecordsAndBatchesOnCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := redistest.NewCluster(t).Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := []byte(`{"model":"mimo-v2-flash","messages":[{"role":"user","content":"hi"}]}`)

	// One job, idempotent.
	id1, err := c.Submit(ctx, body, enqueue.WithIdempotencyKey("k1"))
	if err != nil {
		t.Fatalf("submit on a cluster: %v", err)
	}
	if id2, err := c.Submit(ctx, body, enqueue.WithIdempotencyKey("k1")); err != nil || id2 != id1 {
		t.Fatalf("idempotent submit: %s, %v; want %s", id2, err, id1)
	}

	// A batch, through empty script caches.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 300
	var file strings.Builder
	for i := range n {
		fmt.Fprintf(&file, `{"custom_id":"r%d","body":{"model":"mimo-v2-flash","messages":[{"role":"user","content":"q%d"}]}}`+"\n", i, i)
	}
	b, err := c.SubmitBatch(ctx, strings.NewReader(file.String()), enqueue.BatchOptions{ID: "cluster-batch"})
	if err != nil {
		t.Fatalf("submit batch on a cluster: %v", err)
	}
	if b.State != enqueue.BatchRunning || b.Total != n {
		t.Fatalf("batch %+v", b)
	}
	if _, err := c.SubmitBatch(ctx, strings.NewReader(file.String()), enqueue.BatchOptions{ID: "cluster-batch"}); err != nil {
		t.Fatalf("resubmit: %v", err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	info, err := insp.GetQueueInfo(enqueue.AsynqQueue(enqueue.QueueBatch, "mimo-v2-flash"))
	if err != nil || info.Pending != n {
		t.Fatalf("asynq queue: %+v, %v; want %d pending (nothing enqueued twice)", info, err, n)
	}

	// The first 100 jobs run and succeed, as a worker would record them.
	var ids []string
	if err := c.Results(ctx, "cluster-batch", false, func(*enqueue.ResultLine) error { return nil }); err != nil {
		t.Fatalf("results of a running batch: %v", err)
	}
	tasks, err := insp.ListPendingTasks(enqueue.AsynqQueue(enqueue.QueueBatch, "mimo-v2-flash"), asynq.PageSize(n))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range tasks {
		ids = append(ids, ti.ID)
	}
	recs := c.Records()
	now := time.Now()
	for i, ti := range tasks[:100] {
		var p enqueue.Payload
		if err := json.Unmarshal(ti.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if bg, err := recs.Begin(ctx, &p, "w1", now); err != nil || bg.State != enqueue.StateRunning {
			t.Fatalf("begin %s: %+v, %v", p.JobID, bg, err)
		}
		u := &enqueue.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}
		o := enqueue.Outcome{State: enqueue.StateSucceeded, Counted: true,
			Result: json.RawMessage(`{"ok":true}`), StatusCode: 200, Usage: u}
		if i%2 == 0 {
			// Outcome and count in one pipeline across slots (and, the
			// first time, through empty script caches).
			if f, _, err := recs.FinishAnnounce(ctx, p.BatchID, p.JobID, o, now); err != nil || !f.Changed {
				t.Fatalf("finish and count %s: %+v, %v", p.JobID, f, err)
			}
			continue
		}
		if f, err := recs.Finish(ctx, p.JobID, o, now); err != nil || !f.Changed {
			t.Fatalf("finish %s: %+v, %v", p.JobID, f, err)
		}
		if _, err := recs.Announce(ctx, p.BatchID, p.JobID, enqueue.StateSucceeded, u); err != nil {
			t.Fatalf("count %s: %v", p.JobID, err)
		}
	}

	// Cancel the rest; the waiter hears the batch end.
	done := make(chan *enqueue.Batch, 1)
	go func() {
		b, err := c.WaitBatch(ctx, "cluster-batch")
		if err != nil {
			t.Errorf("wait batch: %v", err)
		}
		done <- b
	}()
	canceled, err := c.CancelBatch(ctx, "cluster-batch")
	if err != nil || canceled != n-100 {
		t.Fatalf("cancel: %d, %v; want %d", canceled, err, n-100)
	}
	select {
	case b = <-done:
	case <-ctx.Done():
		t.Fatal("the batch waiter never heard the end")
	}
	if b == nil || b.State != enqueue.BatchCanceled || b.Succeeded != 100 || b.Canceled != n-100 || b.Usage.TotalTokens != 700 || b.FinishedAt.IsZero() {
		t.Fatalf("batch at its end: %+v", b)
	}
	lines := 0
	if err := c.Results(ctx, "cluster-batch", false, func(l *enqueue.ResultLine) error { lines++; return nil }); err != nil || lines != n {
		t.Fatalf("results: %d lines, %v; want %d", lines, err, n)
	}

	// Requeue one canceled job: reset and uncount open the batch again.
	last := ids[n-1]
	if st, err := recs.Reset(ctx, last, time.Now()); err != nil || st != enqueue.StateQueued {
		t.Fatalf("reset: %s, %v", st, err)
	}
	if err := recs.UncountFinal(ctx, "cluster-batch", last, enqueue.StateCanceled); err != nil {
		t.Fatal(err)
	}
	if b, err := c.GetBatch(ctx, "cluster-batch"); err != nil || b.Canceled != n-101 || !b.FinishedAt.IsZero() {
		t.Fatalf("batch after a requeue: %+v, %v", b, err)
	}
	list, _, err := c.ListBatches(ctx, "", 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("list batches: %d, %v", len(list), err)
	}
}
