package asynqwire_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestContractWithAsynq checks that what EnqueueMany writes is what asynq's
// own Client writes: its Inspector reads every field back, a repeated ID is
// refused like ErrTaskIDConflict, and its Server processes the tasks.
func TestContractWithAsynq(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	tasks := []asynqwire.Task{
		{Type: "mimoq:chat", Payload: []byte(`{"a":1}`), ID: "t1", Queue: "batch:m", MaxRetry: 1000},
		{Type: "mimoq:chat", Payload: []byte(`{"b":2}`), ID: "t2", Queue: "batch:m", MaxRetry: 3, Timeout: time.Minute},
		{Type: "other", Payload: nil, ID: "t3", Queue: "interactive:m"},
	}
	res, err := asynqwire.EnqueueMany(ctx, rdb, tasks)
	if err != nil {
		t.Fatal(err)
	}
	if res.Enqueued != 3 || res.Existed != 0 {
		t.Fatalf("first enqueue: %+v, want 3 enqueued", res)
	}
	res, err = asynqwire.EnqueueMany(ctx, rdb, tasks[:2])
	if err != nil || res.Enqueued != 0 || res.Existed != 2 {
		t.Fatalf("second enqueue: %+v %v, want 2 existed", res, err)
	}
	// asynq's Client sees the same IDs as taken.
	c := asynq.NewClientFromRedisClient(rdb)
	if _, err := c.Enqueue(asynq.NewTask("mimoq:chat", nil), asynq.TaskID("t1"), asynq.Queue("batch:m")); !errors.Is(err, asynq.ErrTaskIDConflict) {
		t.Fatalf("asynq enqueue of an existing ID: %v, want ErrTaskIDConflict", err)
	}

	insp := asynq.NewInspectorFromRedisClient(rdb)
	for _, want := range tasks {
		got, err := insp.GetTaskInfo(want.Queue, want.ID)
		if err != nil {
			t.Fatalf("GetTaskInfo %s: %v", want.ID, err)
		}
		timeout := want.Timeout
		if timeout == 0 {
			timeout = asynqwire.DefaultTimeout
		}
		if got.Type != want.Type || string(got.Payload) != string(want.Payload) || got.Queue != want.Queue ||
			got.MaxRetry != want.MaxRetry || got.Timeout != timeout || got.State != asynq.TaskStatePending {
			t.Errorf("task %s read back as %+v, want %+v", want.ID, got, want)
		}
	}
	qs, err := insp.Queues()
	if err != nil || len(qs) != 2 {
		t.Fatalf("queues %v %v, want batch:m and interactive:m", qs, err)
	}

	var mu sync.Mutex
	seen := map[string]string{}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 2, Queues: map[string]int{"batch:m": 1, "interactive:m": 1},
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	handle := func(_ context.Context, tk *asynq.Task) error {
		mu.Lock()
		seen[fmt.Sprintf("%s:%s", tk.Type(), tk.Payload())] = tk.Type()
		mu.Unlock()
		return nil
	}
	mux.HandleFunc("mimoq:chat", handle)
	mux.HandleFunc("other", handle)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 3 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("asynq's server processed %d of 3 tasks: %v", len(seen), seen)
}

func TestScriptReloadAfterFlush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	if _, err := asynqwire.EnqueueMany(ctx, rdb, []asynqwire.Task{{Type: "x", ID: "a", Queue: "q"}}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := asynqwire.EnqueueMany(ctx, rdb, []asynqwire.Task{{Type: "x", ID: "a", Queue: "q"}, {Type: "x", ID: "b", Queue: "q"}})
	if err != nil || res.Enqueued != 1 || res.Existed != 1 {
		t.Fatalf("after SCRIPT FLUSH: %+v %v, want 1 enqueued 1 existed", res, err)
	}
}
