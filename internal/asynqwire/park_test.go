package asynqwire_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestParkContractWithAsynq checks parked tasks against asynq itself: its
// Inspector shows them as scheduled, its Server never takes them until
// Unpark releases them, in the order given; DropParked deletes them as
// the Inspector does; a task scheduled for a real time is neither released
// nor deleted.
func TestParkContractWithAsynq(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	const q = "batch:m"
	var tasks []asynqwire.Task
	for _, id := range []string{"p1", "p2", "p3", "p4"} {
		tasks = append(tasks, asynqwire.Task{Type: "mimoq:chat", Payload: []byte(id), ID: id, Queue: q, Parked: true})
	}
	if res, err := asynqwire.EnqueueMany(ctx, rdb, tasks); err != nil || res.Enqueued != 4 {
		t.Fatalf("park: %+v %v", res, err)
	}
	if res, err := asynqwire.EnqueueMany(ctx, rdb, tasks[:1]); err != nil || res.Existed != 1 {
		t.Fatalf("park again: %+v %v, want it existed", res, err)
	}
	c := asynq.NewClientFromRedisClient(rdb)
	if _, err := c.Enqueue(asynq.NewTask("mimoq:chat", []byte("real")), asynq.TaskID("real"), asynq.Queue(q), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, tk := range tasks {
		info, err := insp.GetTaskInfo(q, tk.ID)
		if err != nil || info.State != asynq.TaskStateScheduled || info.NextProcessAt.Year() < 2200 {
			t.Fatalf("parked task %s: %+v %v, want scheduled far ahead", tk.ID, info, err)
		}
	}

	var mu sync.Mutex
	var seen []string
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 1, Queues: map[string]int{q: 1}, TaskCheckInterval: 10 * time.Millisecond,
		DelayedTaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("mimoq:chat", func(_ context.Context, tk *asynq.Task) error {
		mu.Lock()
		seen = append(seen, string(tk.Payload()))
		mu.Unlock()
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	moved, err := asynqwire.Unpark(ctx, rdb, q, []string{"p3", "p1", "real", "nope"})
	if err != nil || !slices.Equal(moved, []bool{true, true, false, false}) {
		t.Fatalf("unpark: %v %v, want p3 and p1 moved only", moved, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if moved, _ := asynqwire.Unpark(ctx, rdb, q, []string{"p3"}); moved[0] {
		t.Error("a task released before was released again")
	}
	n, err := asynqwire.DropParked(ctx, rdb, q, []string{"p2", "real", "p1"})
	if err != nil || n != 1 {
		t.Fatalf("drop parked: %d %v, want 1 (p2)", n, err)
	}
	if _, err := insp.GetTaskInfo(q, "p2"); err == nil {
		t.Error("dropped task p2 is still there")
	}
	for id, want := range map[string]asynq.TaskState{"p4": asynq.TaskStateScheduled, "real": asynq.TaskStateScheduled} {
		if info, err := insp.GetTaskInfo(q, id); err != nil || info.State != want {
			t.Errorf("task %s: %+v %v, want %v", id, info, err, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []string{"p3", "p1"}) {
		t.Errorf("asynq's server ran %v, want [p3 p1] in that order (the parked ones never)", seen)
	}
}
