package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/redistest"
)

const testModel = "mimo-v2.6-flash"

var testBody = []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}`)

type bundle struct {
	t    *testing.T
	ctx  context.Context
	rdb  *redis.Client
	s    *Store
	insp *asynq.Inspector
}

func setup(t *testing.T) *bundle {
	t.Helper()
	rdb := redistest.New(t).Client()
	return &bundle{t: t, ctx: context.Background(), rdb: rdb, s: New(rdb, time.Hour), insp: asynq.NewInspectorFromRedisClient(rdb)}
}

// submit writes a single job and returns its ID.
func (b *bundle) submit() string {
	b.t.Helper()
	id := NewID()
	if _, err := b.s.Submit(b.ctx, NewJob{ID: id, Queue: job.QueueInteractive, Model: testModel, Body: testBody,
		SubmittedAt: time.Now()}); err != nil {
		b.t.Fatal(err)
	}
	return id
}

// batch writes a batch of n lines, every line enqueued unless only the
// first enqueued of them are, and returns its ID and job IDs.
func (b *bundle) batch(id string, n, enqueued int, seal bool) []string {
	b.t.Helper()
	now := time.Now()
	cb, err := b.s.CreateBatch(b.ctx, BatchSpec{ID: id, Queue: job.QueueBatch, Source: "t.jsonl", SHA256: "x", Total: n}, now)
	if err != nil {
		b.t.Fatal(err)
	}
	lines := make([]Line, enqueued)
	ids := make([]string, n)
	for i := range n {
		ids[i] = batchJobID(id, cb.CreatedMs, i)
		if i < enqueued {
			lines[i] = Line{Index: i, CustomID: fmt.Sprintf("c%d", i), Model: testModel, Body: testBody}
		}
	}
	if err := b.s.EnqueueLines(b.ctx, id, job.QueueBatch, cb.CreatedMs, lines, now); err != nil {
		b.t.Fatal(err)
	}
	if seal {
		if _, err := b.s.Seal(b.ctx, id, now); err != nil {
			b.t.Fatal(err)
		}
	}
	return ids
}

func (b *bundle) begin(id string) Begun {
	b.t.Helper()
	bg, err := b.s.Begin(b.ctx, id, NewLease(), "w", time.Now())
	if err != nil {
		b.t.Fatal(err)
	}
	return bg
}

func (b *bundle) finish(d Delivery, o Outcome) Finished {
	b.t.Helper()
	f, err := b.s.Finish(b.ctx, d, o, time.Now())
	if err != nil {
		b.t.Fatal(err)
	}
	return f
}

func (b *bundle) getBatch(id string) *job.Batch {
	b.t.Helper()
	bt, err := b.s.GetBatch(b.ctx, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return bt
}

func (b *bundle) state(id string) job.State {
	b.t.Helper()
	st, err := b.s.State(b.ctx, id)
	if errors.Is(err, ErrNotFound) {
		return ""
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

var succeeded = Outcome{State: job.StateSucceeded, Counted: true, Result: json.RawMessage(`{"choices":[]}`), StatusCode: 200,
	Usage: &job.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}}

var died = Outcome{State: job.StateDead, Counted: true, StatusCode: 400,
	Error: &job.Error{StatusCode: 400, Code: "invalid_request", Message: "bad", Class: job.ClassTerminal}}

func TestBatchJobsShareTheBatchSlot(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		id := fmt.Sprintf("batch-%d", r.Uint64())
		created := r.Int64N(1 << 47)
		index := r.IntN(1 << 31)
		jid := batchJobID(id, created, index)
		if tagOf(jid) != batchTag(id) {
			t.Fatalf("job %d of batch %s (created %d): tag %q, batch tag %q", index, id, created, tagOf(jid), batchTag(id))
		}
	}
	// Job IDs sort in line order, and single jobs spread over tags.
	a, b := batchJobID("b", 1000, 1), batchJobID("b", 1000, 2)
	if a >= b {
		t.Errorf("job IDs %s, %s not in line order", a, b)
	}
	tags := map[string]bool{}
	for range 100 {
		tags[tagOf(NewID())] = true
	}
	if len(tags) < 95 {
		t.Errorf("100 single jobs share %d tags: they would crowd one cluster slot", len(tags))
	}
	if got := tagOf("not-a-ulid"); got != "not-a-ulid" {
		t.Errorf("tag of a non-ULID id = %q", got)
	}
}

func TestSubmitWritesRecordThenTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit()
	j, err := b.s.Get(b.ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != job.StateQueued || j.Queue != job.QueueInteractive || j.Model != testModel || string(j.Request) != string(testBody) {
		t.Errorf("record: %+v", j)
	}
	info, err := b.insp.GetTaskInfo(job.AsynqQueue(job.QueueInteractive, testModel), id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Timeout != TaskTimeout || info.MaxRetry != TaskMaxRetry {
		t.Errorf("task timeout %s, max retry %d; want %s and %d (asynq must neither end a delivery mimoq still waits in, nor archive a job)",
			info.Timeout, info.MaxRetry, TaskTimeout, TaskMaxRetry)
	}
	var p job.Payload
	if err := json.Unmarshal(info.Payload, &p); err != nil || p.JobID != id || p.Model != testModel {
		t.Errorf("task payload %s: %+v, %v", info.Payload, p, err)
	}
	// Submitting the same job again writes nothing twice.
	if st, err := b.s.Submit(b.ctx, NewJob{ID: id, Queue: job.QueueInteractive, Model: testModel, Body: testBody,
		SubmittedAt: time.Now()}); err != nil || st != job.StateQueued {
		t.Errorf("second submit: %s, %v", st, err)
	}
	if q, err := b.insp.GetQueueInfo(job.AsynqQueue(job.QueueInteractive, testModel)); err != nil || q.Pending != 1 {
		t.Errorf("queue after a second submit: %+v, %v", q, err)
	}
}

func TestBeginVerdicts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()

	// Missing: nothing to run.
	if bg := b.begin(NewID()); bg.Verdict != Missing {
		t.Errorf("missing record: %+v", bg)
	}
	// Run, with the request.
	id := b.submit()
	lease := NewLease()
	bg, err := b.s.Begin(b.ctx, id, lease, "w1", now)
	if err != nil || bg.Verdict != Run || string(bg.Body) != string(testBody) || bg.Model != testModel || bg.Interrupted {
		t.Fatalf("first begin: %+v, %v", bg, err)
	}
	// The same call again (a reply lost): the same delivery, no interrupt.
	if again, err := b.s.Begin(b.ctx, id, lease, "w1", now); err != nil || again.Verdict != Run || again.Interrupted {
		t.Errorf("replayed begin: %+v, %v", again, err)
	}
	// Another delivery while it runs: the first was interrupted.
	bg2, err := b.s.Begin(b.ctx, id, NewLease(), "w2", now)
	if err != nil || bg2.Verdict != Run || !bg2.Interrupted || bg2.Interrupts != 1 || bg2.Attempts != 0 {
		t.Errorf("takeover: %+v, %v", bg2, err)
	}
	// Retrying, not due: not yet, until it is.
	due := now.Add(2 * time.Minute).Truncate(time.Millisecond)
	b.finish(bg2.Delivery, Outcome{State: job.StateRetrying, Counted: true, DueAt: due})
	if bg := b.begin(id); bg.Verdict != NotYet || !bg.DueAt.Equal(due) {
		t.Errorf("early delivery: %+v, want not before %s", bg, due)
	}
	if bg, err := b.s.Begin(b.ctx, id, NewLease(), "w3", due); err != nil || bg.Verdict != Run || bg.Attempts != 1 {
		t.Errorf("delivery once due: %+v, %v", bg, err)
	}
	// Final: never again.
	id2 := b.submit()
	b.finish(b.begin(id2).Delivery, succeeded)
	if bg := b.begin(id2); bg.Verdict != Final || bg.State != job.StateSucceeded || bg.Attempts != 1 {
		t.Errorf("redelivery of a succeeded job: %+v", bg)
	}
	j, err := b.s.Get(b.ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	var interrupted int
	for _, h := range j.History {
		if h.Reason == "interrupted" {
			interrupted++
		}
	}
	if interrupted != 1 {
		t.Errorf("history %+v: want one interruption", j.History)
	}
}

// TestFinishIsFencedByLease: only the delivery that holds the job writes,
// once. A write of an older delivery (redelivered meanwhile) or a replayed
// write changes nothing, and counts nothing twice.
func TestFinishIsFencedByLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("fence", 1, 1, true)
	old := b.begin(ids[0]).Delivery
	cur := b.begin(ids[0]).Delivery // a redelivery after a lost lease
	if f := b.finish(old, succeeded); f.Written != Stale || f.State != job.StateRunning {
		t.Errorf("old delivery's write: %+v, want stale", f)
	}
	if f := b.finish(cur, died); f.Written != Applied || f.State != job.StateDead || !f.BatchEnded {
		t.Errorf("current delivery's write: %+v", f)
	}
	if f := b.finish(cur, died); f.Written != Replayed || f.State != job.StateDead || f.BatchEnded {
		t.Errorf("replayed write: %+v", f)
	}
	if f := b.finish(cur, succeeded); f.Written != Replayed || f.State != job.StateDead {
		t.Errorf("second outcome of one delivery: %+v, want it ignored", f)
	}
	bt := b.getBatch("fence")
	if bt.Dead != 1 || bt.Succeeded != 0 || bt.State != job.BatchDone || !bt.Over() {
		t.Errorf("batch: %+v", bt)
	}
}

func TestBatchCountsFollowTransitions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("counts", 5, 5, true)
	b.finish(b.begin(ids[0]).Delivery, succeeded)
	b.finish(b.begin(ids[1]).Delivery, succeeded)
	b.finish(b.begin(ids[2]).Delivery, died)
	running := b.begin(ids[3]).Delivery
	bt := b.getBatch("counts")
	if bt.Succeeded != 2 || bt.Dead != 1 || bt.Pending != 2 || bt.Usage.TotalTokens != 14 || bt.Over() {
		t.Fatalf("batch after three outcomes: %+v", bt)
	}
	// Cancel: the queued job is canceled, the running one finishes.
	n, err := b.s.CancelBatch(b.ctx, "counts", time.Now())
	if err != nil || n != 1 {
		t.Fatalf("cancel: %d, %v; want 1", n, err)
	}
	if bt := b.getBatch("counts"); bt.State != job.BatchCanceled || bt.Canceled != 1 || bt.Over() {
		t.Fatalf("canceled batch with a job running: %+v", bt)
	}
	if f := b.finish(running, succeeded); !f.BatchEnded {
		t.Errorf("the running job's end did not end the canceled batch: %+v", f)
	}
	bt = b.getBatch("counts")
	if bt.State != job.BatchCanceled || !bt.Over() || bt.Succeeded+bt.Dead+bt.Canceled != bt.Total {
		t.Fatalf("batch at its end: %+v", bt)
	}
	if ttl := b.rdb.TTL(b.ctx, batchKey("counts")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("ended batch's TTL %s, want the result TTL", ttl)
	}
	// Requeue the dead one: taken out of the count, the batch is open
	// again until it ends anew.
	dead, err := b.s.Get(b.ctx, ids[2], true)
	if err != nil {
		t.Fatal(err)
	}
	res, st, err := b.s.Requeue(b.ctx, DeadJob{ID: ids[2], BatchID: "counts", Queue: job.QueueBatch, Model: testModel,
		DeadAt: dead.FinishedAt}, time.Now())
	if err != nil || res != Requeued || st != job.StateQueued {
		t.Fatalf("requeue: %v %s %v", res, st, err)
	}
	bt = b.getBatch("counts")
	if bt.Dead != 0 || bt.Over() || bt.Pending != 1 {
		t.Fatalf("batch after a requeue: %+v", bt)
	}
	if ttl := b.rdb.TTL(b.ctx, batchKey("counts")).Val(); ttl != -1 {
		t.Errorf("reopened batch's TTL %s, want none", ttl)
	}
	bg := b.begin(ids[2])
	if bg.Attempts != 0 || bg.Requeues != 1 {
		t.Errorf("requeued job begins with %+v, want a fresh budget", bg)
	}
	if f := b.finish(bg.Delivery, succeeded); !f.BatchEnded {
		t.Errorf("requeued job's success did not end the batch again: %+v", f)
	}
	if bt := b.getBatch("counts"); bt.Succeeded != 4 || bt.Dead != 0 || bt.Canceled != 1 || !bt.Over() {
		t.Errorf("batch at its second end: %+v", bt)
	}
}

// TestCancelCompletesAnInterruptedSubmit: a submit that stopped after its
// first chunk, then canceled, ends: every line is final (the ones never
// enqueued as canceled), and a submit that carries on late writes nothing.
func TestCancelCompletesAnInterruptedSubmit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const total, enqueued = 2500, 1000
	ids := b.batch("partial", total, enqueued, false)
	n, err := b.s.CancelBatch(b.ctx, "partial", time.Now())
	if err != nil || n != total {
		t.Fatalf("cancel: %d, %v; want %d", n, err, total)
	}
	bt := b.getBatch("partial")
	if bt.State != job.BatchCanceled || !bt.Over() || bt.Canceled != total || bt.Pending != 0 {
		t.Fatalf("batch: %+v", bt)
	}
	// The submit, carrying on, writes nothing more.
	cb, err := b.s.CreateBatch(b.ctx, BatchSpec{ID: "partial", Queue: job.QueueBatch, SHA256: "x", Total: total}, time.Now())
	if err != nil || cb.State != job.BatchCanceled {
		t.Fatalf("resubmit: %+v, %v", cb, err)
	}
	if err := b.s.EnqueueLines(b.ctx, "partial", job.QueueBatch, cb.CreatedMs, []Line{{Index: 2000, CustomID: "late",
		Model: testModel, Body: testBody}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if st := b.state(ids[2000]); st != job.StateCanceled {
		t.Errorf("a line written after the cancel is %q, want canceled", st)
	}
	lines, never := 0, 0
	if err := b.s.Results(b.ctx, "partial", false, func(l *job.ResultLine) error {
		lines++
		if l.Error == nil || l.Error.Code != "canceled" {
			t.Errorf("result line %+v, want canceled", l)
		}
		if l.CustomID == "" {
			never++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if lines != total || never != total-enqueued {
		t.Errorf("results: %d lines, %d never enqueued; want %d and %d", lines, never, total, total-enqueued)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if _, err := b.s.WaitBatch(ctx, "partial"); err != nil {
		t.Errorf("WaitBatch of the canceled batch: %v", err)
	}
}

// TestRequeueWhileTheDyingDeliveryFinishes: an operator requeues a dead
// letter while the delivery that wrote it is still finishing (its task
// still active in asynq). Whatever that delivery does next — write its
// outcome again (a retried write), count the job, go on — changes nothing:
// the requeued job runs, and its success is counted.
func TestRequeueWhileTheDyingDeliveryFinishes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("race", 2, 2, true)
	b.finish(b.begin(ids[0]).Delivery, succeeded)
	dying := b.begin(ids[1]).Delivery
	if f := b.finish(dying, died); !f.BatchEnded {
		t.Fatalf("dead job did not end the batch: %+v", f)
	}
	dead, _ := b.s.Get(b.ctx, ids[1], true)

	res, _, err := b.s.Requeue(b.ctx, DeadJob{ID: ids[1], BatchID: "race", Queue: job.QueueBatch, Model: testModel,
		DeadAt: dead.FinishedAt}, time.Now())
	if err != nil || res != Requeued {
		t.Fatalf("requeue: %v %v", res, err)
	}
	// The dying delivery retries its write (its reply was lost).
	if f := b.finish(dying, died); f.Written != Stale || f.State != job.StateQueued {
		t.Errorf("the dying delivery's late write: %+v, want stale (the job is queued)", f)
	}
	if bt := b.getBatch("race"); bt.Dead != 0 || bt.Over() {
		t.Fatalf("batch after the requeue and the late write: %+v", bt)
	}
	bg := b.begin(ids[1])
	if bg.Verdict != Run {
		t.Fatalf("requeued job: %+v, want it to run", bg)
	}
	b.finish(bg.Delivery, succeeded)
	bt := b.getBatch("race")
	if bt.Succeeded != 2 || bt.Dead != 0 || !bt.Over() || bt.State != job.BatchDone {
		t.Errorf("batch: %+v, want 2 succeeded and done", bt)
	}
}

func TestRequeueOfAnExpiredRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("expired", 1, 1, true)
	b.finish(b.begin(ids[0]).Delivery, died)
	dead, _ := b.s.Get(b.ctx, ids[0], true)
	if err := b.rdb.Del(b.ctx, jobKey(ids[0]), bodyKey(ids[0])).Err(); err != nil {
		t.Fatal(err)
	}
	d := DeadJob{ID: ids[0], BatchID: "expired", CustomID: "c0", Queue: job.QueueBatch, Model: testModel,
		Request: testBody, DeadAt: dead.FinishedAt}
	if res, st, err := b.s.Requeue(b.ctx, d, time.Now()); err != nil || res != Recreated || st != job.StateQueued {
		t.Fatalf("requeue: %v %s %v", res, st, err)
	}
	if bt := b.getBatch("expired"); bt.Dead != 0 || bt.Over() {
		t.Errorf("batch: %+v", bt)
	}
	bg := b.begin(ids[0])
	if bg.Verdict != Run || string(bg.Body) != string(testBody) {
		t.Errorf("recreated job: %+v", bg)
	}
	// The same requeue again (the first was interrupted before deleting
	// the dead letter): already done.
	if res, _, err := b.s.Requeue(b.ctx, d, time.Now()); err != nil || res != AlreadyRequeued {
		t.Errorf("second requeue: %v %v", res, err)
	}
}

// TestRequeueRefusesAnotherDeath: a dead letter read before the job died
// again is not the job's death any more.
func TestRequeueRefusesAnotherDeath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit()
	b.finish(b.begin(id).Delivery, died)
	if res, st, err := b.s.Requeue(b.ctx, DeadJob{ID: id, Queue: job.QueueInteractive, Model: testModel,
		DeadAt: time.Now().Add(-time.Hour)}, time.Now()); err != nil || res != NotDead || st != job.StateDead {
		t.Errorf("requeue of an older death: %v %s %v", res, st, err)
	}
}

// TestScriptsSurviveAFlushedCache: every transition still works when Redis
// has lost its script cache (a restart, a failover).
func TestScriptsSurviveAFlushedCache(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("flush", 3, 3, false)
	if err := b.rdb.ScriptFlush(b.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.s.Seal(b.ctx, "flush", time.Now()); err != nil {
		t.Fatal(err)
	}
	b.rdb.ScriptFlush(b.ctx)
	bg := b.begin(ids[0])
	b.rdb.ScriptFlush(b.ctx)
	b.finish(bg.Delivery, succeeded)
	b.rdb.ScriptFlush(b.ctx)
	if _, err := b.s.CancelBatch(b.ctx, "flush", time.Now()); err != nil {
		t.Fatal(err)
	}
	if bt := b.getBatch("flush"); bt.Succeeded != 1 || bt.Canceled != 2 || !bt.Over() {
		t.Errorf("batch: %+v", bt)
	}
}

func TestListBatchesSkipsExpired(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 5 {
		b.batch(fmt.Sprintf("list-%d", i), 1, 1, true)
	}
	if err := b.rdb.Del(b.ctx, batchKey("list-3")).Err(); err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	for {
		page, next, err := b.s.ListBatches(b.ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, bt := range page {
			got = append(got, bt.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(got) != "[list-4 list-2 list-1 list-0]" {
		t.Errorf("listed %v", got)
	}
}

// taskExists reports whether asynq holds a task for job id of queue q.
func (b *bundle) taskExists(q, id string) bool {
	b.t.Helper()
	n, err := b.rdb.Exists(b.ctx, asynqwire.TaskKey(job.AsynqQueue(q, testModel), id)).Result()
	if err != nil {
		b.t.Fatal(err)
	}
	return n == 1
}
