// Package ops is what an operator does to the queue: requeue or delete dead
// letters (one, a list, or every one matching a filter), export them, and
// read the numbers `mimoq stats` and the web page show. The command line
// (`mimoq dlq`, `mimoq stats`), the HTTP API and the web page all call it, so
// that each action means the same wherever it is started.
//
// Bulk actions stream the dead-letter store page by page, so memory stays
// bounded however many records match, and run a few goroutines for
// throughput. Every step of a requeue is idempotent: an interrupted bulk
// requeue is finished by running it again.
package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
)

// DefaultWorkers is how many dead letters a bulk action handles at once.
const DefaultWorkers = 16

// pageSize is how many dead letters a bulk action reads from the store at a
// time; it bounds the memory of a bulk action with the number of workers.
const pageSize = 500

// Ops performs operator actions. It is safe for concurrent use.
type Ops struct {
	rdb     redis.UniversalClient
	client  *enqueue.Client
	records *enqueue.Records
	store   *dlq.Store
	insp    *asynq.Inspector
	lanes   *lane.Lanes
	queues  []string
	workers int
	prefix  string
	now     func() time.Time
}

// Option configures Ops.
type Option func(*Ops)

// WithLanes sets the lanes Stats reports (with their configured limits).
// Default: lanes with lane.DefaultLimit for every model.
func WithLanes(l *lane.Lanes) Option { return func(o *Ops) { o.lanes = l } }

// WithQueues sets the mimoq queues Stats always reports, besides those it
// finds in Redis. Default interactive and batch.
func WithQueues(queues ...string) Option {
	return func(o *Ops) { o.queues = slices.Clone(queues) }
}

// WithWorkers sets how many dead letters a bulk action handles at once.
// Default DefaultWorkers.
func WithWorkers(n int) Option {
	return func(o *Ops) {
		if n > 0 {
			o.workers = n
		}
	}
}

// New returns Ops on rdb, re-enqueueing through client and reading dead
// letters from store.
func New(rdb redis.UniversalClient, client *enqueue.Client, store *dlq.Store, opts ...Option) *Ops {
	o := &Ops{
		rdb:     rdb,
		client:  client,
		records: client.Records(),
		store:   store,
		insp:    asynq.NewInspectorFromRedisClient(rdb),
		queues:  []string{enqueue.QueueInteractive, enqueue.QueueBatch},
		workers: DefaultWorkers,
		prefix:  client.Records().Prefix(),
		now:     time.Now,
	}
	for _, opt := range opts {
		opt(o)
	}
	if o.lanes == nil {
		o.lanes = lane.NewLanes(rdb, nil, o.queues)
	}
	return o
}

// Selection says which dead letters an action applies to: the ones listed
// in IDs, or with All every one that matches Filter. With IDs, Filter (when
// set) narrows them further.
type Selection struct {
	IDs    []string
	All    bool
	Filter dlq.Filter
}

// Options tune a bulk action.
type Options struct {
	// DryRun counts what would be done and changes nothing.
	DryRun bool
	// Progress, when set, is told how many of total are done, now and then
	// (from one goroutine at a time; total may grow when records arrive
	// while the action runs).
	Progress func(done, total int)
}

// Result is what an action did.
type Result struct {
	// Matched is the number of dead letters selected.
	Matched int `json:"matched"`
	// Done is the number requeued or deleted (0 in a dry run).
	Done int `json:"done"`
	// NotDead lists the IDs given that are not in the dead-letter store.
	NotDead []string `json:"not_dead,omitempty"`
	// DryRun is set when nothing was changed.
	DryRun bool `json:"dry_run"`
}

// ErrNoSelection is returned when a Selection has neither IDs nor All.
var ErrNoSelection = errors.New("select dead letters by ID or with All")

// Requeue gives each selected dead letter a fresh attempt budget and puts
// its job back on its queue, then removes the dead letter. See requeueOne
// for the steps and why re-running an interrupted requeue is safe.
func (o *Ops) Requeue(ctx context.Context, sel Selection, opts Options) (Result, error) {
	return o.each(ctx, sel, opts, true, o.requeueOne)
}

// Delete removes the selected dead letters. Their job records stay as they
// are, in state dead, until they expire.
func (o *Ops) Delete(ctx context.Context, sel Selection, opts Options) (Result, error) {
	return o.each(ctx, sel, opts, false, func(ctx context.Context, rec *dlq.Record) (bool, error) {
		// DeleteIf: a job that died again since it was read is a new dead
		// letter the operator has not seen.
		return o.store.DeleteIf(ctx, rec.ID, rec.DeadAt)
	})
}

// each applies fn to every selected dead letter with o.workers goroutines.
// detail says whether fn needs the request and history.
func (o *Ops) each(ctx context.Context, sel Selection, opts Options, detail bool,
	fn func(context.Context, *dlq.Record) (bool, error)) (Result, error) {
	res := Result{DryRun: opts.DryRun}
	if len(sel.IDs) == 0 && !sel.All {
		return res, ErrNoSelection
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		total, done, matched atomic.Int64
		firstErr             error
		errOnce              sync.Once
		wg                   sync.WaitGroup
		progMu               sync.Mutex
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	report := func() {
		if opts.Progress == nil {
			return
		}
		progMu.Lock()
		defer progMu.Unlock()
		opts.Progress(int(matched.Load()), int(max(total.Load(), matched.Load())))
	}

	work := make(chan *dlq.Record, o.workers*2)
	if !opts.DryRun {
		for range o.workers {
			wg.Go(func() {
				for rec := range work {
					if ctx.Err() != nil {
						continue // drain
					}
					ok, err := fn(ctx, rec)
					if err != nil {
						fail(err)
						continue
					}
					if ok {
						done.Add(1)
					}
					if n := matched.Add(1); n%100 == 0 {
						report()
					}
				}
			})
		}
	}
	emit := func(rec *dlq.Record) error {
		if opts.DryRun {
			matched.Add(1)
			return nil
		}
		select {
		case work <- rec:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	var err error
	if len(sel.IDs) > 0 {
		total.Store(int64(len(sel.IDs)))
		res.NotDead, err = o.byIDs(ctx, sel.IDs, sel.Filter, detail, emit)
	} else {
		var n int64
		if n, err = o.store.Count(ctx, sel.Filter); err == nil {
			total.Store(n)
			report()
			if opts.DryRun {
				matched.Store(n)
			} else {
				err = o.store.Iterate(ctx, sel.Filter, pageSize, func(r dlq.Record) error { return emit(&r) },
					dlq.WithDetail(detail))
			}
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		err = firstErr
	}
	res.Matched, res.Done = int(matched.Load()), int(done.Load())
	report()
	return res, err
}

// byIDs reads the dead letters of ids one by one, hands those that match f
// to emit and returns the IDs that are not dead letters.
func (o *Ops) byIDs(ctx context.Context, ids []string, f dlq.Filter, detail bool, emit func(*dlq.Record) error) ([]string, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var notDead []string
	for _, id := range ids {
		rec, err := o.store.Get(ctx, id)
		if errors.Is(err, dlq.ErrNotFound) {
			notDead = append(notDead, id)
			continue
		}
		if err != nil {
			return notDead, err
		}
		if !detail {
			rec.Request, rec.History = nil, nil
		}
		if !f.Match(rec) {
			continue
		}
		if err := emit(rec); err != nil {
			return notDead, err
		}
	}
	return notDead, nil
}

// requeueOne requeues one dead letter and reports whether it was requeued
// (false: it was gone or had died again in the meantime). The steps, each
// idempotent, in an order that never leaves a job both queued and listed as
// dead for longer than this call:
//
//  1. Reset the job record to queued with a fresh attempt budget (recreate
//     it from the dead letter if it expired). A job found running or
//     succeeded was requeued by an earlier, interrupted run: only step 4
//     is left to do.
//  2. Take the job out of its batch's final count.
//  3. Enqueue its asynq task again (task ID = job ID).
//  4. Delete the dead letter, if it is still the one read (same DeadAt).
func (o *Ops) requeueOne(ctx context.Context, rec *dlq.Record) (bool, error) {
	st, err := o.records.Reset(ctx, rec.ID, o.now())
	fresh := err == nil && st == enqueue.StateQueued
	if errors.Is(err, enqueue.ErrNotFound) {
		if _, _, err = o.records.Create(ctx, payloadOf(rec)); err != nil {
			return false, err
		}
		st, fresh = enqueue.StateQueued, true
	} else if err != nil {
		return false, err
	}
	switch st {
	case enqueue.StateQueued:
		if err := o.enqueue(ctx, rec, fresh); err != nil {
			return false, err
		}
	case enqueue.StateRunning, enqueue.StateRetrying, enqueue.StateSucceeded:
		// An earlier requeue went through and a worker took the job.
	default:
		// Dead or canceled again: Reset changes those, so this cannot be
		// reached; leave the dead letter alone rather than lose it.
		return false, fmt.Errorf("requeue job %s: job is %s after reset", rec.ID, st)
	}
	ok, err := o.store.DeleteIf(ctx, rec.ID, rec.DeadAt)
	if err != nil {
		return false, err
	}
	// A dead letter replaced since it was read means the job ran and died
	// again: it was requeued all the same.
	return ok || st == enqueue.StateQueued, nil
}

// enqueue does steps 2 and 3 of requeueOne for a job whose record is
// queued. fresh is false when Reset found the job queued already, i.e. an
// earlier run reset it: if that run also enqueued the task, the batch count
// was taken back then, and the task may have run and been counted anew.
func (o *Ops) enqueue(ctx context.Context, rec *dlq.Record, fresh bool) error {
	qname := enqueue.AsynqQueue(rec.Queue, rec.Model)
	if !fresh {
		info, err := o.insp.GetTaskInfo(qname, rec.ID)
		if err == nil && info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted {
			return nil // enqueued by the earlier run
		}
	}
	if rec.BatchID != "" {
		if err := o.records.UncountFinal(ctx, rec.BatchID, rec.ID, enqueue.StateDead); err != nil {
			return err
		}
	}
	p := payloadOf(rec)
	// A conflict means asynq still holds a task with the job's ID: the
	// delivery that dead-lettered the job may not have returned yet
	// (active), or asynq archived it. Wait for the first, replace the second.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := o.client.Requeue(ctx, p)
		if !errors.Is(err, asynq.ErrTaskIDConflict) {
			return err
		}
		info, ierr := o.insp.GetTaskInfo(qname, rec.ID)
		switch {
		case errors.Is(ierr, asynq.ErrTaskNotFound), errors.Is(ierr, asynq.ErrQueueNotFound):
			continue // gone in between: enqueue again
		case ierr != nil:
			return fmt.Errorf("requeue job %s: %w", rec.ID, ierr)
		}
		switch info.State {
		case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry, asynq.TaskStateAggregating:
			return nil // it will run
		case asynq.TaskStateArchived, asynq.TaskStateCompleted:
			if err := o.insp.DeleteTask(qname, rec.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return fmt.Errorf("requeue job %s: remove old task: %w", rec.ID, err)
			}
		case asynq.TaskStateActive:
			if time.Now().After(deadline) {
				return fmt.Errorf("requeue job %s: its previous delivery is still active", rec.ID)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// payloadOf rebuilds the task payload of a dead letter's job.
func payloadOf(rec *dlq.Record) *enqueue.Payload {
	submitted := rec.DeadAt
	if len(rec.History) > 0 && !rec.History[0].Start.IsZero() {
		submitted = rec.History[0].Start
	}
	return &enqueue.Payload{
		JobID: rec.ID, BatchID: rec.BatchID, CustomID: rec.CustomID, Queue: rec.Queue, Model: rec.Model,
		Body: rec.Request, SubmittedAt: submitted.UTC(),
	}
}
