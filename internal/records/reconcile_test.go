package records

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
)

// deadLetterStore is the dead-letter store as the reconciler sees it (the
// worker's adapter, rebuilt here).
type deadLetterStore struct{ s *dlq.Store }

func (d deadLetterStore) Missing(ctx context.Context, ids []string) ([]string, error) {
	return d.s.Missing(ctx, ids)
}
func (d deadLetterStore) Write(ctx context.Context, j *job.Job) error {
	return d.s.Put(ctx, dlq.FromJob(j))
}

// reconcile runs the reconciler as if a grace period had passed.
func (b *bundle) reconcile() ReconcileReport {
	b.t.Helper()
	rep, err := b.s.Reconcile(b.ctx, deadLetterStore{dlq.New(b.rdb)}, ReconcileOptions{Grace: time.Minute},
		time.Now().Add(2*time.Minute))
	if err != nil {
		b.t.Fatal(err)
	}
	return rep
}

func (b *bundle) loseTask(queue, id string) {
	b.t.Helper()
	if err := b.rdb.Del(b.ctx, asynqwire.TaskKey(job.AsynqQueue(queue, testModel), id)).Err(); err != nil {
		b.t.Fatal(err)
	}
}

// TestReconcileGivesLostJobsATask (review hole 7): jobs that are not final
// and have no task — lost in a failover, left by a Submit whose enqueue
// failed or by an interrupted requeue — get one again, made from their
// records; a job whose task is there is left alone.
func TestReconcileGivesLostJobsATask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	single := b.submit()
	b.loseTask(job.QueueInteractive, single)
	ids := b.batch("lost", 3, 3, true)
	b.loseTask(job.QueueBatch, ids[0])
	running := b.begin(ids[1]) // its worker died and the task went with it
	b.loseTask(job.QueueBatch, ids[1])
	// A requeue interrupted between the reset and the task.
	requeued := b.submit()
	b.finish(b.begin(requeued).Delivery, died)
	dead, _ := b.s.Get(b.ctx, requeued, true)
	if _, _, err := b.s.Requeue(b.ctx, DeadJob{ID: requeued, Queue: job.QueueInteractive, Model: testModel,
		DeadAt: dead.FinishedAt}, time.Now()); err != nil {
		t.Fatal(err)
	}
	b.loseTask(job.QueueInteractive, requeued)
	untouched := b.submit()

	rep := b.reconcile()
	if rep.TasksRecreated != 4 || rep.Lost != 0 {
		t.Errorf("report %+v, want 4 tasks made again", rep)
	}
	for _, c := range []struct{ queue, id string }{{job.QueueInteractive, single}, {job.QueueBatch, ids[0]},
		{job.QueueBatch, ids[1]}, {job.QueueInteractive, requeued}, {job.QueueInteractive, untouched}} {
		if !b.taskExists(c.queue, c.id) {
			t.Errorf("job %s has no task after the reconciler ran", c.id)
		}
	}
	// The task made again runs the job; the old delivery's lease is gone.
	if bg := b.begin(ids[1]); bg.Verdict != Run || !bg.Interrupted {
		t.Errorf("job whose worker died: %+v", bg)
	}
	if f := b.finish(running.Delivery, succeeded); f.Written != Stale {
		t.Errorf("the dead worker's late write: %+v", f)
	}
	// A second pass finds nothing to do.
	if rep := b.reconcile(); rep.Repairs() != 0 {
		t.Errorf("second pass repaired %+v", rep)
	}
	totals, err := b.s.ReconcilerStats(b.ctx)
	if err != nil || totals.TasksRecreated != 4 || totals.LastRun.IsZero() {
		t.Errorf("reconciler totals %+v, %v", totals, err)
	}
}

// TestReconcileWritesAMissingDeadLetter: a job recorded dead whose dead
// letter was never written (its worker died between the two, and its task
// was lost) gets its dead letter.
func TestReconcileWritesAMissingDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit()
	b.finish(b.begin(id).Delivery, died)
	b.loseTask(job.QueueInteractive, id)
	rep := b.reconcile()
	if rep.DeadLettersWritten != 1 {
		t.Errorf("report %+v, want 1 dead letter written", rep)
	}
	rec, err := dlq.New(b.rdb).Get(b.ctx, id)
	if err != nil || rec.ErrorCode != "invalid_request" || string(rec.Request) != string(testBody) {
		t.Errorf("dead letter %+v, %v", rec, err)
	}
	// The job has left the reconciler's index.
	if live, _ := b.rdb.ZRange(b.ctx, liveKey, 0, -1).Result(); slices.Contains(live, id) {
		t.Errorf("dead job %s still in the live index", id)
	}
}

// TestReconcileCompletesAnInterruptedCancel: a cancel that stopped midway
// is finished; a job requeued after a cancel that went through runs.
func TestReconcileCompletesAnInterruptedCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("halfway", 3, 3, true)
	// The batch is marked canceled; the process died before the jobs.
	if err := cancelBatchScript.Run(b.ctx, b.rdb, []string{batchKey("halfway")}, fmtTime(time.Now()), "canceled").Err(); err != nil {
		t.Fatal(err)
	}
	rep := b.reconcile()
	if rep.CancelsCompleted != 3 {
		t.Errorf("report %+v, want 3 cancels completed", rep)
	}
	bt := b.getBatch("halfway")
	if !bt.Over() || bt.Canceled != 3 {
		t.Errorf("batch %+v", bt)
	}
	for _, id := range ids {
		if st := b.state(id); st != job.StateCanceled {
			t.Errorf("job %s is %s", id, st)
		}
	}
}

// TestReconcilePrunesExpiredBatches (review hole 7): the batch list loses
// the batches whose records have expired, whether or not anyone lists.
func TestReconcilePrunesExpiredBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.batch("kept", 1, 1, true)
	b.batch("expired", 1, 1, true)
	if err := b.rdb.Del(b.ctx, batchKey("expired")).Err(); err != nil {
		t.Fatal(err)
	}
	if rep := b.reconcile(); rep.BatchesPruned != 1 {
		t.Errorf("report %+v, want 1 batch pruned", rep)
	}
	if ids, _ := b.rdb.ZRange(b.ctx, batchesKey, 0, -1).Result(); !slices.Equal(ids, []string{"kept"}) {
		t.Errorf("batch list %v", ids)
	}
}

// TestReconcileDeadLettersAJobItCannotRun: a record without its request (a
// job of an earlier version, whose request was in its task) and no task
// cannot be run again: it becomes a dead letter with reason lost, never
// silently dropped.
func TestReconcileDeadLettersAJobItCannotRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit()
	b.loseTask(job.QueueInteractive, id)
	if err := b.rdb.Del(b.ctx, bodyKey(id)).Err(); err != nil {
		t.Fatal(err)
	}
	rep := b.reconcile()
	if rep.Lost != 1 {
		t.Errorf("report %+v, want 1 lost", rep)
	}
	j, err := b.s.Get(b.ctx, id, false)
	if err != nil || j.State != job.StateDead || j.Error == nil || j.Error.Reason != "lost" {
		t.Errorf("job %+v, %v", j, err)
	}
	if _, err := dlq.New(b.rdb).Get(b.ctx, id); err != nil {
		t.Errorf("no dead letter for the lost job: %v", err)
	}
}
