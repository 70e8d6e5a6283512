package ops

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/records/recordstest"
	"github.com/mimoq/mimoq/internal/redistest"
)

// bulkN is how many dead letters TestRequeueBulk requeues. Raise it with
// MIMOQ_OPS_BULK_N (e.g. 100000) for a full-size run.
const bulkN = 20_000

type bundle struct {
	ctx     context.Context
	rdb     *redis.Client
	client  *enqueue.Client
	records *records.Store
	store   *dlq.Store
	insp    *asynq.Inspector
	ops     *Ops
}

func setup(t testing.TB) *bundle {
	t.Helper()
	rdb := redistest.New(t).Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	store := dlq.New(rdb)
	return &bundle{
		ctx: context.Background(), rdb: rdb, client: c, records: records.New(rdb, 0), store: store,
		insp: asynq.NewInspectorFromRedisClient(rdb), ops: New(rdb),
	}
}

// deadJob describes one job to kill.
type deadJob struct {
	batch, queue, model string
	submit              bool // through SubmitBatch, batch record and all
	status              int
	code, class         string
}

func (j deadJob) withDefaults() deadJob {
	if j.queue == "" {
		j.queue = enqueue.QueueBatch
	}
	if j.model == "" {
		j.model = "mimo-v2.6-flash"
	}
	if j.status == 0 && j.code == "" {
		j.status, j.code = 400, "invalid_request"
	}
	if j.class == "" {
		j.class = string(job.ClassTerminal)
	}
	return j
}

// kill makes a job die the way the worker does: record written, taken,
// finished dead (counted in its batch), dead-lettered. No asynq task is
// left (the worker's task completes when the job is dead-lettered). With
// j.submit the job is a line of a batch submitted with SubmitBatch.
func (b *bundle) kill(t testing.TB, j deadJob) job.Payload {
	t.Helper()
	j = j.withDefaults()
	var p job.Payload
	if j.batch != "" {
		p = b.submitBatch(t, j, 1)[0]
	} else {
		p = job.Payload{JobID: enqueue.NewID(), Queue: j.queue, Model: j.model}
		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, j.model)
		if _, err := b.records.Submit(b.ctx, records.NewJob{ID: p.JobID, Queue: j.queue, Model: j.model,
			Body: []byte(body), SubmittedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := b.insp.DeleteTask(job.AsynqQueue(p.Queue, p.Model), p.JobID); err != nil {
			t.Fatal(err)
		}
	}
	b.die(t, p, j)
	return p
}

// submitBatch submits a batch of n lines with ID j.batch, or "<j.batch>-N"
// when j.batch is taken, and returns their payloads, taking their tasks out
// of asynq as a worker does.
func (b *bundle) submitBatch(t testing.TB, j deadJob, n int) []job.Payload {
	t.Helper()
	models := make([]string, n)
	for i := range models {
		models[i] = j.model
	}
	return b.submitLines(t, j.batch, j.queue, models)
}

// submitLines submits a batch with ID id (or "<id>-N" when id is taken)
// and one line per model, and returns their payloads in line order, taking
// their tasks out of asynq as a worker does.
func (b *bundle) submitLines(t testing.TB, id, queue string, models []string) []job.Payload {
	t.Helper()
	var buf bytes.Buffer
	for i, m := range models {
		fmt.Fprintf(&buf, `{"custom_id":"c-%s-%d","body":{"model":%q,"messages":[{"role":"user","content":"hi"}]}}`+"\n",
			enqueue.NewID(), i, m)
	}
	base := id
	for i := 2; ; i++ {
		if _, err := b.client.GetBatch(b.ctx, id); errors.Is(err, enqueue.ErrNotFound) {
			break
		}
		id = base + "-" + strconv.Itoa(i)
	}
	bt, err := b.client.SubmitBatch(b.ctx, bytes.NewReader(buf.Bytes()), enqueue.BatchOptions{ID: id, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]job.Payload, len(models))
	for i, m := range models {
		out[i] = job.Payload{JobID: records.BatchJobID(id, bt.CreatedAt.UnixMilli(), i), BatchID: id, Queue: queue, Model: m}
		if err := b.insp.DeleteTask(job.AsynqQueue(queue, m), out[i].JobID); err != nil {
			t.Fatalf("line %d of batch %s has no task: %v", i, id, err)
		}
	}
	return out
}

// die does what the worker does when job p fails terminally.
func (b *bundle) die(t testing.TB, p job.Payload, j deadJob) {
	t.Helper()
	bg, err := b.records.Begin(b.ctx, p.JobID, records.NewLease(), "test", time.Now())
	if err != nil || bg.Verdict != records.Run {
		t.Fatalf("begin %s: %+v, %v", p.JobID, bg, err)
	}
	jerr := &job.Error{StatusCode: j.status, Code: j.code, Message: "boom", Class: job.Class(j.class)}
	entry := &job.Attempt{Attempt: 1, Start: time.Now().UTC(), StatusCode: j.status, ErrorCode: j.code, Class: job.Class(j.class)}
	if f, err := b.records.Finish(b.ctx, bg.Delivery, records.Outcome{State: job.StateDead, Counted: true, Entry: entry,
		Error: jerr, StatusCode: j.status}, time.Now()); err != nil || f.Written != records.Applied {
		t.Fatalf("finish %s: %+v, %v", p.JobID, f, err)
	}
	got, err := b.records.Get(b.ctx, p.JobID, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store.Put(b.ctx, dlq.FromJob(got)); err != nil {
		t.Fatal(err)
	}
}

// killBatch submits a batch of n lines and kills them all.
func (b *bundle) killBatch(t testing.TB, n int, j deadJob) []job.Payload {
	t.Helper()
	j = j.withDefaults()
	ps := b.submitBatch(t, j, n)
	for _, p := range ps {
		b.die(t, p, j)
	}
	return ps
}

// killN kills n jobs described by j (in one batch when j.batch is set)
// and returns their IDs.
func (b *bundle) killN(t testing.TB, n int, j deadJob) []string {
	t.Helper()
	j = j.withDefaults()
	ids := make([]string, n)
	if j.batch != "" {
		for i, p := range b.killBatch(t, n, j) {
			ids[i] = p.JobID
		}
		return ids
	}
	for i := range ids {
		ids[i] = b.kill(t, j).JobID
	}
	return ids
}

func (b *bundle) state(t testing.TB, id string) job.State {
	t.Helper()
	st, err := b.records.State(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// recordKey finds the Redis key of job id's record, as an operator would
// with redis-cli.
func recordKey(t testing.TB, rdb *redis.Client, id string) string {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), job.KeyPrefix+"job:*"+id).Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("record key of %s: %v, %v", id, keys, err)
	}
	return keys[0]
}

func (b *bundle) dead(t testing.TB, f dlq.Filter) int64 {
	t.Helper()
	n, err := b.store.Count(b.ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// taskState returns the asynq state of job id's task, or "" when none.
func (b *bundle) taskState(t testing.TB, p deadJob, id string) string {
	t.Helper()
	p = p.withDefaults()
	info, err := b.insp.GetTaskInfo(job.AsynqQueue(p.queue, p.model), id)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.State.String()
}

// batchCount reads one counter of a batch's record.
func (b *bundle) batchCount(t testing.TB, batch, field string) int {
	t.Helper()
	bt, err := b.client.GetBatch(b.ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]int{"dead": bt.Dead, "succeeded": bt.Succeeded, "canceled": bt.Canceled}[field]
}

func TestRequeueIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := deadJob{batch: "B1", submit: true}
	ids := b.killN(t, 5, j)
	if got := b.batchCount(t, "B1", "dead"); got != 5 {
		t.Fatalf("batch dead count before requeue = %d, want 5", got)
	}
	for run := range 2 {
		res, err := b.ops.Requeue(b.ctx, Selection{All: true, Filter: dlq.Filter{BatchID: "B1"}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := []int{5, 0}[run]
		if res.Matched != want || res.Done != want {
			t.Errorf("run %d: %+v, want %d matched and done", run+1, res, want)
		}
	}
	// By ID, again: every ID is now not dead, nothing changes.
	res, err := b.ops.Requeue(b.ctx, Selection{IDs: ids}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != 0 || len(res.NotDead) != 5 {
		t.Errorf("requeue by ID after requeue: %+v, want 5 not dead", res)
	}
	for _, id := range ids {
		if st := b.state(t, id); st != enqueue.StateQueued {
			t.Errorf("job %s is %s, want queued", id, st)
		}
		if ts := b.taskState(t, j, id); ts != "pending" {
			t.Errorf("job %s: task %q, want pending", id, ts)
		}
		jb, _ := b.records.Get(b.ctx, id, false)
		if jb.Attempts != 0 || jb.Error != nil {
			t.Errorf("job %s: attempts %d error %+v, want a fresh budget", id, jb.Attempts, jb.Error)
		}
	}
	if n := b.dead(t, dlq.Filter{}); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
	if got := b.batchCount(t, "B1", "dead"); got != 0 {
		t.Errorf("batch dead count after requeue = %d, want 0", got)
	}
}

// TestRequeueConvergesAfterInterruption replays each point where a requeue
// can be interrupted, then runs it again: every job ends queued (or as the
// worker left it) exactly once, out of the dead-letter store, with its batch
// counted right.
func TestRequeueConvergesAfterInterruption(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := deadJob{batch: "B2", submit: true}
	now := time.Now()

	ps := b.killBatch(t, 5, j)
	p1, p2, p3, p4, p5 := ps[0], ps[1], ps[2], ps[3], ps[4]
	requeue := func(p job.Payload) {
		rec, err := b.store.Get(b.ctx, p.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.records.Requeue(b.ctx, records.DeadJob{ID: p.JobID, BatchID: p.BatchID, CustomID: p.CustomID,
			Queue: p.Queue, Model: p.Model, Request: rec.Request, DeadAt: rec.DeadAt}, now); err != nil {
			t.Fatal(err)
		}
	}
	// 1 and 2: record reset (and uncounted, in the same step), but the
	// task was never written: the process died in between.
	for _, p := range []job.Payload{p1, p2} {
		requeue(p)
		if err := b.insp.DeleteTask(job.AsynqQueue(p.Queue, p.Model), p.JobID); err != nil {
			t.Fatal(err)
		}
	}
	// 3: everything but the dead letter's removal.
	requeue(p3)
	// 4: as 3, and a worker has run the job to success since.
	requeue(p4)
	bg, err := b.records.Begin(b.ctx, p4.JobID, records.NewLease(), "w", now)
	if err != nil || bg.Verdict != records.Run {
		t.Fatalf("begin: %+v %v", bg, err)
	}
	if _, err := b.records.Finish(b.ctx, bg.Delivery, records.Outcome{State: job.StateSucceeded, Counted: true,
		Result: json.RawMessage(`{}`)}, now); err != nil {
		t.Fatal(err)
	}
	if err := b.insp.DeleteTask(job.AsynqQueue(p4.Queue, p4.Model), p4.JobID); err != nil {
		t.Fatal(err)
	}
	// 5: the job record expired.
	if err := b.rdb.Del(b.ctx, recordKey(t, b.rdb, p5.JobID)).Err(); err != nil {
		t.Fatal(err)
	}

	for run := range 2 {
		res, err := b.ops.Requeue(b.ctx, Selection{All: true}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{5, 0}[run]; res.Matched != want {
			t.Errorf("run %d: matched %d, want %d", run+1, res.Matched, want)
		}
	}
	for _, p := range []job.Payload{p1, p2, p3, p5} {
		if st := b.state(t, p.JobID); st != enqueue.StateQueued {
			t.Errorf("job %s is %s, want queued", p.JobID, st)
		}
		if ts := b.taskState(t, j, p.JobID); ts != "pending" {
			t.Errorf("job %s: task %q, want pending", p.JobID, ts)
		}
	}
	if st := b.state(t, p4.JobID); st != enqueue.StateSucceeded {
		t.Errorf("job that succeeded after the interrupted requeue is %s", st)
	}
	if ts := b.taskState(t, j, p4.JobID); ts != "" {
		t.Errorf("job that succeeded got a task again: %s", ts)
	}
	if n := b.dead(t, dlq.Filter{}); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
	if dead, ok := b.batchCount(t, "B2", "dead"), b.batchCount(t, "B2", "succeeded"); dead != 0 || ok != 1 {
		t.Errorf("batch counts dead %d succeeded %d, want 0 and 1", dead, ok)
	}
	rec, err := b.records.Get(b.ctx, p5.JobID, false)
	if err != nil {
		t.Fatal(err)
	}
	if rec.BatchID != "B2" || rec.Model != "mimo-v2.6-flash" || rec.Queue != enqueue.QueueBatch {
		t.Errorf("recreated job record: %+v", rec)
	}
}

// TestRequeueKeepsNewerDeath: a job that dies again between the read of
// its dead letter and the final delete keeps its new dead letter.
func TestRequeueKeepsNewerDeath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.kill(t, deadJob{})
	old, err := b.store.Get(b.ctx, p.JobID)
	if err != nil {
		t.Fatal(err)
	}
	newer := *old
	newer.DeadAt = old.DeadAt.Add(time.Second)
	newer.ErrorCode = "second_death"
	if err := b.store.Put(b.ctx, &newer); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ops.requeueOne(b.ctx, old, ""); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.Get(b.ctx, p.JobID)
	if err != nil {
		t.Fatalf("newer dead letter was deleted: %v", err)
	}
	if got.ErrorCode != "second_death" {
		t.Errorf("dead letter left is %+v, want the newer one", got)
	}
	// Delete honours the same guard.
	if ok, err := b.ops.Delete(b.ctx, Selection{IDs: []string{p.JobID}}, Options{}); err != nil || ok.Done != 1 {
		t.Errorf("delete of the current dead letter: %+v %v", ok, err)
	}
}

// TestRequeueReplacesArchivedTask: a task asynq archived by itself is
// replaced by a new one, not mistaken for "already enqueued".
func TestRequeueReplacesArchivedTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := deadJob{}
	p := b.kill(t, j)
	// asynq archived the task by itself (the sweeper's case).
	data, _ := json.Marshal(p)
	ac := asynq.NewClientFromRedisClient(b.rdb)
	if _, err := ac.Enqueue(asynq.NewTask(job.TaskType, data), asynq.TaskID(p.JobID),
		asynq.Queue(job.AsynqQueue(p.Queue, p.Model))); err != nil {
		t.Fatal(err)
	}
	if err := b.insp.ArchiveTask(job.AsynqQueue(p.Queue, p.Model), p.JobID); err != nil {
		t.Fatal(err)
	}
	res, err := b.ops.Requeue(b.ctx, Selection{IDs: []string{p.JobID}}, Options{})
	if err != nil || res.Done != 1 {
		t.Fatalf("requeue: %+v %v", res, err)
	}
	if ts := b.taskState(t, j, p.JobID); ts != "pending" {
		t.Errorf("task is %q, want pending", ts)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.killN(t, 4, deadJob{batch: "B3", submit: true})
	before := b.snapshot(t)
	for _, sel := range []Selection{{All: true}, {IDs: ids[:2]}, {All: true, Filter: dlq.Filter{BatchID: "B3"}}} {
		for name, fn := range map[string]func(context.Context, Selection, Options) (Result, error){
			"requeue": b.ops.Requeue, "delete": b.ops.Delete,
		} {
			res, err := fn(b.ctx, sel, Options{DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			want := 4
			if len(sel.IDs) > 0 {
				want = 2
			}
			if !res.DryRun || res.Matched != want || res.Done != 0 {
				t.Errorf("%s dry run of %+v: %+v, want %d matched, none done", name, sel, res, want)
			}
		}
	}
	if after := b.snapshot(t); after != before {
		t.Errorf("dry run changed Redis:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot renders every key with its value in a canonical form (DUMP
// is not one: reading a large hash may rehash it and change its order).
func (b *bundle) snapshot(t testing.TB) string {
	t.Helper()
	keys, err := b.rdb.Keys(b.ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	for _, k := range keys {
		typ, err := b.rdb.Type(b.ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = b.rdb.Get(b.ctx, k).Result()
		case "hash":
			v, err = b.rdb.HGetAll(b.ctx, k).Result() // fmt prints maps sorted
		case "set":
			var m []string
			m, err = b.rdb.SMembers(b.ctx, k).Result()
			slices.Sort(m)
			v = m
		case "zset":
			v, err = b.rdb.ZRangeWithScores(b.ctx, k, 0, -1).Result()
		case "list":
			v, err = b.rdb.LRange(b.ctx, k, 0, -1).Result()
		}
		if err != nil {
			t.Fatal(err)
		}
		ttl := b.rdb.TTL(b.ctx, k).Val() > 0
		fmt.Fprintf(&buf, "%s(%s,ttl=%v)=%v\n", k, typ, ttl, v)
	}
	return buf.String()
}

func TestNotDeadIDsAreReported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dead := b.kill(t, deadJob{}).JobID
	alive, err := b.client.Submit(b.ctx, []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.ops.Requeue(b.ctx, Selection{IDs: []string{dead, alive, "no-such-job", dead}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantNot := []string{alive, "no-such-job"}
	slices.Sort(wantNot)
	if res.Matched != 1 || res.Done != 1 || !slices.Equal(res.NotDead, wantNot) {
		t.Errorf("got %+v, want 1 requeued and not dead %v", res, wantNot)
	}
	if _, err := b.ops.Requeue(b.ctx, Selection{}, Options{}); !errors.Is(err, ErrNoSelection) {
		t.Errorf("empty selection: %v, want ErrNoSelection", err)
	}
}

func TestFiltersCombine(t *testing.T) {
	t.Parallel()
	b := setup(t)
	target := deadJob{model: "mimo-v2.6-pro", status: 404, code: "not_found"}
	// One batch BX of lines that differ from target in one field only,
	// one batch BY like target, and single (interactive) jobs like target.
	lines := []deadJob{target, target, target,
		{model: "mimo-v2.6-flash", status: 404, code: "not_found"}, {model: "mimo-v2.6-flash", status: 404, code: "not_found"},
		{model: "mimo-v2.6-pro", status: 400, code: "invalid_request"}, {model: "mimo-v2.6-pro", status: 400, code: "invalid_request"},
		{model: "mimo-v2.6-pro", status: 404, code: "not_found", class: string(job.ClassExhausted)},
		{model: "mimo-v2.6-pro", status: 404, code: "not_found", class: string(job.ClassExhausted)},
	}
	models := make([]string, len(lines))
	for i, l := range lines {
		models[i] = l.model
	}
	var want []string
	for i, p := range b.submitLines(t, "BX", enqueue.QueueBatch, models) {
		b.die(t, p, lines[i].withDefaults())
		if i < 3 {
			want = append(want, p.JobID)
		}
	}
	b.killN(t, 2, deadJob{batch: "BY", model: "mimo-v2.6-pro", status: 404, code: "not_found"})
	b.killN(t, 2, deadJob{model: "mimo-v2.6-pro", status: 404, code: "not_found", queue: enqueue.QueueInteractive})

	f := dlq.Filter{BatchID: "BX", Model: "mimo-v2.6-pro", Status: 404, Class: job.ClassTerminal, Queue: enqueue.QueueBatch}
	res, err := b.ops.Requeue(b.ctx, Selection{All: true, Filter: f}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 3 || res.Done != 3 {
		t.Errorf("requeue with filter: %+v, want 3", res)
	}
	for _, id := range want {
		if _, err := b.store.Get(b.ctx, id); !errors.Is(err, dlq.ErrNotFound) {
			t.Errorf("job %s is still a dead letter", id)
		}
	}
	if n := b.dead(t, dlq.Filter{}); n != 10 {
		t.Errorf("%d dead letters left, want the 10 that differ", n)
	}
	// IDs narrowed by a filter: only those that match are touched.
	others, _, _ := b.store.List(b.ctx, dlq.Filter{BatchID: "BY"}, "", 10)
	res, err = b.ops.Delete(b.ctx, Selection{IDs: []string{others[0].ID, others[1].ID}, Filter: dlq.Filter{Model: "mimo-v2.6-flash"}}, Options{})
	if err != nil || res.Matched != 0 {
		t.Errorf("delete by ID with a filter they do not match: %+v %v", res, err)
	}
}

func TestDeleteKeepsJobRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.killN(t, 3, deadJob{})
	res, err := b.ops.Delete(b.ctx, Selection{All: true}, Options{})
	if err != nil || res.Done != 3 {
		t.Fatalf("delete: %+v %v", res, err)
	}
	for _, id := range ids {
		if st := b.state(t, id); st != enqueue.StateDead {
			t.Errorf("job %s is %s after delete, want dead", id, st)
		}
	}
	if n := b.dead(t, dlq.Filter{}); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}

func TestExportWritesFullRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.killN(t, 3, deadJob{batch: "BE", submit: true})
	b.killN(t, 2, deadJob{batch: "BF", submit: true})
	var buf bytes.Buffer
	n, err := b.ops.Export(b.ctx, dlq.Filter{BatchID: "BE"}, &buf)
	if err != nil || n != 3 {
		t.Fatalf("export: %d %v", n, err)
	}
	sc := bufio.NewScanner(&buf)
	lines := 0
	for sc.Scan() {
		var r dlq.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.BatchID != "BE" || len(r.Request) == 0 || len(r.History) != 1 {
			t.Errorf("exported record %+v lacks its request or history", r)
		}
		lines++
	}
	if lines != 3 {
		t.Errorf("%d lines, want 3", lines)
	}
}

func TestProgressReachesTotal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.killN(t, 250, deadJob{})
	var last [2]int
	calls := 0
	res, err := b.ops.Delete(b.ctx, Selection{All: true}, Options{Progress: func(done, total int) {
		if done < last[0] {
			t.Errorf("progress went back from %d to %d", last[0], done)
		}
		last = [2]int{done, total}
		calls++
	}})
	if err != nil {
		t.Fatal(err)
	}
	if last != [2]int{250, 250} || calls < 3 || res.Done != 250 {
		t.Errorf("last progress %v after %d calls, result %+v", last, calls, res)
	}
}

// TestRequeueBulk requeues bulkN dead letters whose job records have
// expired (the costliest path: each record is recreated), streaming.
func TestRequeueBulk(t *testing.T) {
	if testing.Short() {
		t.Skip("bulk test (skipped under -short)")
	}
	t.Parallel()
	n := bulkN
	if v, err := strconv.Atoi(os.Getenv("MIMOQ_OPS_BULK_N")); err == nil && v > 0 {
		n = v
	}
	b := setup(t)
	putDead(t, b, n, "BULK")
	start := time.Now()
	res, err := b.ops.Requeue(b.ctx, Selection{All: true, Filter: dlq.Filter{BatchID: "BULK"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("requeued %d dead letters in %s: %.0f/s", res.Done, d.Round(time.Millisecond), float64(res.Done)/d.Seconds())
	if res.Matched != n || res.Done != n {
		t.Errorf("%+v, want %d", res, n)
	}
	if left := b.dead(t, dlq.Filter{}); left != 0 {
		t.Errorf("%d dead letters left", left)
	}
	info, err := b.insp.GetQueueInfo(job.AsynqQueue(enqueue.QueueBatch, "mimo-v2.6-flash"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Pending != n {
		t.Errorf("%d tasks pending, want %d", info.Pending, n)
	}
}

// putDead writes n dead letters of batch straight into the store (no job
// records: they expired).
func putDead(t testing.TB, b *bundle, n int, batch string) {
	t.Helper()
	deadAt := time.Now().Add(-time.Hour).UTC()
	recs := make([]*dlq.Record, 0, 1000)
	for i := range n {
		recs = append(recs, &dlq.Record{
			ID: enqueue.NewID(), BatchID: batch, CustomID: "line-" + strconv.Itoa(i), Queue: enqueue.QueueBatch,
			Model: "mimo-v2.6-flash", Class: job.ClassTerminal, StatusCode: 404, ErrorCode: "not_found",
			ErrorMessage: "model not found", Attempts: 1, DeadAt: deadAt.Add(time.Duration(i) * time.Millisecond),
			Request: json.RawMessage(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}`),
		})
		if len(recs) == cap(recs) || i == n-1 {
			if err := b.store.PutMany(b.ctx, recs); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
}

func BenchmarkRequeue(b *testing.B) {
	bb := setup(b)
	putDead(b, bb, b.N, "BENCH")
	b.ResetTimer()
	res, err := bb.ops.Requeue(bb.ctx, Selection{All: true}, Options{})
	if err != nil || res.Done != b.N {
		b.Fatalf("%+v %v", res, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requeues/s")
}

func TestStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lanes := lane.NewLanes(b.rdb, asynq.NewInspectorFromRedisClient(b.rdb),
		lane.WithLimits(lane.DefaultLimit, map[string]lane.Limit{"mimo-v2.6-pro": {RPM: 50, TPM: 2_000_000}}))
	o := New(b.rdb, WithLanes(lanes))
	now := time.Date(2026, 11, 25, 10, 30, 30, 0, time.UTC) // half-way through a minute
	o.now = func() time.Time { return now }

	for range 3 {
		if _, err := b.client.Submit(b.ctx, []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}`)); err != nil {
			t.Fatal(err)
		}
	}
	b.killN(t, 2, deadJob{model: "mimo-v2.6-pro"})
	if _, err := lanes.Pause(b.ctx, "mimo-v2.6-pro", "key rotation"); err != nil {
		t.Fatal(err)
	}
	// Calls: 10 in the previous minute (half of them still in the window),
	// 4 in this one (3 succeeded), 7 successes 30 minutes ago, 100 two
	// hours ago (outside every window). One through a pipeline.
	count := func(at time.Time, n int, ok bool) {
		for range n {
			var succeeded int64
			if ok {
				succeeded = 1
			}
			if err := CountAttempts(b.ctx, b.rdb, "mimo-v2.6-flash", 1, succeeded, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	count(now.Add(-time.Minute), 10, false)
	count(now, 3, true)
	pipe := b.rdb.Pipeline()
	if err := CountAttempts(b.ctx, pipe, "mimo-v2.6-flash", 1, 0, now); err != nil {
		t.Fatal(err)
	}
	if _, err := pipe.Exec(b.ctx); err != nil {
		t.Fatal(err)
	}
	count(now.Add(-30*time.Minute), 7, true)
	count(now.Add(-2*time.Hour), 100, true)

	st, err := o.Stats(b.ctx, []string{"mimo-v2.6-flash", "mimo-v2.6-pro"})
	if err != nil {
		t.Fatal(err)
	}
	flash, pro := st.Models[0], st.Models[1]
	if flash.Queued != 3 || flash.CallsLastMinute != 4+5 || flash.SucceededLastHour != 10 || flash.Lane.Status != lane.StatusRunning {
		t.Errorf("flash: %+v", flash)
	}
	if pro.Dead != 2 || pro.Lane.Status != lane.StatusPaused || pro.Lane.Reason != "key rotation" || pro.Lane.Limit.RPM != 50 {
		t.Errorf("pro: %+v", pro)
	}
	if st.Totals.Queued != 3 || st.Totals.Dead != 2 || st.DLQ.Total != 2 {
		t.Errorf("totals %+v dlq %+v", st.Totals, st.DLQ)
	}
	var found bool
	for _, q := range st.Queues {
		if q.Queue == enqueue.QueueBatch && q.Model == "mimo-v2.6-pro" {
			found = q.Dead == 2
		}
	}
	if !found {
		t.Errorf("no batch:mimo-v2.6-pro row with 2 dead in %+v", st.Queues)
	}
}

// TestRequeueRacingTheDyingDelivery (review hole 2): an operator requeues a
// dead letter while the delivery that wrote it has not returned yet. What
// that delivery still does — write its outcome again after a lost reply,
// return its task — neither counts the job dead again nor kills the
// requeued job: it runs, and its success is counted.
func TestRequeueRacingTheDyingDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ps := b.submitBatch(t, deadJob{batch: "race"}.withDefaults(), 2)
	ok := records.Outcome{State: job.StateSucceeded, Counted: true, Result: json.RawMessage(`{}`), StatusCode: 200}
	recordstest.Finish(t, b.rdb, ps[0].JobID, ok)
	// Line 1 dies: its record and its dead letter are written; its
	// delivery has not returned.
	bg, err := b.records.Begin(b.ctx, ps[1].JobID, records.NewLease(), "w", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dead := records.Outcome{State: job.StateDead, Counted: true, Error: &job.Error{StatusCode: 400, Code: "bad", Class: job.ClassTerminal}}
	if _, err := b.records.Finish(b.ctx, bg.Delivery, dead, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, _ := b.records.Get(b.ctx, ps[1].JobID, true)
	if err := b.store.Put(b.ctx, dlq.FromJob(got)); err != nil {
		t.Fatal(err)
	}
	// The operator requeues it meanwhile.
	if res, err := b.ops.Requeue(b.ctx, Selection{IDs: []string{ps[1].JobID}}, Options{}); err != nil || res.Done != 1 {
		t.Fatalf("requeue: %+v %v", res, err)
	}
	// The dying delivery writes its outcome again (its reply was lost).
	if f, err := b.records.Finish(b.ctx, bg.Delivery, dead, time.Now()); err != nil || f.Written != records.Stale {
		t.Fatalf("the dying delivery's write after the requeue: %+v, %v; want stale", f, err)
	}
	if bt, _ := b.client.GetBatch(b.ctx, "race"); bt.Dead != 0 || bt.Over() {
		t.Fatalf("batch after the requeue: %+v", bt)
	}
	// The requeued job runs and succeeds.
	recordstest.Finish(t, b.rdb, ps[1].JobID, ok)
	bt, _ := b.client.GetBatch(b.ctx, "race")
	if bt.Succeeded != 2 || bt.Dead != 0 || bt.State != job.BatchDone {
		t.Fatalf("batch %s: succeeded %d dead %d, while both jobs succeeded", bt.State, bt.Succeeded, bt.Dead)
	}
	if n := b.dead(t, dlq.Filter{}); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}

// TestRequeueOfACanceledBatchsDeadLetterRuns (review hole 7): a dead letter
// of a batch canceled since is requeued like any other: the job runs (the
// requeue is the operator's decision, made after the cancel), the batch is
// open until it ends, and the report says what was done.
func TestRequeueOfACanceledBatchsDeadLetterRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ps := b.submitBatch(t, deadJob{batch: "gone"}.withDefaults(), 3)
	b.die(t, ps[0], deadJob{}.withDefaults())
	// The other two tasks are back in asynq: cancel finds their jobs queued.
	if _, err := b.client.CancelBatch(b.ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if bt, _ := b.client.GetBatch(b.ctx, "gone"); !bt.Over() || bt.Canceled != 2 || bt.Dead != 1 {
		t.Fatalf("canceled batch: %+v", bt)
	}
	res, err := b.ops.Requeue(b.ctx, Selection{IDs: []string{ps[0].JobID}}, Options{})
	if err != nil || res.Done != 1 {
		t.Fatalf("requeue: %+v %v", res, err)
	}
	bg, err := b.records.Begin(b.ctx, ps[0].JobID, records.NewLease(), "w", time.Now())
	if err != nil || bg.Verdict != records.Run {
		t.Fatalf("the requeued job of the canceled batch: %+v, %v; want it to run", bg, err)
	}
	if bt, _ := b.client.GetBatch(b.ctx, "gone"); bt.Over() || bt.State != job.BatchCanceled {
		t.Errorf("batch while the requeued job runs: %+v", bt)
	}
	if _, err := b.records.Finish(b.ctx, bg.Delivery, records.Outcome{State: job.StateSucceeded, Counted: true,
		Result: json.RawMessage(`{}`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if bt, _ := b.client.GetBatch(b.ctx, "gone"); !bt.Over() || bt.Succeeded != 1 || bt.Canceled != 2 || bt.Dead != 0 {
		t.Errorf("batch at its end: %+v", bt)
	}
}
