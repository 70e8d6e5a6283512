package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
)

// The regression tests of the lifecycle review: each drives the real
// binary against the mock and a private Redis, through the producer API
// and the commands a user has, so that it runs against any version.

// recordKey finds the Redis key of job id's record as an operator would,
// with redis-cli's KEYS and TYPE: the one hash among the job's keys (its
// body is a string beside it).
func (f *fleet) recordKey(id string) string {
	f.t.Helper()
	keys, err := f.rdb.Keys(context.Background(), "mimoq:job:*"+id+"*").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, k := range keys {
		if typ, _ := f.rdb.Type(context.Background(), k).Result(); typ == "hash" {
			return k
		}
	}
	f.t.Fatalf("no record key for job %s among %v", id, keys)
	return ""
}

func (f *fleet) mockRequests() int64 {
	f.t.Helper()
	var st struct {
		TotalRequests int64 `json:"total_requests"`
	}
	f.mock.Stats(f.t, &st)
	return st.TotalRequests
}

// TestExpiredRecordIsNeverCalled (review hole 4): a batch canceled before
// any worker ran, whose records then expired (MIMOQ_RESULT_TTL), leaves its
// tasks in asynq; a worker that takes them must not call the API for a job
// whose record is gone.
func TestExpiredRecordIsNeverCalled(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.env = append(f.env, "MIMOQ_RESULT_TTL=1s")
	path := writeLines(t, batchLine("a", "mimo-v2.6-flash", "one"), batchLine("b", "mimo-v2.6-flash", "two"),
		batchLine("c", "mimo-v2.6-flash", "three"))
	f.submitBatchFile(path, "gone")
	if _, stderr, code := f.run("batch", "cancel", "gone"); code != 0 {
		t.Fatalf("batch cancel: exit %d: %s", code, stderr)
	}
	// The records expire (and the batch's with them).
	Eventually(t, 10*time.Second, "records expired", func() bool {
		keys, _ := f.rdb.Keys(context.Background(), "mimoq:job:*").Result()
		return len(keys) == 0
	})
	pending := f.pendingTasks("batch:mimo-v2.6-flash")
	if pending != 3 {
		t.Fatalf("%d tasks left in asynq, want the 3 of the canceled jobs", pending)
	}
	f.startWorker()
	Eventually(t, 20*time.Second, "the tasks taken", func() bool { return f.pendingTasks("batch:mimo-v2.6-flash") == 0 })
	time.Sleep(time.Second) // a call in flight would have reached the mock by now
	if n := f.mockRequests(); n != 0 {
		t.Errorf("the API was called %d times for jobs whose records had expired", n)
	}
	if keys, _ := f.rdb.Keys(context.Background(), "mimoq:job:*").Result(); len(keys) != 0 {
		t.Errorf("records written again: %v", keys)
	}
}

// pendingTasks counts the tasks asynq holds in queue, by any state but
// archived.
func (f *fleet) pendingTasks(queue string) int {
	f.t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetQueueInfo(queue)
	if err != nil {
		return 0
	}
	return info.Pending + info.Active + info.Scheduled + info.Retry
}

// TestStorageErrorsBackOff (review hole 5): a job whose record cannot be
// read (here: its key holds a value of the wrong type, a persistent
// error) neither spins through asynq's retries nor becomes a dead letter:
// mimoq's own storage errors back off.
func TestStorageErrorsBackOff(t *testing.T) {
	t.Parallel()
	f := setup(t)
	id := f.submit(1, "mimo-v2.6-flash", enqueue.QueueInteractive)[0]
	key := f.recordKey(id)
	if err := f.rdb.Del(context.Background(), key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.Set(context.Background(), key, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f.startWorker()
	time.Sleep(8 * time.Second)
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetTaskInfo("interactive:mimo-v2.6-flash", id)
	if err != nil {
		t.Fatalf("the task is gone: %v", err)
	}
	if info.Retried > 3 || info.State == asynq.TaskStateArchived {
		t.Errorf("after 8 s of a persistent storage error the task was retried %d times and is %s: want a backoff (at most 3)",
			info.Retried, info.State)
	}
	if n := f.deadCount(dlq.Filter{}); n != 0 {
		t.Errorf("a storage error made %d dead letters", n)
	}
	if n := f.mockRequests(); n != 0 {
		t.Errorf("the API was called %d times for a job whose record could not be read", n)
	}
}

// TestCorruptBodyIsDeadLettered (regression: CI run of 2026-12-02): a job
// whose stored request body is not JSON (the key overwritten by hand) is
// dead-lettered with a clear error, without a call and without a panic;
// before the fix, the worker panicked on every delivery and the dead
// letter could not be stored.
func TestCorruptBodyIsDeadLettered(t *testing.T) {
	t.Parallel()
	f := setup(t)
	id := f.submit(1, "mimo-v2.6-flash", enqueue.QueueInteractive)[0]
	if err := f.rdb.Set(context.Background(), f.recordKey(id)+":body", "not json", 0).Err(); err != nil {
		t.Fatal(err)
	}
	w := f.startWorker()
	jobs := f.waitFinal([]string{id}, 30*time.Second)
	if j := jobs[id]; j.State != enqueue.StateDead || j.Error == nil || j.Error.Class != "terminal" {
		t.Fatalf("job %+v, error %+v: want dead, terminal", j, j.Error)
	}
	// The dead letter follows the record's final state (written next).
	Eventually(t, 10*time.Second, "the job's dead letter", func() bool {
		_, err := dlq.New(f.rdb).Get(context.Background(), id)
		return err == nil
	})
	if n := f.mockRequests(); n != 0 {
		t.Errorf("the API was called %d times for a body that is not JSON", n)
	}
	if out := w.Output(); strings.Contains(out, "panic") {
		t.Errorf("the worker panicked:\n%s", out)
	}
}

// TestSweeperSkipsATaskItCannotMove (review hole 5): one archived task the
// sweeper cannot move into the dead-letter store (its record cannot be
// read) is reported and skipped; the sweep goes on with the rest.
func TestSweeperSkipsATaskItCannotMove(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ids := f.submit(3, "mimo-v2.6-flash", enqueue.QueueInteractive)
	insp := asynq.NewInspectorFromRedisClient(f.rdb)
	for _, id := range ids {
		// asynq archived them by itself (a retry budget of an earlier
		// version run out), the broken one first.
		if err := insp.ArchiveTask("interactive:mimo-v2.6-flash", id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // archive times are whole seconds: keep the order
	}
	key := f.recordKey(ids[0])
	f.rdb.Del(context.Background(), key)
	f.rdb.Set(context.Background(), key, "not a hash", 0)
	f.startWorker()
	Eventually(t, 30*time.Second, "the readable archived tasks dead-lettered", func() bool {
		return f.deadCount(dlq.Filter{}) == 2
	})
	for _, id := range ids[1:] {
		if _, err := dlq.New(f.rdb).Get(context.Background(), id); err != nil {
			t.Errorf("archived job %s not in the dead-letter store: %v", id, err)
		}
	}
	if info, err := insp.GetTaskInfo("interactive:mimo-v2.6-flash", ids[0]); err != nil || info.State != asynq.TaskStateArchived {
		t.Errorf("the task that could not be moved: %+v, %v; want it left archived for the next sweep", info, err)
	}
}

// TestPauseCoversEveryLaneOfTheModel (review hole 7): a worker that consumes
// only the interactive queue, told 401 by the API, pauses the model
// everywhere: batch jobs of that model wait too.
func TestPauseCoversEveryLaneOfTheModel(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for i, e := range f.env {
		if strings.HasPrefix(e, "MIMO_API_KEY=") {
			f.env[i] = "MIMO_API_KEY=sk-wrong-key"
		}
	}
	id := f.submit(1, "mimo-v2.6-pro", enqueue.QueueInteractive)[0]
	addr := FreeAddr(t)
	Start(t, bin, append(append([]string{}, f.env...), "MIMOQ_HTTP_ADDR="+addr), "worker", "--queues", "interactive=1")
	WaitHTTP(t, "http://"+addr+"/readyz", 30*time.Second)
	f.waitFinal([]string{id}, 30*time.Second)
	for _, q := range []string{"interactive", "batch"} {
		// asynq keeps a queue's pause flag in its own key, also for a
		// queue that has never held a task.
		Eventually(t, 10*time.Second, fmt.Sprintf("asynq queue %s:mimo-v2.6-pro paused", q), func() bool {
			return f.rdb.Exists(context.Background(), "asynq:{"+q+":mimo-v2.6-pro}:paused").Val() == 1
		})
	}
}

// TestTasksOutliveMimoqsWaits (review hole 6): the asynq task of a job must
// neither end (asynq's default 30-minute deadline cancels a call and hands
// the task out again) nor run out of retries (asynq archives a job the API
// never refused) while mimoq waits for a slot, a permit or a due time.
func TestTasksOutliveMimoqsWaits(t *testing.T) {
	t.Parallel()
	f := setup(t)
	stdout, stderr, code := f.run("submit", "--model", "mimo-v2.6-flash", "--prompt", "hi")
	if code != 0 {
		t.Fatalf("submit: exit %d: %s", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	info, err := asynq.NewInspectorFromRedisClient(f.rdb).GetTaskInfo("interactive:mimo-v2.6-flash", id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Timeout < 24*time.Hour || info.MaxRetry < 1<<30 {
		t.Errorf("task timeout %s, max retry %d: asynq would end a delivery waiting in mimoq, or archive the job",
			info.Timeout, info.MaxRetry)
	}
}
