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
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/records"
)

// workers is how many dead letters a bulk action handles at once.
const workers = 16

// pageSize is how many dead letters a bulk action reads from the store at a
// time; it bounds the memory of a bulk action with the number of workers.
const pageSize = 500

// Ops performs operator actions. It is safe for concurrent use.
type Ops struct {
	rdb     redis.UniversalClient
	records *records.Store
	store   *dlq.Store
	insp    *asynq.Inspector
	lanes   *lane.Lanes
	now     func() time.Time
	// quotaAfter is MIMOQ_QUOTA_SUSPECT_AFTER.
	quotaAfter time.Duration
}

// DefaultQuotaSuspectAfter is how long a lane must get nothing but 429s,
// under its configured rate, to be shown as a quota suspect
// (MIMOQ_QUOTA_SUSPECT_AFTER).
const DefaultQuotaSuspectAfter = 10 * time.Minute

// WithQuotaSuspectAfter sets how long a run of 429s under the configured
// rate makes Stats call a lane a quota suspect (0: never). Default
// DefaultQuotaSuspectAfter.
func WithQuotaSuspectAfter(d time.Duration) Option {
	return func(o *Ops) { o.quotaAfter = d }
}

// Option configures Ops.
type Option func(*Ops)

// WithLanes sets the lanes Stats reports (with their configured limits).
// Default: lanes with lane.DefaultLimit for every model.
func WithLanes(l *lane.Lanes) Option { return func(o *Ops) { o.lanes = l } }

// WithResultTTL sets how long the records of requeued jobs are kept once
// final again. Default job.DefaultResultTTL.
func WithResultTTL(d time.Duration) Option {
	return func(o *Ops) { o.records = records.New(o.rdb, d) }
}

// New returns Ops on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Ops {
	o := &Ops{
		rdb:     rdb,
		records: records.New(rdb, job.DefaultResultTTL),
		store:   dlq.New(rdb),
		insp:    asynq.NewInspectorFromRedisClient(rdb),
		now:     time.Now,

		quotaAfter: DefaultQuotaSuspectAfter,
	}
	for _, opt := range opts {
		opt(o)
	}
	if o.lanes == nil {
		o.lanes = lane.NewLanes(rdb, nil)
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
	// SetModel, for a requeue, rewrites each request's model to SetModel
	// (the rest of the body byte for byte as it was), for dead letters of a
	// model the API stopped serving. The caller checks that the model is
	// one the queue accepts.
	SetModel string
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
	return o.each(ctx, sel, opts, true, func(ctx context.Context, rec *dlq.Record) (bool, error) {
		return o.requeueOne(ctx, rec, opts.SetModel)
	})
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

	work := make(chan *dlq.Record, workers*2)
	if !opts.DryRun {
		for range workers {
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

// withModel returns the request body with its model set to model, every
// other field as it was.
func withModel(body []byte, model string) ([]byte, error) {
	req, err := apiclient.ParseRequest(body)
	if err != nil {
		return nil, err
	}
	req.Model = model
	return json.Marshal(req)
}

// requeueOne requeues one dead letter and reports whether it was requeued.
// The job's record is reset to queued with a fresh attempt budget and taken
// out of its batch's dead count in one step (written anew from the dead
// letter if it expired), which also ends every earlier delivery's lease:
// the delivery that dead-lettered the job, if it is still finishing, then
// changes nothing. The job gets its task, and last the dead letter is
// deleted if it is still the one read. Run again after an interruption, it
// finds the job reset by the first run and finishes the rest. A job of a
// canceled batch runs again all the same: a requeue is the operator's own
// decision, made after the cancel; the batch is over again once it ends.
func (o *Ops) requeueOne(ctx context.Context, rec *dlq.Record, setModel string) (bool, error) {
	d := records.DeadJob{ID: rec.ID, BatchID: rec.BatchID, CustomID: rec.CustomID,
		Queue: rec.Queue, Model: rec.Model, Request: rec.Request, DeadAt: rec.DeadAt}
	if setModel != "" && setModel != rec.Model {
		body, err := withModel(rec.Request, setModel)
		if err != nil {
			return false, fmt.Errorf("requeue %s with model %s: %w", rec.ID, setModel, err)
		}
		d.SetModel, d.SetBody = setModel, body
	}
	res, st, err := o.records.Requeue(ctx, d, o.now())
	if err != nil {
		return false, err
	}
	if res == records.NotDead && st == job.StateDead {
		// It died again after this dead letter was read: the newer death
		// has its own dead letter, which replaces this one.
		return false, nil
	}
	ok, err := o.store.DeleteIf(ctx, rec.ID, rec.DeadAt)
	if err != nil {
		return false, err
	}
	return res != records.NotDead && (ok || res == records.AlreadyRequeued), nil
}
