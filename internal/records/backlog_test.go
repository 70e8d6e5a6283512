package records

import (
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
)

func (b *bundle) laneBacklogs() []*Backlog {
	b.t.Helper()
	bs, err := b.s.LaneBacklogs(b.ctx, job.QueueBatch, testModel)
	if err != nil {
		b.t.Fatal(err)
	}
	return bs
}

func (b *bundle) parked(id string) bool {
	b.t.Helper()
	sc, err := b.rdb.ZScore(b.ctx, asynqwire.ScheduledKey(job.AsynqQueue(job.QueueBatch, testModel)), id).Result()
	return err == nil && sc >= asynqwire.ParkedAt
}

func (b *bundle) inBacklog(batchID, id string) bool {
	b.t.Helper()
	return b.rdb.ZScore(b.ctx, backlogKey(batchID, testModel), id).Err() == nil &&
		b.rdb.SIsMember(b.ctx, LaneBatchesKey(job.AsynqQueue(job.QueueBatch, testModel)), batchID).Val()
}

// TestAuditRelistsEveryOpenJobWithAParkedTask: a failover can bring back a
// released task parked while its job runs on (or waits for a retry) and
// lose its backlog entry; the reconciler's audit lists it again, whatever
// the job's state, so that the feeder releases it.
func TestAuditRelistsEveryOpenJobWithAParkedTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("failover", 3, 3, true)
	b.begin(ids[0])
	if err := b.rdb.HSet(b.ctx, jobKey(ids[1]), "state", string(job.StateRetrying)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.ZRem(b.ctx, backlogKey("failover", testModel), ids[0], ids[1], ids[2]).Err(); err != nil {
		t.Fatal(err)
	}
	b.reconcile()
	for i, id := range ids {
		if !b.parked(id) || !b.inBacklog("failover", id) {
			t.Errorf("line %d (%s): parked %v, in its backlog %v; want its parked task listed again", i, b.state(id), b.parked(id), b.inBacklog("failover", id))
		}
	}
}

// TestForgetKeepsABacklogThatGotJobs: a feeder that read a backlog as empty
// and forgets it after jobs came in keeps it listed.
func TestForgetKeepsABacklogThatGotJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("late", 2, 1, false) // a submit under way: one line so far
	if _, err := b.s.Release(b.ctx, job.QueueBatch, b.laneBacklogs(), []int{0}); err != nil {
		t.Fatal(err)
	}
	stale := b.laneBacklogs()
	if len(stale) != 1 || !stale[0].Over() {
		t.Fatalf("backlogs %+v, want the batch's, empty", stale)
	}
	cb, _, _ := b.s.batchCreatedMs(b.ctx, "late")
	if err := b.s.EnqueueLines(b.ctx, "late", job.QueueBatch, cb, []Line{{Index: 1, CustomID: "c1", Model: testModel, Body: testBody}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.s.Forget(b.ctx, job.QueueBatch, stale); err != nil {
		t.Fatal(err)
	}
	if !b.inBacklog("late", ids[1]) {
		t.Error("a backlog with a job waiting was forgotten: its job would never be released")
	}
	if n, _ := b.s.BatchBacklog(b.ctx, "late"); n != 1 {
		t.Errorf("batch backlog %d, want 1", n)
	}
}

// TestDropReleasesAJobRequeuedAfterItsBatchEnded: an ended backlog's
// parked tasks are deleted only for final jobs; a job found not final (an
// operator's requeue after its batch ended) has its task released.
func TestDropReleasesAJobRequeuedAfterItsBatchEnded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("ended", 2, 2, true)
	if _, err := b.s.CancelBatch(b.ctx, "ended", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Line 1 queued again behind the cancel's back, as a requeue does.
	if err := b.rdb.HSet(b.ctx, jobKey(ids[1]), "state", string(job.StateQueued)).Err(); err != nil {
		t.Fatal(err)
	}
	bs := b.laneBacklogs()
	if len(bs) != 1 || !bs[0].Ended() {
		t.Fatalf("backlogs %+v, want the canceled batch's, ended", bs)
	}
	if n, err := b.s.Drop(b.ctx, job.QueueBatch, bs[0], 10); err != nil || n != 2 {
		t.Fatalf("drop: %d %v", n, err)
	}
	q := job.AsynqQueue(job.QueueBatch, testModel)
	if b.taskExists(q, ids[0]) {
		t.Error("the canceled job's parked task was not deleted")
	}
	if st := b.rdb.HGet(b.ctx, asynqwire.TaskKey(q, ids[1]), "state").Val(); st != "pending" {
		t.Errorf("the requeued job's task is %q, want pending (released, not deleted)", st)
	}
}

// TestRequeueReleasesAParkedTask: a dead job whose task came back parked
// (a failover) and whose batch is over has no backlog to wait in; its
// requeue releases the task.
func TestRequeueReleasesAParkedTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("over", 1, 1, true)
	b.finish(b.begin(ids[0]).Delivery, died)
	if !b.parked(ids[0]) {
		t.Fatal("the test wants the dead job's task parked (as a failover may leave it)")
	}
	if err := b.rdb.ZRem(b.ctx, backlogKey("over", testModel), ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	dead, _ := b.s.Get(b.ctx, ids[0], true)
	if res, _, err := b.s.Requeue(b.ctx, DeadJob{ID: ids[0], BatchID: "over", Queue: job.QueueBatch, Model: testModel,
		DeadAt: dead.FinishedAt}, time.Now()); err != nil || res != Requeued {
		t.Fatalf("requeue: %v %v", res, err)
	}
	if st := b.rdb.HGet(b.ctx, asynqwire.TaskKey(job.AsynqQueue(job.QueueBatch, testModel), ids[0]), "state").Val(); st != "pending" {
		t.Errorf("the requeued job's task is %q, want pending", st)
	}
}

// TestAuditParksRecreatedBatchTasks: a batch job's lost task is made again
// parked and listed in its backlog, so that it takes its turn in its lane
// instead of going before every other batch.
func TestAuditParksRecreatedBatchTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("lost", 2, 2, true)
	q := job.AsynqQueue(job.QueueBatch, testModel)
	b.loseTask(job.QueueBatch, ids[0])
	if err := b.rdb.ZRem(b.ctx, asynqwire.ScheduledKey(q), ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.ZRem(b.ctx, backlogKey("lost", testModel), ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if rep := b.reconcile(); rep.TasksRecreated != 1 {
		t.Fatalf("reconciler recreated %d tasks, want 1", rep.TasksRecreated)
	}
	if !b.parked(ids[0]) || !b.inBacklog("lost", ids[0]) {
		t.Errorf("recreated task: parked %v, in its backlog %v; want both", b.parked(ids[0]), b.inBacklog("lost", ids[0]))
	}
	if n := b.rdb.LLen(b.ctx, asynqwire.PendingKey(q)).Val(); n != 0 {
		t.Errorf("%d tasks went straight to the lane's queue", n)
	}
}

// TestAuditDeletesAFinalJobsParkedTask: a final job's task found parked
// with no backlog entry (parked again by a failover, say) is deleted by the
// audit instead of waiting, counted as waiting, until the year 2286.
func TestAuditDeletesAFinalJobsParkedTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("orphan", 2, 2, true)
	b.finish(b.begin(ids[0]).Delivery, died) // its task stays parked: the model's worker never released it
	if err := b.rdb.ZRem(b.ctx, backlogKey("orphan", testModel), ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	b.reconcile() // notes the batch's progress
	if _, err := b.s.Reconcile(b.ctx, nil, ReconcileOptions{Grace: time.Minute}, time.Now().Add(4*time.Minute)); err != nil {
		t.Fatal(err) // audits it: no progress since
	}
	if b.parked(ids[0]) {
		t.Error("the dead job's orphan parked task is still there")
	}
	if !b.parked(ids[1]) || !b.inBacklog("orphan", ids[1]) {
		t.Error("the open job's parked task was touched")
	}
}
