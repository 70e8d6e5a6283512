package asynqwire_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestClusterEnqueueAndReload enqueues into queues spread over the slots of
// every node of a Redis Cluster, through empty script caches: the pipelined
// EVALSHA fails with NOSCRIPT on every node, RunPipelined loads the script
// (on every master, as ClusterClient.ScriptLoad does) and runs it again.
// asynq's Inspector and Server, on the same cluster client, then find and
// process every task.
func TestClusterEnqueueAndReload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.NewCluster(t).Client()

	// Queues whose {hash tag} lands on each of the three masters.
	queues := map[string]bool{}
	nodes := map[string]bool{}
	for i := 0; len(nodes) < 3 || len(queues) < 6; i++ {
		q := fmt.Sprintf("batch:model-%d", i)
		slot, err := rdb.ClusterKeySlot(ctx, "asynq:{"+q+"}:pending").Result()
		if err != nil {
			t.Fatal(err)
		}
		node := masterOf(t, rdb, slot)
		if !nodes[node] || len(queues) < 6 {
			nodes[node] = true
			queues[q] = true
		}
	}
	var tasks []asynqwire.Task
	for q := range queues {
		for j := range 50 {
			tasks = append(tasks, asynqwire.Task{Type: "mimoq:chat", Payload: fmt.Appendf(nil, `{"j":%d}`, j),
				ID: fmt.Sprintf("%s-%d", q, j), Queue: q, MaxRetry: 1000})
		}
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil { // every master
		t.Fatal(err)
	}
	res, err := asynqwire.EnqueueMany(ctx, rdb, tasks)
	if err != nil {
		t.Fatalf("enqueue on a cluster with empty script caches: %v", err)
	}
	if res.Enqueued != len(tasks) {
		t.Fatalf("enqueued %+v; want %d", res, len(tasks))
	}
	if res, err := asynqwire.EnqueueMany(ctx, rdb, tasks); err != nil || res.Existed != len(tasks) {
		t.Fatalf("second enqueue %+v %v; want every ID refused as existing", res, err)
	}

	insp := asynq.NewInspectorFromRedisClient(rdb)
	weights := map[string]int{}
	for q := range queues {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatalf("GetQueueInfo %s: %v", q, err)
		}
		if info.Pending != 50 {
			t.Errorf("queue %s: %d pending; want 50", q, info.Pending)
		}
		weights[q] = 1
	}

	var mu sync.Mutex
	seen := map[string]bool{}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 20, Queues: weights, TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("mimoq:chat", func(ctx context.Context, tk *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		mu.Lock()
		seen[id] = true
		mu.Unlock()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == len(tasks) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("asynq's server on the cluster processed %d of %d tasks", len(seen), len(tasks))
}

// masterOf returns the address of the master serving slot.
func masterOf(t *testing.T, rdb *redis.ClusterClient, slot int64) string {
	t.Helper()
	slots, err := rdb.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return ""
}
