package lane

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/job"
)

func TestPauseResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const model = "mimo-v2.6-pro"
	rdb := b.redis.Client()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queues := []string{enqueue.QueueInteractive, enqueue.QueueBatch}
	lanes := NewLanes(rdb, insp, WithActor("worker"),
		WithLimits(Limit{}, map[string]Limit{model: {RPM: 50, TPM: 2000000}}))
	g := b.gate(GateConfig{})

	// Pausing queues that have never had a task works, and holds when
	// tasks arrive.
	changed, err := lanes.Pause(ctx, model, "401 authentication_failed")
	if err != nil || !changed {
		t.Fatalf("Pause = %v, %v; want true, nil", changed, err)
	}
	if changed, err := lanes.Pause(ctx, model, "again"); err != nil || changed {
		t.Fatalf("second Pause = %v, %v; want false, nil", changed, err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	for _, q := range queues {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(job.TaskType, []byte(`{}`)), asynq.Queue(job.AsynqQueue(q, model))); err != nil {
			t.Fatal(err)
		}
	}
	assertQueuesPaused(t, insp, queues, model, true)

	st, err := lanes.State(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusPaused || st.Reason != "401 authentication_failed" || st.PausedBy != "worker" ||
		time.Since(st.PausedSince) > time.Minute || st.Limit != (Limit{RPM: 50, TPM: 2000000}) {
		t.Errorf("State = %+v", st)
	}

	_, err = g.Wait(ctx, model, 0)
	var pe *PausedError
	if !errors.Is(err, ErrPaused) || !errors.As(err, &pe) || pe.Reason != "401 authentication_failed" {
		t.Fatalf("Wait on a paused lane = %v, want ErrPaused with the reason", err)
	}
	// Another model is not affected.
	if p, err := g.Wait(ctx, "mimo-v2.6-flash", 0); err != nil {
		t.Fatalf("Wait on another model: %v", err)
	} else {
		p.Done(0)
	}
	// The pause is in Redis: a process started later sees it.
	if _, err := b.gate(GateConfig{}).Wait(ctx, model, 0); !errors.Is(err, ErrPaused) {
		t.Errorf("Wait on a new Gate = %v, want ErrPaused", err)
	}

	changed, err = lanes.Resume(ctx, model)
	if err != nil || !changed {
		t.Fatalf("Resume = %v, %v; want true, nil", changed, err)
	}
	if changed, err := lanes.Resume(ctx, model); err != nil || changed {
		t.Fatalf("second Resume = %v, %v; want false, nil", changed, err)
	}
	assertQueuesPaused(t, insp, queues, model, false)
	if st, _ := lanes.State(ctx, model); st.Status != StatusRunning || st.Reason != "" {
		t.Errorf("State after Resume = %+v", st)
	}
	// g learns of the resume by its event, which may still be on its way:
	// until it arrives a Wait is refused at once, as it would be in a
	// worker (the job goes back and is picked up again).
	waitFor(t, func() bool {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		p, err := g.Wait(wctx, model, 0)
		if errors.Is(err, ErrPaused) {
			return false
		}
		if err != nil {
			t.Fatalf("Wait after Resume: %v", err)
		}
		p.Done(0)
		return true
	})
}

func assertQueuesPaused(t *testing.T, insp *asynq.Inspector, queues []string, model string, want bool) {
	t.Helper()
	for _, q := range queues {
		info, err := insp.GetQueueInfo(job.AsynqQueue(q, model))
		if err != nil {
			t.Fatalf("GetQueueInfo(%s): %v", job.AsynqQueue(q, model), err)
		}
		if info.Paused != want || info.Size != 1 {
			t.Errorf("queue %s: paused %v with %d tasks, want paused %v with its 1 task", info.Queue, info.Paused, info.Size, want)
		}
	}
}

// TestPauseWhileWaiting pauses a lane from another process while waiters of
// this one are blocked on the rate limit: they must get ErrPaused.
func TestPauseWhileWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	g := b.gate(GateConfig{Default: Limit{RPM: 1}}) // one request a minute
	p, err := g.Wait(ctx, "m", 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(0)

	const n = 5
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = g.Wait(wctx, "m", 0) })
	}
	waitFor(t, func() bool { return g.Stats().Models["m"].Waiting == n })
	if _, err := b.lanes().Pause(ctx, "m", "operator says so"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrPaused) {
			t.Errorf("waiter %d: %v, want ErrPaused", i, err)
		}
	}
	if s := g.Stats().Models["m"]; s.Refused != n {
		t.Errorf("Refused = %d, want %d", s.Refused, n)
	}
}

// TestPauseLearnedByRefresh covers a missed event: the state is re-read.
func TestPauseLearnedByRefresh(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	g := b.gate(GateConfig{Default: Limit{RPM: 1}, RefreshInterval: 50 * time.Millisecond})
	p, err := g.Wait(ctx, "m", 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Done(0)
	// Write the state as Pause does, without the event.
	if err := b.redis.Client().HSet(ctx, g.ks.state("m"), "status", StatusPaused, "reason", "quiet").Err(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := g.Wait(wctx, "m", 0); !errors.Is(err, ErrPaused) {
		t.Errorf("Wait = %v, want ErrPaused from the periodic re-read", err)
	}
}

func TestListOnePipeline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	lanes := b.lanes()
	g := b.gate(GateConfig{})
	if _, err := lanes.Pause(ctx, "a", "r"); err != nil {
		t.Fatal(err)
	}
	if err := g.Cooldown(ctx, "b", time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := lanes.List(ctx, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{StatusPaused, StatusCoolingDown, StatusRunning}
	for i, s := range got {
		if s.Status != want[i] || s.Limit != DefaultLimit {
			t.Errorf("List[%d] = %+v, want status %s and the default limit", i, s, want[i])
		}
	}
}
