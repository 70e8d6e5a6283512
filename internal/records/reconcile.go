package records

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
)

// DeadLetters is what the reconciler needs of the dead-letter store: which
// dead jobs have no dead letter (a worker died between the two writes and
// its task was lost too), and writing one.
type DeadLetters interface {
	// Missing returns those of ids that have no dead letter.
	Missing(ctx context.Context, ids []string) ([]string, error)
	// Write writes the dead letter of dead job j (with its request and
	// history).
	Write(ctx context.Context, j *job.Job) error
}

// ReconcileReport is what one reconciler pass found and repaired.
type ReconcileReport struct {
	// Checked counts the jobs looked at.
	Checked int `json:"checked"`
	// TasksRecreated counts non-final jobs that had no asynq task (lost
	// in a failover, an interrupted submit or requeue) and got one.
	TasksRecreated int `json:"tasks_recreated"`
	// DeadLettersWritten counts dead jobs that had no dead letter.
	DeadLettersWritten int `json:"dead_letters_written"`
	// CancelsCompleted counts jobs of canceled batches that an
	// interrupted cancel had left queued.
	CancelsCompleted int `json:"cancels_completed"`
	// ExpiriesCompleted counts jobs of batches whose window had ended
	// without an expiry (its deadline entry lost) that the pass expired.
	ExpiriesCompleted int `json:"expiries_completed"`
	// Lost counts jobs that had no task and could not get one (a record
	// without its request): dead-lettered with reason lost.
	Lost int `json:"lost"`
	// BatchesPruned counts expired batches taken out of the batch list.
	BatchesPruned int `json:"batches_pruned"`
	// Unannounced lists batches that ended lately and whose end has not
	// been told (MarkAnnounced): the caller tells their subscribers.
	Unannounced []string `json:"-"`
}

// announceWithin is how recent a batch's end must be for a reconciler pass
// to report it unannounced: older ends are history, not news.
const announceWithin = time.Hour

// markAnnouncedScript notes that a batch's end was told, if the batch is
// still kept. KEYS: batch.
var markAnnouncedScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'announced', 1) end
return 0
`)

// MarkAnnounced notes that batch id's end has been told to its
// subscribers: reconciler passes no longer report it.
func (s *Store) MarkAnnounced(ctx context.Context, id string) error {
	if err := markAnnouncedScript.Run(ctx, s.rdb, []string{batchKey(id)}).Err(); err != nil {
		return fmt.Errorf("batch %s: mark announced: %w", id, err)
	}
	return nil
}

// ReconcileOptions tune a reconciler pass.
type ReconcileOptions struct {
	// Grace is how old a job (or how long a batch without progress) must
	// be before it is checked: a submit in progress writes the record
	// before the task. Default 2 minutes.
	Grace time.Duration
	// Limit bounds the single jobs checked per pass. Default 10,000.
	Limit int
}

// Reconcile finds jobs that are not final and have no asynq task, and
// brings each back (a new task from its record), or dead-letters it as lost
// when it cannot; it writes dead letters a crash left unwritten, completes
// interrupted cancels, and prunes expired batches from the batch list. It is
// safe to run from many processes at once (every repair is idempotent); the
// worker runs it under a fleet-wide lock so that one process does the work.
func (s *Store) Reconcile(ctx context.Context, dl DeadLetters, opts ReconcileOptions, now time.Time) (ReconcileReport, error) {
	if opts.Grace <= 0 {
		opts.Grace = 2 * time.Minute
	}
	if opts.Limit <= 0 {
		opts.Limit = 10000
	}
	var rep ReconcileReport
	if err := s.reconcileLive(ctx, dl, opts, now, &rep); err != nil {
		return rep, err
	}
	if err := s.reconcileBatches(ctx, dl, opts, now, &rep); err != nil {
		return rep, err
	}
	if err := s.recordReport(ctx, rep, now); err != nil {
		return rep, err
	}
	return rep, nil
}

// jobFields are the record fields the reconciler reads, in this order.
var jobFields = []string{"state", "queue", "model", "batch_id", "custom_id"}

type jobView struct {
	id                              string
	state                           job.State
	queue, model, batchID, customID string
	hasBody                         bool
}

func (s *Store) readJobs(ctx context.Context, ids []string) ([]jobView, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	bodies := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, jobKey(id), jobFields...)
		bodies[i] = pipe.Exists(ctx, bodyKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reconcile: read jobs: %w", err)
	}
	out := make([]jobView, len(ids))
	for i, cmd := range cmds {
		v := cmd.Val()
		out[i] = jobView{id: ids[i], state: job.State(toStr(v[0])), queue: toStr(v[1]), model: toStr(v[2]),
			batchID: toStr(v[3]), customID: toStr(v[4]), hasBody: bodies[i].Val() == 1}
	}
	return out, nil
}

// tasksExist reports, for each job, whether asynq holds a task for it.
func (s *Store) tasksExist(ctx context.Context, js []jobView) ([]bool, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(js))
	for i, j := range js {
		cmds[i] = pipe.Exists(ctx, asynqwire.TaskKey(job.AsynqQueue(j.queue, j.model), j.id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reconcile: read tasks: %w", err)
	}
	out := make([]bool, len(js))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

// repair gives each non-final job of js without a task a new one (parked,
// for a batch's jobs, which the caller lists in their backlogs: they take
// their turn in their lane rather than go before every other batch), or
// dead-letters it as lost when its record lacks the request (and writes its
// dead letter). It returns the jobs that stay open.
func (s *Store) repair(ctx context.Context, dl DeadLetters, js []jobView, park bool, now time.Time, rep *ReconcileReport) (kept []jobView, err error) {
	var open []jobView
	for _, j := range js {
		if j.state != "" && !j.state.Final() {
			open = append(open, j)
		}
	}
	if len(open) == 0 {
		return nil, nil
	}
	have, err := s.tasksExist(ctx, open)
	if err != nil {
		return nil, err
	}
	var ps []job.Payload
	var lost []jobView
	for i, j := range open {
		switch {
		case have[i]:
			kept = append(kept, j)
		case !j.hasBody:
			if _, err := s.Abandon(ctx, j.id, j.batchID, &job.Error{Code: "lost", Class: job.ClassExhausted, Reason: "lost",
				Message: "the job's task was lost and its record holds no request to make it again"}, now); err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			rep.Lost++
			j.state = job.StateDead
			lost = append(lost, j)
		default:
			ps = append(ps, job.Payload{JobID: j.id, BatchID: j.batchID, CustomID: j.customID, Queue: j.queue, Model: j.model})
			kept = append(kept, j)
		}
	}
	if len(ps) > 0 {
		tasks := make([]asynqwire.Task, len(ps))
		for i, p := range ps {
			tasks[i] = task(p)
			tasks[i].Parked = park
		}
		res, err := asynqwire.EnqueueMany(ctx, s.rdb, tasks)
		if err != nil {
			return nil, fmt.Errorf("reconcile: %w", err)
		}
		rep.TasksRecreated += res.Enqueued
	}
	if err := s.deadLetters(ctx, dl, lost, rep); err != nil {
		return nil, err
	}
	return kept, nil
}

// deadLetters writes the dead letters missing for the dead jobs of js.
func (s *Store) deadLetters(ctx context.Context, dl DeadLetters, js []jobView, rep *ReconcileReport) error {
	var dead []string
	for _, j := range js {
		if j.state == job.StateDead {
			dead = append(dead, j.id)
		}
	}
	if len(dead) == 0 || dl == nil {
		return nil
	}
	missing, err := dl.Missing(ctx, dead)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	for _, id := range missing {
		j, err := s.Get(ctx, id, true)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if j.State != job.StateDead {
			continue
		}
		if err := dl.Write(ctx, j); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		rep.DeadLettersWritten++
	}
	return nil
}

// reconcileLive checks the single jobs of the live index submitted before
// the grace period: final ones leave the index (dead ones once their dead
// letter is there); open ones without a task get one, and are checked
// again a grace period later.
func (s *Store) reconcileLive(ctx context.Context, dl DeadLetters, opts ReconcileOptions, now time.Time, rep *ReconcileReport) error {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: liveKey, ByScore: true, Start: "-inf",
		Stop: strconv.FormatInt(now.Add(-opts.Grace).UnixMilli(), 10), Count: int64(opts.Limit)}).Result()
	if err != nil {
		return fmt.Errorf("reconcile: read live jobs: %w", err)
	}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		js, err := s.readJobs(ctx, chunk)
		if err != nil {
			return err
		}
		rep.Checked += len(js)
		if err := s.deadLetters(ctx, dl, js, rep); err != nil {
			return err
		}
		kept, err := s.repair(ctx, dl, js, false, now, rep)
		if err != nil {
			return err
		}
		open := make(map[string]bool, len(kept))
		for _, j := range kept {
			open[j.id] = true
		}
		pipe := s.rdb.Pipeline()
		for _, j := range js {
			if open[j.id] {
				pipe.ZAdd(ctx, liveKey, redis.Z{Score: float64(now.UnixMilli()), Member: j.id})
			} else {
				pipe.ZRem(ctx, liveKey, j.id)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("reconcile: update live jobs: %w", err)
		}
	}
	return nil
}

// reconcileBatches audits batches that are not over and have made no
// progress for the grace period (each at most once per grace period: a
// pass that sees progress notes it, a later one audits), and prunes expired
// batches from the batch list.
func (s *Store) reconcileBatches(ctx context.Context, dl DeadLetters, opts ReconcileOptions, now time.Time, rep *ReconcileReport) error {
	ids, err := s.rdb.ZRange(ctx, batchesKey, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("reconcile: list batches: %w", err)
	}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(chunk))
		for i, id := range chunk {
			cmds[i] = pipe.HMGet(ctx, batchKey(id), "state", "finished_at", "succeeded", "dead", "canceled",
				"audit_fin", "audited_ms", "total", "created_ms", "cancel_done", "expired", "expires_ms", "announced")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("reconcile: read batches: %w", err)
		}
		var gone []any
		for i, cmd := range cmds {
			v := cmd.Val()
			if v[0] == nil {
				gone = append(gone, chunk[i])
				continue
			}
			if fin := toStr(v[1]); fin != "" {
				// Over. Its end is told once (its subscribers, the
				// fleet's webhooks): one whose notice was missed, and
				// that ended lately, is reported for telling.
				if t, err := time.Parse(timeLayout, fin); err == nil && v[12] == nil && now.Sub(t) < announceWithin {
					rep.Unannounced = append(rep.Unannounced, chunk[i])
				}
				continue
			}
			// Progress is seen between passes, not written by every job:
			// a batch whose count of final jobs has not moved for the
			// grace period is audited, at most once per grace period.
			st := job.BatchState(toStr(v[0]))
			if exp := int64(atoi(toStr(v[11]))); exp > 0 && exp <= now.UnixMilli() &&
				(st == job.BatchSubmitting || st == job.BatchRunning) {
				// Its window ended and no expiry ran (its entry in the
				// index of deadlines was lost): end it now.
				n, err := s.ExpireBatch(ctx, chunk[i], now)
				if err != nil {
					return fmt.Errorf("reconcile: %w", err)
				}
				rep.ExpiriesCompleted += n
				// That is progress: noted, so that a later pass audits
				// what still runs.
				c, err := s.rdb.HMGet(ctx, batchKey(chunk[i]), "succeeded", "dead", "canceled", "expired").Result()
				if err != nil {
					return fmt.Errorf("reconcile: batch %s: %w", chunk[i], err)
				}
				fin := atoi(toStr(c[0])) + atoi(toStr(c[1])) + atoi(toStr(c[2])) + atoi(toStr(c[3]))
				if err := s.rdb.HSet(ctx, batchKey(chunk[i]), "audit_fin", fin, "audited_ms", now.UnixMilli()).Err(); err != nil {
					return fmt.Errorf("reconcile: batch %s: %w", chunk[i], err)
				}
				continue
			}
			fin := atoi(toStr(v[2])) + atoi(toStr(v[3])) + atoi(toStr(v[4])) + atoi(toStr(v[10]))
			if fin != atoi(toStr(v[5])) {
				if err := s.rdb.HSet(ctx, batchKey(chunk[i]), "audit_fin", fin, "audited_ms", now.UnixMilli()).Err(); err != nil {
					return fmt.Errorf("reconcile: batch %s: %w", chunk[i], err)
				}
				continue
			}
			if int64(atoi(toStr(v[6]))) > now.Add(-opts.Grace).UnixMilli() {
				continue
			}
			interrupted := (st == job.BatchCanceled || st == job.BatchExpired) && toStr(v[9]) == ""
			if err := s.auditBatch(ctx, dl, chunk[i], st, interrupted, atoi(toStr(v[7])), int64(atoi(toStr(v[8]))), now, rep); err != nil {
				return err
			}
		}
		if len(gone) > 0 {
			if err := s.rdb.ZRem(ctx, batchesKey, gone...).Err(); err != nil {
				return fmt.Errorf("reconcile: prune batches: %w", err)
			}
			rep.BatchesPruned += len(gone)
		}
	}
	return nil
}

// auditBatch checks every job of a batch (in state st) that made no
// progress, and completes its cancel or expiry when that was interrupted
// (a job requeued after a cancel that went through runs: the requeue came
// later).
func (s *Store) auditBatch(ctx context.Context, dl DeadLetters, id string, st job.BatchState, cancelInterrupted bool, total int, createdMs int64, now time.Time, rep *ReconcileReport) error {
	if cancelInterrupted {
		n, err := s.endBatchEarly(ctx, id, st, now)
		if err != nil {
			return fmt.Errorf("reconcile: batch %s: %w", id, err)
		}
		rep.CancelsCompleted += n
	}
	for start := 0; start < total; start += 500 {
		n := min(500, total-start)
		ids := make([]string, n)
		for i := range n {
			ids[i] = batchJobID(id, createdMs, start+i)
		}
		js, err := s.readJobs(ctx, ids)
		if err != nil {
			return err
		}
		rep.Checked += len(js)
		if err := s.deadLetters(ctx, dl, js, rep); err != nil {
			return err
		}
		if _, err := s.repair(ctx, dl, js, true, now, rep); err != nil {
			return err
		}
		// Its jobs not final go (back) into its backlogs: one whose
		// parked task lost its entry (a failover that kept one write and
		// not the other, or that brought back a released task parked)
		// would wait for ever. The feeder takes out those whose task is
		// not parked.
		var entries []backlogEntry
		queue := ""
		for i, j := range js {
			if j.state != "" && !j.state.Final() {
				entries = append(entries, backlogEntry{id: j.id, model: j.model, line: start + i})
				queue = j.queue
			}
		}
		if err := s.addBacklog(ctx, id, queue, entries); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		if err := s.dropFinalParked(ctx, js); err != nil {
			return err
		}
	}
	if err := s.rdb.HSet(ctx, batchKey(id), "audited_ms", now.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("reconcile: batch %s: %w", id, err)
	}
	return nil
}

// dropFinalParked deletes the parked tasks of the final jobs of js: a task
// parked again by a failover after its job ended, or parked by a submit
// that died before the job's backlog entry was written and whose batch was
// canceled, would otherwise wait (and be counted as waiting) for ever.
func (s *Store) dropFinalParked(ctx context.Context, js []jobView) error {
	byQueue := map[string][]string{}
	for _, j := range js {
		if j.state.Final() && j.queue != "" && j.model != "" {
			q := job.AsynqQueue(j.queue, j.model)
			byQueue[q] = append(byQueue[q], j.id)
		}
	}
	for q, ids := range byQueue {
		if _, err := asynqwire.DropParked(ctx, s.rdb, q, ids); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
	}
	return nil
}

// ReconcilerTotals is what the reconciler did over its life, as `mimoq
// stats` shows it.
type ReconcilerTotals struct {
	LastRun time.Time `json:"last_run,omitzero"`
	ReconcileReport
}

func (s *Store) recordReport(ctx context.Context, r ReconcileReport, now time.Time) error {
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, reconcilerKey, "last_run", fmtTime(now))
	for k, v := range map[string]int{"checked": r.Checked, "tasks_recreated": r.TasksRecreated,
		"dead_letters_written": r.DeadLettersWritten, "cancels_completed": r.CancelsCompleted, "lost": r.Lost,
		"batches_pruned": r.BatchesPruned} {
		if v > 0 {
			pipe.HIncrBy(ctx, reconcilerKey, k, int64(v))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("reconcile: record report: %w", err)
	}
	return nil
}

// ReconcilerStats reads what the reconciler has done so far.
func (s *Store) ReconcilerStats(ctx context.Context) (ReconcilerTotals, error) {
	h, err := s.rdb.HGetAll(ctx, reconcilerKey).Result()
	if err != nil {
		return ReconcilerTotals{}, fmt.Errorf("reconciler stats: %w", err)
	}
	var t ReconcilerTotals
	t.LastRun, _ = time.Parse(timeLayout, h["last_run"])
	t.Checked, t.TasksRecreated, t.DeadLettersWritten = atoi(h["checked"]), atoi(h["tasks_recreated"]), atoi(h["dead_letters_written"])
	t.CancelsCompleted, t.Lost, t.BatchesPruned = atoi(h["cancels_completed"]), atoi(h["lost"]), atoi(h["batches_pruned"])
	return t, nil
}

// Repairs is how many repairs a report counts.
func (r ReconcileReport) Repairs() int {
	return r.TasksRecreated + r.DeadLettersWritten + r.CancelsCompleted + r.ExpiriesCompleted + r.Lost
}
