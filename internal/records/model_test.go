package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
)

// TestLifecycleModel drives the record store with random sequences of what
// producers, workers, operators, Redis and the reconciler do to jobs —
// submits (batches interrupted at random, jobs and batches with deadlines),
// deliveries that begin, answer, fail, put back, are replayed or lost with
// their lease, cancels, requeues, expiry of records, expiry passes over due
// deadlines, lost tasks and reconciler runs — and checks after
// every step, against a model of what each job must be, that:
//
//   - each job is in exactly the state the model says;
//   - every batch's counts equal the states of its jobs, and it is over
//     exactly when all its lines are final;
//   - final states are absorbing (only a requeue leaves dead);
//   - no canceled, dead or succeeded job is handed to a delivery, no job
//     before its due time, and none that has not started after its
//     deadline (its own, or its batch's completion window): it expires;
//   - every non-final job has an asynq task, or the reconciler knows it.
//
// Seeds are fixed so that a failure replays; MIMOQ_SOAK runs more and
// longer sequences, MIMOQ_MODEL_SEED one chosen seed.
func TestLifecycleModel(t *testing.T) {
	t.Parallel()
	seeds, steps := []uint64{1, 2, 3, 4, 5, 6}, 500
	if os.Getenv("MIMOQ_SOAK") != "" {
		seeds, steps = nil, 5000
		for i := range 40 {
			seeds = append(seeds, uint64(100+i))
		}
	}
	if s := os.Getenv("MIMOQ_MODEL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = []uint64{n}
	}
	b := setup(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			if err := b.rdb.FlushAll(b.ctx).Err(); err != nil {
				t.Fatal(err)
			}
			m := newModel(t, b.rdb, seed)
			for step := range steps {
				m.step(step)
				m.check(step)
			}
			t.Logf("seed %d: %d steps, %v", seed, steps, m.ops)
		})
	}
}

// mjob is what the model knows of one job.
type mjob struct {
	id, batch string
	index     int
	state     job.State // "" while a batch line is not enqueued
	attempts  int
	due       time.Time // earliest next call
	lease     string    // the delivery holding it, while running
	expired   bool      // its record was removed (the result TTL passed)
	task      bool      // asynq holds a task for it
	deadAt    string    // finished_at of its death, as its dead letter has it
	deadline  time.Time // when it expires if not started; zero for none
}

// mbatch is what the model knows of one batch.
type mbatch struct {
	id        string
	jobs      []*mjob
	createdMs int64
	state     job.BatchState
	next      int       // the next line an interrupted submit enqueues
	expiresAt time.Time // its completion window's end; zero for none
	swept     bool      // an expiry pass (or the reconciler) handled its window
}

// delivery is a worker's run of a job's task, as the model plays it.
type delivery struct {
	j    *mjob
	d    Delivery
	last *Outcome // the last outcome it wrote, for replays
	// finished is set once its outcome was written; acked once its task
	// left asynq.
	finished bool
}

type model struct {
	t       *testing.T
	ctx     context.Context
	rdb     *redis.Client
	s       *Store
	r       *rand.Rand
	now     time.Time
	jobs    []*mjob
	batches []*mbatch
	open    []*delivery // deliveries that have not returned to asynq
	ops     map[string]int
	swept   map[string]bool // single jobs whose deadline an expiry pass handled
	// reconciled is the reconciler's clock: later than every job's
	// submit, moving on with each pass.
	reconciled time.Time
}

func newModel(t *testing.T, rdb *redis.Client, seed uint64) *model {
	return &model{t: t, ctx: context.Background(), rdb: rdb, s: New(rdb, time.Hour), r: rand.New(rand.NewPCG(seed, seed)),
		now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), ops: map[string]int{}, swept: map[string]bool{}, reconciled: time.Now().Add(time.Hour)}
}

func (m *model) fatalf(step int, format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("step %d: "+format, append([]any{step}, args...)...)
}

func (m *model) pick(js []*mjob, ok func(*mjob) bool) *mjob {
	var c []*mjob
	for _, j := range js {
		if ok(j) {
			c = append(c, j)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[m.r.IntN(len(c))]
}

// step does one random thing.
func (m *model) step(step int) {
	if os.Getenv("MODEL_DEBUG") != "" {
		defer func() { m.t.Logf("step %d: %v", step, m.ops) }()
	}
	m.now = m.now.Add(time.Duration(m.r.IntN(3000)) * time.Millisecond)
	switch n := m.r.IntN(100); {
	case n < 6:
		m.submit(step)
	case n < 10:
		m.submitBatch(step)
	case n < 12:
		m.resumeSubmit(step)
	case n < 40:
		m.begin(step)
	case n < 70:
		m.outcome(step)
	case n < 74:
		m.replay(step)
	case n < 80:
		m.ack(step)
	case n < 83:
		m.cancel(step)
	case n < 88:
		m.requeue(step)
	case n < 90:
		m.expire(step)
	case n < 92:
		m.expireDue(step)
	case n < 94:
		m.loseTask(step)
	case n < 97:
		m.feed(step)
	default:
		m.reconcile(step)
	}
}

func (m *model) submit(step int) {
	m.ops["submit"]++
	j := &mjob{id: NewID(), state: job.StateQueued, task: true}
	if m.r.IntN(3) == 0 {
		j.deadline = m.now.Add(time.Duration(m.r.IntN(20000)) * time.Millisecond).Truncate(time.Millisecond)
	}
	if _, err := m.s.Submit(m.ctx, NewJob{ID: j.id, Queue: job.QueueInteractive, Model: testModel, Body: testBody,
		SubmittedAt: m.now, Deadline: j.deadline}); err != nil {
		m.fatalf(step, "submit: %v", err)
	}
	m.jobs = append(m.jobs, j)
}

func (m *model) submitBatch(step int) {
	m.ops["batch"]++
	bt := &mbatch{id: fmt.Sprintf("b%d", len(m.batches)), state: job.BatchSubmitting}
	n := 1 + m.r.IntN(12)
	if m.r.IntN(3) == 0 {
		bt.expiresAt = m.now.Add(time.Duration(m.r.IntN(30000)) * time.Millisecond).Truncate(time.Millisecond)
	}
	cb, err := m.s.CreateBatch(m.ctx, BatchSpec{ID: bt.id, Queue: job.QueueBatch, SHA256: "x", Total: n,
		ExpiresAt: bt.expiresAt}, m.now)
	if err != nil {
		m.fatalf(step, "create batch: %v", err)
	}
	bt.createdMs = cb.CreatedMs
	for i := range n {
		j := &mjob{id: batchJobID(bt.id, cb.CreatedMs, i), batch: bt.id, index: i}
		bt.jobs = append(bt.jobs, j)
		m.jobs = append(m.jobs, j)
	}
	m.batches = append(m.batches, bt)
	// A submit interrupted at random, after a few chunks.
	m.enqueueLines(step, bt, m.r.IntN(n+1))
}

// enqueueLines enqueues the next k lines of bt (seals it after its last).
func (m *model) enqueueLines(step int, bt *mbatch, k int) {
	var lines []Line
	for ; k > 0 && bt.next < len(bt.jobs); k-- {
		i := bt.next
		lines = append(lines, Line{Index: i, CustomID: "c" + strconv.Itoa(i), Model: testModel, Body: testBody})
		bt.next++
	}
	if err := m.s.EnqueueLines(m.ctx, bt.id, job.QueueBatch, bt.createdMs, lines, m.now); err != nil {
		m.fatalf(step, "enqueue lines: %v", err)
	}
	for _, l := range lines {
		if j := bt.jobs[l.Index]; bt.state == job.BatchSubmitting && j.state == "" {
			j.state, j.task, j.deadline = job.StateQueued, true, bt.expiresAt
		}
	}
	if bt.next == len(bt.jobs) {
		if _, err := m.s.Seal(m.ctx, bt.id, m.now); err != nil {
			m.fatalf(step, "seal: %v", err)
		}
		if bt.state == job.BatchSubmitting {
			bt.state = job.BatchRunning
		}
	}
}

// notStarted says whether j is waiting for its first or next attempt.
func notStarted(j *mjob) bool { return j.state == job.StateQueued || j.state == job.StateRetrying }

// expireDue runs an expiry pass, as every worker does each second: due
// single jobs that have not started expire, and so do the batches whose
// window ended.
func (m *model) expireDue(step int) {
	m.ops["expiry pass"]++
	if _, err := m.s.ExpireDue(m.ctx, m.now, 10000); err != nil {
		m.fatalf(step, "expire due: %v", err)
	}
	for _, j := range m.jobs {
		if j.batch != "" || j.deadline.IsZero() || j.deadline.After(m.now) || m.swept[j.id] {
			continue
		}
		m.swept[j.id] = true
		if notStarted(j) && !j.expired {
			j.state, j.due = job.StateExpired, time.Time{}
		}
	}
	for _, bt := range m.batches {
		if !bt.expiresAt.IsZero() && !bt.expiresAt.After(m.now) && !bt.swept {
			m.endWindow(bt)
		}
	}
}

// endWindow has bt's completion window end: a batch not ended yet expires
// with its jobs that have not started, and the lines never enqueued.
func (m *model) endWindow(bt *mbatch) {
	bt.swept = true
	if bt.state != job.BatchSubmitting && bt.state != job.BatchRunning {
		return
	}
	bt.state = job.BatchExpired
	for _, j := range bt.jobs {
		if j.state == "" || notStarted(j) {
			j.state, j.due = job.StateExpired, time.Time{}
		}
	}
}

func (m *model) resumeSubmit(step int) {
	var c []*mbatch
	for _, bt := range m.batches {
		if bt.next < len(bt.jobs) {
			c = append(c, bt)
		}
	}
	if len(c) == 0 {
		return
	}
	m.ops["resume"]++
	bt := c[m.r.IntN(len(c))]
	m.enqueueLines(step, bt, 1+m.r.IntN(len(bt.jobs)))
}

// begin delivers a job's task, as asynq hands it to a worker: a job with a
// task, or, rarely, one without (a stray or late task).
func (m *model) begin(step int) {
	j := m.pick(m.jobs, func(j *mjob) bool { return j.task || m.r.IntN(10) == 0 })
	if j == nil {
		return
	}
	m.ops["begin"]++
	if j.batch != "" && j.task {
		// Its task reached a worker: it left its backlog first (or an
		// operator ran it from asynqmon).
		if _, err := asynqwire.Unpark(m.ctx, m.rdb, job.AsynqQueue(job.QueueBatch, testModel), []string{j.id}); err != nil {
			m.fatalf(step, "unpark %s: %v", j.id, err)
		}
	}
	lease := NewLease()
	bg, err := m.s.Begin(m.ctx, j.id, lease, "w", m.now)
	if err != nil {
		m.fatalf(step, "begin %s: %v", j.id, err)
	}
	want := Run
	switch {
	case j.expired || j.state == "":
		want = Missing
	case j.state.Final():
		want = Final
	case notStarted(j) && !j.deadline.IsZero() && !j.deadline.After(m.now):
		want = Final
		j.state, j.due = job.StateExpired, time.Time{}
	case j.due.After(m.now):
		want = NotYet
	}
	if bg.Verdict != want {
		m.fatalf(step, "begin %s (model %+v): verdict %v, want %v", j.id, *j, bg.Verdict, want)
	}
	if want == Final && bg.State != j.state {
		m.fatalf(step, "begin %s: found %s, model %s", j.id, bg.State, j.state)
	}
	if want != Run {
		return
	}
	if bg.Interrupted != (j.state == job.StateRunning) {
		m.fatalf(step, "begin %s: interrupted %v, model state %s", j.id, bg.Interrupted, j.state)
	}
	if bg.Attempts != j.attempts {
		m.fatalf(step, "begin %s: %d attempts, model %d", j.id, bg.Attempts, j.attempts)
	}
	j.state, j.lease = job.StateRunning, lease
	m.open = append(m.open, &delivery{j: j, d: bg.Delivery})
}

// outcome has an open delivery write what its attempt came to.
func (m *model) outcome(step int) {
	var c []*delivery
	for _, d := range m.open {
		if !d.finished {
			c = append(c, d)
		}
	}
	if len(c) == 0 {
		return
	}
	dl := c[m.r.IntN(len(c))]
	var o Outcome
	switch n := m.r.IntN(10); {
	case n < 4:
		o = Outcome{State: job.StateSucceeded, Counted: true, Result: json.RawMessage(`{}`), StatusCode: 200,
			Usage: &job.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}}
	case n < 7:
		o = Outcome{State: job.StateRetrying, Counted: true, DueAt: m.now.Add(time.Duration(1+m.r.IntN(10)) * time.Second)}
	case n < 9:
		o = Outcome{State: job.StateDead, Counted: true, Error: &job.Error{Code: "bad", Class: job.ClassTerminal}}
	default:
		o = Outcome{State: job.StateQueued} // put back
	}
	m.ops["outcome:"+string(o.State)]++
	m.write(step, dl, o)
}

// write sends outcome o of dl and checks what the store did with it.
func (m *model) write(step int, dl *delivery, o Outcome) {
	j := dl.j
	f, err := m.s.Finish(m.ctx, dl.d, o, m.now)
	if err != nil {
		m.fatalf(step, "finish %s: %v", j.id, err)
	}
	current := j.lease == dl.d.Lease && j.state == job.StateRunning && !j.expired
	if dl.last != nil {
		// A replay: never applied again.
		if f.Written == Applied {
			m.fatalf(step, "replayed outcome of %s applied again: %+v", j.id, f)
		}
		return
	}
	dl.last, dl.finished = &o, true
	switch {
	case current && f.Written != Applied:
		m.fatalf(step, "outcome of the current delivery of %s not applied: %+v", j.id, f)
	case !current && f.Written == Applied:
		m.fatalf(step, "outcome of a stale delivery of %s applied: %+v (model %+v)", j.id, f, *j)
	case !current:
		return
	}
	j.state = o.State
	if o.Counted {
		j.attempts++
	}
	j.due = o.DueAt
	if o.State == job.StateDead {
		got, err := m.s.Get(m.ctx, j.id, false)
		if err != nil {
			m.fatalf(step, "get %s: %v", j.id, err)
		}
		j.deadAt = fmtTime(got.FinishedAt)
	}
}

// replay sends a delivery's last outcome again (go-redis resending a
// command whose reply was lost).
func (m *model) replay(step int) {
	var c []*delivery
	for _, d := range m.open {
		if d.last != nil {
			c = append(c, d)
		}
	}
	if len(c) == 0 {
		return
	}
	m.ops["replay"]++
	dl := c[m.r.IntN(len(c))]
	m.write(step, dl, *dl.last)
}

// ack returns a delivery to asynq, as the worker's handler does: a final
// job's task is deleted; a put-back, a retry, or a job found requeued or
// waiting again keeps its task. A delivery that was never finished lost its
// lease (its worker died): asynq hands its task out again, so it stays.
func (m *model) ack(step int) {
	if len(m.open) == 0 {
		return
	}
	m.ops["ack"]++
	i := m.r.IntN(len(m.open))
	dl := m.open[i]
	m.open = slices.Delete(m.open, i, i+1)
	if !dl.finished {
		return
	}
	st, err := m.s.State(m.ctx, dl.j.id)
	if err != nil && !isNotFound(err) {
		m.fatalf(step, "state: %v", err)
	}
	if st.Final() || isNotFound(err) {
		if err := m.rdb.Del(m.ctx, asynqwire.TaskKey(job.AsynqQueue(m.queueOf(dl.j), testModel), dl.j.id)).Err(); err != nil {
			m.fatalf(step, "ack: %v", err)
		}
		dl.j.task = false
	}
}

func (m *model) queueOf(j *mjob) string {
	if j.batch == "" {
		return job.QueueInteractive
	}
	return job.QueueBatch
}

func (m *model) batchOf(id string) *mbatch {
	for _, bt := range m.batches {
		if bt.id == id {
			return bt
		}
	}
	return nil
}

func (m *model) cancel(step int) {
	if len(m.batches) == 0 {
		return
	}
	m.ops["cancel"]++
	bt := m.batches[m.r.IntN(len(m.batches))]
	over := m.over(bt)
	if _, err := m.s.CancelBatch(m.ctx, bt.id, m.now); err != nil && !isNotFound(err) {
		m.fatalf(step, "cancel %s: %v", bt.id, err)
	}
	if over || bt.state == job.BatchDone || bt.state == job.BatchExpired {
		return
	}
	bt.state = job.BatchCanceled
	for _, j := range bt.jobs {
		if j.state == "" || j.state == job.StateQueued || j.state == job.StateRetrying {
			j.state, j.due = job.StateCanceled, time.Time{}
		}
	}
}

func (m *model) requeue(step int) {
	j := m.pick(m.jobs, func(j *mjob) bool { return j.state == job.StateDead })
	if j == nil {
		return
	}
	m.ops["requeue"]++
	deadAt, _ := time.Parse(timeLayout, j.deadAt)
	res, st, err := m.s.Requeue(m.ctx, DeadJob{ID: j.id, BatchID: j.batch, Queue: m.queueOf(j), Model: testModel,
		Request: testBody, DeadAt: deadAt}, m.now)
	if err != nil {
		m.fatalf(step, "requeue %s: %v", j.id, err)
	}
	want := Requeued
	if j.expired {
		want = Recreated
	}
	if res != want || st != job.StateQueued {
		m.fatalf(step, "requeue %s: %v %s, want %v queued", j.id, res, st, want)
	}
	j.state, j.attempts, j.due, j.lease, j.expired, j.task = job.StateQueued, 0, time.Time{}, "", false, true
	j.deadline = time.Time{} // a requeue is a fresh start
	if bt := m.batchOf(j.batch); bt != nil && bt.state == job.BatchDone {
		bt.state = job.BatchRunning
	}
}

// expire removes a final job's record, as its TTL would.
func (m *model) expire(step int) {
	j := m.pick(m.jobs, func(j *mjob) bool { return j.state.Final() && !j.expired })
	if j == nil {
		return
	}
	m.ops["expire"]++
	if err := m.rdb.Del(m.ctx, jobKey(j.id), bodyKey(j.id)).Err(); err != nil {
		m.fatalf(step, "expire: %v", err)
	}
	j.expired = true
}

// loseTask deletes a job's task, as a failover with asynchronous
// replication can.
func (m *model) loseTask(step int) {
	j := m.pick(m.jobs, func(j *mjob) bool { return j.task })
	if j == nil {
		return
	}
	m.ops["lose"]++
	if err := m.rdb.Del(m.ctx, asynqwire.TaskKey(job.AsynqQueue(m.queueOf(j), testModel), j.id)).Err(); err != nil {
		m.fatalf(step, "lose task: %v", err)
	}
	j.task = false
}

// feed releases a few jobs of each lane's backlogs, as the fair feeder
// does: the heads, oldest batch first; an ended backlog's parked tasks
// are deleted, and an over one is forgotten.
func (m *model) feed(step int) {
	m.ops["feed"]++
	bs, err := m.s.LaneBacklogs(m.ctx, job.QueueBatch, testModel)
	if err != nil {
		m.fatalf(step, "backlogs: %v", err)
	}
	var over, active []*Backlog
	for _, b := range bs {
		switch {
		case b.Over():
			over = append(over, b)
		case b.Len > 0 && b.Ended():
			if _, err := m.s.Drop(m.ctx, job.QueueBatch, b, 1+m.r.IntN(5)); err != nil {
				m.fatalf(step, "drop: %v", err)
			}
		case b.Len > 0:
			active = append(active, b)
		}
	}
	if err := m.s.Forget(m.ctx, job.QueueBatch, over); err != nil {
		m.fatalf(step, "forget: %v", err)
	}
	var order []int
	for range m.r.IntN(8) {
		if len(active) > 0 {
			order = append(order, m.r.IntN(len(active)))
		}
	}
	if _, err := m.s.Release(m.ctx, job.QueueBatch, active, order); err != nil {
		m.fatalf(step, "release: %v", err)
	}
	m.forgetDeletedTasks()
}

// forgetDeletedTasks notes that the parked tasks of final jobs that the
// feeder (Drop) or the reconciler deleted are gone.
func (m *model) forgetDeletedTasks() {
	for _, j := range m.jobs {
		if j.task && j.state.Final() && m.rdb.Exists(m.ctx, asynqwire.TaskKey(job.AsynqQueue(m.queueOf(j), testModel), j.id)).Val() == 0 {
			j.task = false
		}
	}
}

func (m *model) reconcile(step int) {
	m.ops["reconcile"]++
	// Two passes a grace period apart: the first notes each batch's
	// progress, the second audits the batches that made none since.
	var rep ReconcileReport
	for pass := range 2 {
		m.reconciled = m.reconciled.Add(time.Second)
		r, err := m.s.Reconcile(m.ctx, nil, ReconcileOptions{Grace: time.Millisecond}, m.reconciled)
		if err != nil {
			m.fatalf(step, "reconcile pass %d: %v", pass, err)
		}
		rep.TasksRecreated += r.TasksRecreated
		rep.Lost += r.Lost
		// Its clock is past every window: it ends each batch whose
		// window no expiry pass has handled.
		for _, bt := range m.batches {
			if !bt.expiresAt.IsZero() && !m.over(bt) && (bt.state == job.BatchSubmitting || bt.state == job.BatchRunning) {
				m.endWindow(bt)
			}
		}
	}
	if rep.Lost != 0 {
		m.fatalf(step, "reconciler lost %d jobs", rep.Lost)
	}
	for _, j := range m.jobs {
		if j.state != "" && !j.state.Final() && !j.expired {
			j.task = true
		}
	}
	m.forgetDeletedTasks()
	m.ops["recreated"] += rep.TasksRecreated
}

// over reports whether every line of bt is final in the model.
func (m *model) over(bt *mbatch) bool {
	for _, j := range bt.jobs {
		if !j.state.Final() {
			return false
		}
	}
	return true
}

// check compares Redis with the model.
func (m *model) check(step int) {
	m.t.Helper()
	live, err := m.rdb.ZRange(m.ctx, liveKey, 0, -1).Result()
	if err != nil {
		m.fatalf(step, "live index: %v", err)
	}
	for _, j := range m.jobs {
		if j.expired || j.state == "" {
			if n := m.rdb.Exists(m.ctx, jobKey(j.id)).Val(); n != 0 && j.expired {
				m.fatalf(step, "expired record of %s is back", j.id)
			}
			continue
		}
		st, err := m.s.State(m.ctx, j.id)
		if err != nil {
			m.fatalf(step, "state of %s: %v (model %+v)", j.id, err, *j)
		}
		if st != j.state {
			m.fatalf(step, "job %s is %s, model %s (%+v)", j.id, st, j.state, *j)
		}
		has := m.rdb.Exists(m.ctx, asynqwire.TaskKey(job.AsynqQueue(m.queueOf(j), testModel), j.id)).Val() == 1
		if has != j.task && !(has && j.state.Final()) {
			m.fatalf(step, "job %s: task in asynq %v, model %v (%+v)", j.id, has, j.task, *j)
		}
		if has && j.batch != "" {
			// A parked task waits in its batch's backlog, and the
			// batch in its lane's list: the feeder will release it.
			q := job.AsynqQueue(job.QueueBatch, testModel)
			sc, err := m.rdb.ZScore(m.ctx, asynqwire.ScheduledKey(q), j.id).Result()
			if err == nil && sc >= asynqwire.ParkedAt {
				if m.rdb.ZScore(m.ctx, backlogKey(j.batch, testModel), j.id).Err() != nil ||
					!m.rdb.SIsMember(m.ctx, LaneBatchesKey(q), j.batch).Val() {
					m.fatalf(step, "job %s (%s) has a parked task that no backlog holds: it would wait for ever", j.id, j.state)
				}
			}
		}
		if !j.state.Final() && !has {
			// Known to the reconciler: a single job in the live index, a
			// batch job through its batch (listed, not over).
			known := slices.Contains(live, j.id)
			if j.batch != "" {
				bt, err := m.s.GetBatch(m.ctx, j.batch)
				known = err == nil && !bt.Over()
			}
			if !known {
				m.fatalf(step, "job %s is %s, has no task, and the reconciler does not know it", j.id, j.state)
			}
		}
	}
	for _, bt := range m.batches {
		got, err := m.s.GetBatch(m.ctx, bt.id)
		if err != nil {
			m.fatalf(step, "batch %s: %v", bt.id, err)
		}
		var want struct{ succeeded, dead, canceled, expired int }
		for _, j := range bt.jobs {
			switch j.state {
			case job.StateSucceeded:
				want.succeeded++
			case job.StateDead:
				want.dead++
			case job.StateCanceled:
				want.canceled++
			case job.StateExpired:
				want.expired++
			}
		}
		if got.Succeeded != want.succeeded || got.Dead != want.dead || got.Canceled != want.canceled || got.Expired != want.expired {
			m.fatalf(step, "batch %s counts %d/%d/%d/%d, its jobs %d/%d/%d/%d", bt.id, got.Succeeded, got.Dead, got.Canceled,
				got.Expired, want.succeeded, want.dead, want.canceled, want.expired)
		}
		over := m.over(bt) && bt.state != job.BatchSubmitting
		if got.Over() != over {
			m.fatalf(step, "batch %s over %v, want %v (%+v)", bt.id, got.Over(), over, got)
		}
		if over && bt.state == job.BatchRunning {
			// A batch some of whose jobs outlived its window ends expired.
			bt.state = job.BatchDone
			if want.expired > 0 {
				bt.state = job.BatchExpired
			}
		}
		if got.State != bt.state {
			m.fatalf(step, "batch %s is %s, model %s", bt.id, got.State, bt.state)
		}
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
