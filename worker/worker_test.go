package worker

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/internal/ops"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/redistest"
)

const testModel = "mimo-v2.6-flash"

var testBody = []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":16}`)

// bundle is one test's world: a private Redis, the mock API in process,
// and the record store a producer writes through.
type bundle struct {
	t       *testing.T
	ctx     context.Context
	rdb     *redis.Client
	mock    *mockapi.Server
	url     string
	records *records.Store
}

func setup(t *testing.T) *bundle {
	t.Helper()
	rdb := redistest.New(t).Client()
	mock, err := mockapi.New(mockapi.Config{Key: "sk-test", RPM: mockapi.Unlimited, TPM: mockapi.Unlimited})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mock)
	t.Cleanup(func() { srv.Close(); mock.Close() })
	return &bundle{t: t, ctx: context.Background(), rdb: rdb, mock: mock, url: srv.URL + "/v1", records: records.New(rdb, time.Hour)}
}

// start runs a worker with cfg (Redis and the mock filled in) until the
// test ends.
func (b *bundle) start(cfg Config) *Worker {
	b.t.Helper()
	cfg.Redis, cfg.BaseURL, cfg.APIKey = b.rdb, b.url, "sk-test"
	if cfg.Limit == (Limit{}) {
		cfg.Limit = Limit{RPM: -1, TPM: -1}
	}
	if cfg.CatalogInterval == 0 {
		// These tests count the mock's requests: no GET /models among them.
		cfg.CatalogInterval = -1
	}
	w, err := New(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	stopped := make(chan struct{})
	var runErr error
	go func() { runErr = w.Run(ctx); close(stopped) }()
	select {
	case <-w.Ready():
	case <-stopped:
		cancel()
		b.t.Fatalf("worker did not start: %v", runErr)
	}
	b.t.Cleanup(func() {
		cancel()
		<-stopped
		if runErr != nil {
			b.t.Errorf("worker: %v", runErr)
		}
	})
	return w
}

func (b *bundle) submit() string {
	b.t.Helper()
	id := records.NewID()
	if _, err := b.records.Submit(b.ctx, records.NewJob{ID: id, Queue: job.QueueInteractive, Model: testModel, Body: testBody,
		SubmittedAt: time.Now()}); err != nil {
		b.t.Fatal(err)
	}
	return id
}

func (b *bundle) waitFinal(ids []string, d time.Duration) map[string]*job.Job {
	b.t.Helper()
	out := map[string]*job.Job{}
	deadline := time.Now().Add(d)
	for _, id := range ids {
		for {
			j, err := b.records.Get(b.ctx, id, false)
			if err != nil {
				b.t.Fatal(err)
			}
			if j.State.Final() {
				out[id] = j
				break
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("job %s is %s after %s", id, j.State, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out
}

// TestEarlyDeliveryWaitsForTheDueTime (review hole 3): a task delivered
// long before its job's recorded due time — its worker died between
// storing the retry and handing the task back, and asynq gave the task
// out again at once — is not called before that time, however it is
// delivered; it goes back to asynq until then.
func TestEarlyDeliveryWaitsForTheDueTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit()
	bg, err := b.records.Begin(b.ctx, id, records.NewLease(), "dead-worker", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(2 * time.Minute)
	if _, err := b.records.Finish(b.ctx, bg.Delivery, records.Outcome{State: job.StateRetrying, Counted: true, DueAt: due},
		time.Now()); err != nil {
		t.Fatal(err)
	}
	// The task is still pending: the delivery that stored the retry never
	// handed it back.
	b.start(Config{})
	time.Sleep(5 * time.Second)
	if n := b.mock.Stats().TotalRequests; n != 0 {
		t.Fatalf("the API was called %d times, %s before the job's due time", n, time.Until(due).Round(time.Second))
	}
	info, err := asynq.NewInspectorFromRedisClient(b.rdb).GetTaskInfo(job.AsynqQueue(job.QueueInteractive, testModel), id)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateRetry || info.NextProcessAt.Before(due.Add(-time.Second)) {
		t.Errorf("task %s, next at %s; want it handed back until %s", info.State, info.NextProcessAt, due)
	}
	if st, _ := b.records.State(b.ctx, id); st != job.StateRetrying {
		t.Errorf("job is %s, want still retrying", st)
	}
}

// TestLongWaitsGoBackWithoutAnAttempt (review hole 6): jobs that wait for
// the rate limit longer than MaxHold go back to their queue, burning no
// attempt, instead of waiting into asynq's deadline; no call is ever cut
// off and made again.
func TestLongWaitsGoBackWithoutAnAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []string
	for range 6 {
		ids = append(ids, b.submit())
	}
	// One call a second for six jobs held at once, each holding at most
	// 1 s: most go back, some several times.
	b.start(Config{Limit: Limit{RPM: 60, TPM: -1}, MaxHold: time.Second, Concurrency: 10})
	jobs := b.waitFinal(ids, time.Minute)
	for id, j := range jobs {
		if j.State != job.StateSucceeded || j.Attempts != 1 {
			t.Errorf("job %s: %s after %d attempts, want succeeded after 1", id, j.State, j.Attempts)
		}
	}
	st := b.mock.Stats()
	if st.TotalRequests != 6 || st.MaxCallsPerJob != 1 || st.Duplicates != 0 {
		t.Errorf("mock saw %d calls, at most %d per job, %d duplicates; want each job called once",
			st.TotalRequests, st.MaxCallsPerJob, st.Duplicates)
	}
}

// TestTaskOfAnEarlierVersionBecomesADeadLetter: a task written by a version
// whose job records had another layout (the request was in the task) is
// neither run without its record nor dropped: it is kept as a dead letter
// with its request, and a requeue runs it, its record in today's layout.
func TestTaskOfAnEarlierVersionBecomesADeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := records.NewID()
	legacy := `{"job_id":"` + id + `","custom_id":"old-1","queue":"interactive","model":"mimo-v2.6-flash","body":` +
		string(testBody) + `,"submitted_at":"2026-11-30T10:00:00Z"}`
	if _, err := asynqwire.EnqueueMany(b.ctx, b.rdb, []asynqwire.Task{{Type: job.TaskType, Payload: []byte(legacy), ID: id,
		Queue: job.AsynqQueue(job.QueueInteractive, testModel), MaxRetry: 1000}}); err != nil {
		t.Fatal(err)
	}
	b.start(Config{})
	store := dlq.New(b.rdb)
	var rec *dlq.Record
	deadline := time.Now().Add(20 * time.Second)
	for rec == nil {
		rec, _ = store.Get(b.ctx, id)
		if time.Now().After(deadline) {
			t.Fatal("the earlier version's task never became a dead letter")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec.ErrorCode != "record_moved" || string(rec.Request) != string(testBody) || rec.CustomID != "old-1" {
		t.Errorf("dead letter %+v", rec)
	}
	if n := b.mock.Stats().TotalRequests; n != 0 {
		t.Errorf("the API was called %d times before the requeue", n)
	}
	if res, err := ops.New(b.rdb).Requeue(b.ctx, ops.Selection{IDs: []string{id}}, ops.Options{}); err != nil || res.Done != 1 {
		t.Fatalf("requeue: %+v %v", res, err)
	}
	j := b.waitFinal([]string{id}, 30*time.Second)[id]
	if j.State != job.StateSucceeded || j.CustomID != "old-1" {
		t.Errorf("requeued job: %+v", j)
	}
}

// TestReconcilerBringsALostJobBack: a job whose task was lost (a failover
// with asynchronous replication) is found by the fleet's reconciler, given
// a task again from its record, and runs; the repair shows in the totals
// `mimoq stats` reads.
func TestReconcilerBringsALostJobBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit()
	if err := asynq.NewInspectorFromRedisClient(b.rdb).DeleteTask(job.AsynqQueue(job.QueueInteractive, testModel), id); err != nil {
		t.Fatal(err)
	}
	for range 2 { // two workers: one of them takes the fleet's turn
		b.start(Config{ReconcileInterval: 200 * time.Millisecond, ReconcileGrace: time.Millisecond})
	}
	j := b.waitFinal([]string{id}, 30*time.Second)[id]
	if j.State != job.StateSucceeded || j.Attempts != 1 {
		t.Errorf("lost job: %s after %d attempts, want succeeded after 1", j.State, j.Attempts)
	}
	totals, err := b.records.ReconcilerStats(b.ctx)
	if err != nil || totals.TasksRecreated != 1 {
		t.Errorf("reconciler totals %+v, %v; want 1 task made again", totals, err)
	}
}
