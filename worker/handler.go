package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/jsonscan"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
	"github.com/mimoq/mimoq/internal/records"
)

// Headers the worker sends with every call, so that the API side (and
// mockapi's duplicate counter) can tell jobs and attempts apart.
const (
	HeaderJobID   = "X-Mimoq-Job-Id"
	HeaderAttempt = "X-Mimoq-Attempt"
)

// laterError hands the task back to asynq, to be delivered again after
// Delay. Requeue marks one that is no failure (a wait, a put-back, a
// shutdown): it burns no attempt and is not counted as a failure.
type laterError struct {
	Delay   time.Duration
	Requeue bool
	Cause   error
}

func (e *laterError) Error() string {
	if e.Requeue {
		return fmt.Sprintf("requeued for %s (%v)", e.Delay, e.Cause)
	}
	return fmt.Sprintf("retry in %s: %v", e.Delay, e.Cause)
}
func (e *laterError) Unwrap() error { return e.Cause }

// storageError is a failure of mimoq's own storage (Redis): the task comes
// back with a backoff that grows with asynq's count of its retries, so a
// persistent error neither spins nor ever turns the job into a dead letter.
type storageError struct{ err error }

func (e *storageError) Error() string { return "store: " + e.err.Error() }
func (e *storageError) Unwrap() error { return e.err }

// storageBackoff is the delay of the n-th retry of a task after storage
// errors: 1 s doubling to 1 min, with jitter.
func storageBackoff(n int) time.Duration {
	d := time.Minute
	if n < 6 {
		d = time.Second << n
	}
	return d + time.Duration(rand.Float64()*float64(time.Second))
}

// retryDelay is asynq's RetryDelayFunc: the delay the handler chose, the
// storage backoff, or none for a lease that expired (a crashed worker's job
// goes back at once; Begin holds it until it is due).
func retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var le *laterError
	if errors.As(err, &le) {
		return le.Delay
	}
	var se *storageError
	if errors.As(err, &se) {
		return storageBackoff(n)
	}
	return 0
}

// isFailure tells asynq's statistics which errors are failures.
func isFailure(err error) bool {
	var le *laterError
	return !errors.As(err, &le) || !le.Requeue
}

// taskPayload is a task's payload as any version wrote it: tasks of
// versions before the request moved into the job's record carry it too.
type taskPayload struct {
	job.Payload
	Body json.RawMessage `json:"body,omitempty"`
}

// decodePayload reads a task's payload: a scan over its members rather than
// encoding/json's reflection, on the path of every delivery.
func decodePayload(b []byte) (taskPayload, error) {
	var p taskPayload
	if !json.Valid(b) {
		return p, errors.New("not JSON")
	}
	err := jsonscan.Members(b, func(key string, val []byte) error {
		var dst *string
		switch key {
		case "job_id":
			dst = &p.JobID
		case "batch_id":
			dst = &p.BatchID
		case "custom_id":
			dst = &p.CustomID
		case "queue":
			dst = &p.Queue
		case "model":
			dst = &p.Model
		case "body":
			p.Body = json.RawMessage(val)
			return nil
		default:
			return nil
		}
		if val[0] != '"' {
			return fmt.Errorf("%s is not a string", key)
		}
		var err error
		*dst, err = jsonscan.String(val)
		return err
	})
	if err != nil {
		return p, err
	}
	if p.JobID == "" {
		return p, errors.New("no job_id")
	}
	return p, nil
}

// ProcessTask handles one delivery of a job: it brings the job one step
// towards its final state and returns nil once the outcome is safely
// stored, or an error that hands the task back to asynq.
func (w *Worker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := decodePayload(t.Payload())
	if err != nil {
		// Not a task mimoq wrote. Archive it; the sweeper dead-letters it.
		return fmt.Errorf("decode payload: %v: %w", err, asynq.SkipRetry)
	}
	leftAtStart := timeLeft(ctx)
	log := w.log.With().Str("job_id", p.JobID).Str("batch_id", p.BatchID).
		Str("custom_id", p.CustomID).Str("model", p.Model).Logger()
	ctx = log.WithContext(ctx)
	// Every wait before the call ends when shutdown begins: the job goes
	// back at once.
	wait, stopWait := w.drainable(ctx)
	defer stopWait()

	// What needs no call (Begin, settle, drop, dead-letter) takes no slot:
	// attempt takes one for the call only, after the permit.
	lease := w.leases.next()
	for {
		var b records.Begun
		if err := durably(ctx, func(ctx context.Context) (err error) {
			b, err = w.records.Begin(ctx, p.JobID, lease, w.cfg.ID, time.Now())
			return err
		}); err != nil {
			return &storageError{err}
		}
		act := decideStart(b, w.policy)
		switch act.Kind {
		case ActCall:
			if b.Interrupted {
				log.Warn().Int("interrupts", b.Interrupts).Msg("job was interrupted in an earlier delivery")
			}
			return w.attempt(ctx, wait, p.Queue, b, leftAtStart, log)
		case ActDrop:
			if p.Body != nil {
				// A task of an earlier version, whose record is in the
				// old layout: kept as a dead letter, one requeue away.
				return w.deadLetterLegacy(ctx, p)
			}
			// Its record expired after a final state (a canceled job's task
			// found late): nothing to run, nothing lost.
			w.metrics.dropped.Inc()
			log.Info().Msg("task of a job without a record dropped")
			return nil
		case ActSettle:
			if b.JustExpired {
				w.countExpired(ctx, p.BatchID, 1)
				log.Info().Msg("job expired: its deadline passed before it started")
			}
			if err := w.settle(ctx, p.JobID, b.State); err != nil {
				return err
			}
			// A final job's task seen again: its end may not have been
			// told (its worker died after the outcome was stored). A
			// batch's jobs have no webhook of their own (their batch
			// has), so only fleet endpoints can want theirs.
			return w.tell(ctx, p.JobID, p.BatchID, p.BatchID == "", b.State, false)
		case ActDeadLetter:
			return w.deadLetterUnstarted(ctx, b.Delivery, &job.Error{Code: "worker_interrupted", Class: act.Class,
				Reason: act.Reason, Message: fmt.Sprintf("the job interrupted its worker %d times", b.Interrupts)})
		case ActWait:
			d := time.Until(act.At)
			if d > w.policy.ShortWait {
				return &laterError{Delay: d, Requeue: true, Cause: errors.New("not due yet")}
			}
			// asynq keeps retry times in whole seconds and hands retries
			// over up to a second early: wait out the rest here, then ask
			// again.
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-wait.Done():
				t.Stop()
				return &laterError{Delay: time.Until(act.At), Requeue: true, Cause: wait.Err()}
			}
		}
	}
}

// timeLeft is the time until asynq ends this delivery, or -1 for no end.
func timeLeft(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), 0)
	}
	return -1
}

// attempt makes the next call of the job begun as b. wait is ctx that also
// ends when shutdown begins, for the wait for a permit and a slot; queue is
// the job's queue, its class in the slot pool; leftAtStart is the time the
// delivery had when it began.
func (w *Worker) attempt(ctx, wait context.Context, queue string, b records.Begun, leftAtStart time.Duration,
	log zerolog.Logger) error {
	d, n := b.Delivery, b.Attempts+1
	req, err := apiclient.ParseRequest(b.Body)
	if err == nil {
		err = w.validate(req)
	}
	if err != nil {
		// Validated at submit time; the catalog may have changed since.
		return w.carryOut(ctx, d, b.Model, n, decide(apiclient.Classify(err), false, n, w.policy, time.Now()), nil, err, 0, time.Now(), log)
	}

	// A permit of the fleet-wide rate limit, then a slot, for at most
	// MaxHold together. Neither the wait nor a put-back while waiting
	// (shutdown, paused lane, no slot) counts as an attempt.
	permit, release, err := w.callTurn(wait, b.Model, queue, int64(req.EstimatePromptTokens()+req.MaxOutputTokens()))
	if err != nil {
		due := time.Time{}
		reason := "no_permit"
		switch {
		case errors.Is(err, lane.ErrPaused):
			due, reason = time.Now().Add(time.Second), "lane_paused"
		case errors.Is(err, errNoSlot):
			reason = "no_slot"
		}
		return w.putBack(ctx, d, nil, due, reason)
	}
	if act := decideCall(timeLeft(ctx), leftAtStart, w.policy); act.Kind == ActPutBack {
		release()
		permit.Cancel()
		return w.putBack(ctx, d, nil, time.Time{}, act.Reason)
	}

	w.metrics.inflight.Inc()
	start := time.Now()
	resp, callErr := w.api.Do(ctx, req, w.callModels(),
		apiclient.WithHeader(HeaderJobID, d.JobID), apiclient.WithHeader(HeaderAttempt, strconv.Itoa(n)))
	elapsed := time.Since(start)
	w.metrics.inflight.Dec()
	// The slot is for the call: storing its outcome needs none.
	release()

	cl := apiclient.Classify(callErr)
	if cl.Class != apiclient.ClassNone || callErr == nil {
		c := ops.MinuteCounts{Calls: 1}
		if callErr == nil {
			c.Succeeded = 1
		}
		if cl.StatusCode == http.StatusTooManyRequests {
			c.RateLimited = 1
		}
		w.counts.add(b.Model, c)
	}
	var u *job.Usage
	if callErr == nil {
		u = usageOf(resp)
	}
	permit.Done(tokensUsed(u, permit.Tokens))
	if reason, gone := w.modelGone(ctx, b.Model, cl, start); gone {
		return w.notServed(ctx, d, b.Model, n, callErr, elapsed, start, reason, log)
	}
	act := decide(cl, callErr == nil, n, w.policy, time.Now())
	return w.carryOut(ctx, d, b.Model, n, act, resp, callErr, elapsed, start, log)
}

// slotGrace bounds how long a job holding a permit waits for a slot before
// it gives the permit up: one interval of the lane, within [minSlotGrace,
// maxSlotGrace]. The lane hands its permits out evenly spaced, one request
// slot each; a call made d after its slot lands on the following ones.
// Within one interval it never passes the next permit's slot, so no window
// at the API sees more than one call beyond the rate; the cap keeps that one
// call within the Gate's 1 % headroom of a minute window at MiMo's 100 RPM
// (an interval of 606 ms). The fetcher's own tolerance (maxLate, 5 ms)
// would be too short: slots free one call's latency over Concurrency apart,
// so under contention nearly every permit would be given up. The floor
// keeps a process whose slots are all busy from cycling permits of a fast
// lane (over 3,000 RPM) through Redis faster than 50 a second per waiter,
// at the price of calls up to 20 ms late there (2 % of a 1-s window).
func slotGrace(interval time.Duration) time.Duration {
	return min(max(interval, minSlotGrace), maxSlotGrace)
}

const (
	minSlotGrace = 20 * time.Millisecond
	maxSlotGrace = 250 * time.Millisecond
)

// errNoSlot says that permits kept coming but no slot of the process freed
// in time for any of them.
var errNoSlot = errors.New("no slot free")

// callTurn waits for what a call of model needs, in this order: a permit of
// the model's lane, then one of the process's slots (shared by every
// model's servers) for a job of class. It never waits for one while it
// holds the other's turn: a lane cooling down, paused or rate-limited below
// its demand holds no slot, and other models' jobs keep theirs. A permit
// whose slot does not come within its grace (slotGrace) is canceled and a
// new one awaited, so that calls stay paced; a lane without a request limit
// has no pace to keep, and waits for its slot. The whole wait ends after MaxHold, or when wait ends. The
// caller gives the slot back as soon as its call returns.
func (w *Worker) callTurn(wait context.Context, model, class string, estTokens int64) (*lane.Permit, func(), error) {
	hold, endHold := context.WithTimeout(wait, w.cfg.MaxHold)
	defer endHold()
	gaveUp := false // a permit was given up for want of a slot
	for {
		start := time.Now()
		permit, err := w.gate.Wait(hold, model, estTokens)
		w.metrics.limiterWait.WithLabelValues(model).Observe(time.Since(start).Seconds())
		if err != nil {
			if gaveUp && hold.Err() != nil && wait.Err() == nil {
				// MaxHold ended while waiting for the next permit: it is
				// the slots that were missing, not the lane.
				return nil, nil, fmt.Errorf("%w: %w", errNoSlot, err)
			}
			return nil, nil, err
		}
		if release, ok := w.slots.TryAcquire(); ok {
			return permit, release, nil
		}
		grace, endGrace := hold, context.CancelFunc(func() {})
		if permit.Interval > 0 {
			grace, endGrace = context.WithTimeout(hold, slotGrace(permit.Interval))
		}
		release, err := w.slots.Acquire(grace, class)
		endGrace()
		if err == nil {
			return permit, release, nil
		}
		permit.Cancel()
		gaveUp = true
		if err := hold.Err(); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errNoSlot, err)
		}
	}
}

// modelGone reports whether a 400 or 404 came because the API stopped
// serving model: it is missing from a fresh reading of GET /models. Then
// every other job of the model would fail alike, and the lane pauses
// (model_not_served) instead of dead-lettering them one by one. Without a
// live catalog (or a reading) it cannot tell, and says no.
func (w *Worker) modelGone(ctx context.Context, model string, cl apiclient.Classification, start time.Time) (string, bool) {
	if !w.catalogOn() || cl.Class != apiclient.ClassTerminal || (cl.StatusCode != 400 && cl.StatusCode != 404) {
		return "", false
	}
	c, err := w.readCatalogFresh(ctx, start)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("re-read live model catalog after a 400/404 failed")
		return "", false
	}
	if c.Has(model) {
		return "", false
	}
	return fmt.Sprintf("%s: %s is not listed by %s (%d)", ReasonModelNotServed, model, c.Source, cl.StatusCode), true
}

// ReasonModelNotServed is the reason of a lane paused because the API no
// longer lists its model.
const ReasonModelNotServed = "model_not_served"

// notServed pauses the lane of a model the API stopped serving and puts the
// job back without counting the attempt: it stays queued with the others
// until the model is served again (a probe) or an operator acts.
func (w *Worker) notServed(ctx context.Context, d records.Delivery, model string, n int, callErr error,
	elapsed time.Duration, start time.Time, reason string, log zerolog.Logger) error {
	if changed, err := w.lanes.PauseForError(ctx, model, reason+" on job "+d.JobID, w.cfg.LaneProbeInterval); err != nil {
		log.Error().Err(err).Msg("pause lane")
	} else if changed {
		log.Warn().Str("reason", reason).Msg("lane paused")
	}
	jerr := jobError(callErr, apiclient.Classify(callErr))
	entry := &job.Attempt{Attempt: n, Start: start.UTC(), DurationMs: elapsed.Milliseconds(), Reason: ReasonModelNotServed,
		Worker: w.cfg.ID, StatusCode: jerr.StatusCode, ErrorCode: jerr.Code, Message: jerr.Message,
		RequestID: jerr.RequestID, Class: job.ClassNone}
	w.metrics.latency.WithLabelValues(model, strconv.Itoa(jerr.StatusCode)).Observe(elapsed.Seconds())
	return w.putBack(ctx, d, entry, time.Now().Add(time.Second), ReasonModelNotServed)
}

// carryOut does what decide said after attempt n: the lane's effects, then
// the job's new state.
func (w *Worker) carryOut(ctx context.Context, d records.Delivery, model string, n int, act Action,
	resp *apiclient.Response, callErr error, elapsed time.Duration, start time.Time, log zerolog.Logger) error {
	if act.Throttled {
		if cool, err := w.gate.Note429(ctx, model, act.RetryAfter, act.Quota); err != nil {
			log.Error().Err(err).Msg("note 429")
		} else {
			act.Cooldown = cool
		}
	}
	if act.Cooldown > 0 {
		if err := w.gate.Cooldown(ctx, model, act.Cooldown); err != nil {
			log.Error().Err(err).Msg("start lane cooldown")
		}
		w.counts.add(model, ops.MinuteCounts{Cooldowns: 1})
	}
	entry := &job.Attempt{Attempt: n, Start: start.UTC(), DurationMs: elapsed.Milliseconds(), Reason: act.Reason,
		Worker: w.cfg.ID}
	ev := func(e *zerolog.Event) *zerolog.Event {
		return e.Int("attempt", n).Int("status", entry.StatusCode).Str("error_code", entry.ErrorCode).
			Str("class", string(entry.Class)).Str("request_id", entry.RequestID).Int64("latency_ms", entry.DurationMs)
	}
	if act.Kind == ActSucceed {
		entry.StatusCode, entry.RequestID, entry.Class = resp.StatusCode, resp.RequestID, job.ClassSuccess
		w.metrics.latency.WithLabelValues(model, strconv.Itoa(resp.StatusCode)).Observe(elapsed.Seconds())
		o := records.Outcome{State: job.StateSucceeded, Counted: true, Entry: entry, Result: resp.Raw,
			StatusCode: resp.StatusCode, RequestID: resp.RequestID, Usage: usageOf(resp),
			ServedModel: resp.ServedModel(model)}
		if o.ServedModel != "" {
			w.servedBy(ctx, model, o.ServedModel, log)
		}
		o.CostPico = w.costOf(cmp.Or(o.ServedModel, model), o.Usage)
		f, err := w.finishW(ctx, d, o)
		if err != nil {
			return err
		}
		if f.Written == records.Applied {
			w.spend(ctx, d, model, o.CostPico, f, log)
		}
		w.metrics.jobs.WithLabelValues("succeeded", string(job.ClassSuccess), model).Inc()
		ev(log.Debug()).Msg("attempt succeeded")
		return nil
	}

	jerr := jobError(callErr, apiclient.Classify(callErr))
	entry.StatusCode, entry.ErrorCode, entry.Message, entry.RequestID = jerr.StatusCode, jerr.Code, jerr.Message, jerr.RequestID
	entry.Class = jerr.Class
	if jerr.StatusCode != 0 || elapsed > 0 {
		w.metrics.latency.WithLabelValues(model, strconv.Itoa(jerr.StatusCode)).Observe(elapsed.Seconds())
	}
	switch act.Kind {
	case ActPutBack:
		entry.Class, entry.Reason = job.ClassNone, "interrupted"
		ev(log.Warn()).Msg("attempt interrupted")
		return w.putBack(ctx, d, entry, act.At, act.Reason)

	case ActRetry:
		entry.NextDelay = time.Until(act.At).Milliseconds()
		o := records.Outcome{State: job.StateRetrying, Counted: true, Entry: entry, Error: jerr,
			StatusCode: jerr.StatusCode, RequestID: jerr.RequestID, DueAt: act.At}
		if err := w.finish(ctx, d, o); err != nil {
			return err
		}
		w.metrics.jobs.WithLabelValues("retried", string(job.ClassRetryable), model).Inc()
		w.counts.outcome(model, "retried", job.ClassRetryable)
		ev(log.Warn()).Int64("next_delay_ms", entry.NextDelay).Msg("attempt failed, will retry")
		return &laterError{Delay: time.Until(act.At), Cause: callErr}

	default: // ActDeadLetter
		jerr.Class = act.Class
		if act.PauseLane {
			reason := fmt.Sprintf("%d %s on job %s", jerr.StatusCode, jerr.Code, d.JobID)
			if _, err := w.lanes.PauseForError(ctx, model, reason, w.cfg.LaneProbeInterval); err != nil {
				log.Error().Err(err).Msg("pause lane")
			} else {
				log.Warn().Str("reason", reason).Msg("lane paused")
			}
		}
		ev(log.Warn()).Str("class", string(act.Class)).Msg("attempt failed, dead-lettered")
		if !act.Counted {
			entry = nil // no call was made: no attempt to record
		}
		o := records.Outcome{State: job.StateDead, Counted: act.Counted, Entry: entry, Error: jerr,
			StatusCode: jerr.StatusCode, RequestID: jerr.RequestID, ErrorBody: errorBodyOf(callErr)}
		if err := w.finish(ctx, d, o); err != nil {
			return err
		}
		w.metrics.jobs.WithLabelValues("dead", string(act.Class), model).Inc()
		w.counts.outcome(model, "dead", act.Class)
		return nil
	}
}

// drainable returns a context that also ends when the worker starts to shut
// down, so that jobs still waiting for a slot or a permit go back at once.
func (w *Worker) drainable(ctx context.Context) (context.Context, func()) {
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(w.drain, cancel)
	return c, func() { stop(); cancel() }
}

// putBack returns the job to queued without counting an attempt (not to be
// taken before due, when set) and hands the task back to asynq.
func (w *Worker) putBack(ctx context.Context, d records.Delivery, entry *job.Attempt, due time.Time, reason string) error {
	w.metrics.jobs.WithLabelValues("requeued", "", "").Inc()
	if err := w.finish(ctx, d, records.Outcome{State: job.StateQueued, Entry: entry, DueAt: due}); err != nil {
		return err
	}
	return &laterError{Delay: max(time.Until(due), 0), Requeue: true, Cause: errors.New(reason)}
}

// finish writes an outcome, durably, and settles what it leaves to do: the
// dead letter of a dead job. When the job has moved on meanwhile (requeued,
// or taken by another delivery), this delivery's outcome is dropped; if the
// job is waiting again, the task is kept for it.
func (w *Worker) finish(ctx context.Context, d records.Delivery, o records.Outcome) error {
	_, err := w.finishW(ctx, d, o)
	return err
}

// finishW is finish that also says what the write did.
func (w *Worker) finishW(ctx context.Context, d records.Delivery, o records.Outcome) (records.Finished, error) {
	var f records.Finished
	if err := durably(ctx, func(ctx context.Context) (err error) {
		f, err = w.records.Finish(ctx, d, o, time.Now())
		return err
	}); err != nil {
		return f, &storageError{err}
	}
	switch f.Written {
	case records.Gone:
		return f, nil
	case records.Stale:
		zerolog.Ctx(ctx).Warn().Str("state", string(f.State)).Msg("job moved on during this delivery; its outcome is dropped")
		if f.State == job.StateQueued || f.State == job.StateRetrying {
			return f, &laterError{Requeue: true, Cause: errRequeued}
		}
		return f, nil
	}
	if f.State == job.StateDead {
		if err := w.settle(ctx, d.JobID, f.State); err != nil {
			return f, err
		}
	}
	return f, w.tell(ctx, d.JobID, d.BatchID, d.Webhook, f.State, f.BatchEnded)
}

// tell notifies the webhook subscribers of a job's end (and of its batch's,
// when that was its last job) before its task is acknowledged: a failure
// keeps the task, and its next delivery tells them.
func (w *Worker) tell(ctx context.Context, id, batchID string, hasOwn bool, st job.State, batchEnded bool) error {
	if err := w.notifyJob(ctx, id, hasOwn, st); err != nil {
		return &storageError{err}
	}
	if batchEnded {
		if err := w.notifyBatch(ctx, batchID); err != nil {
			return &storageError{err}
		}
	}
	return nil
}

// errRequeued says that a dead job was requeued while its delivery was
// finishing: the task is kept for it.
var errRequeued = errors.New("job requeued during its delivery")

// settle makes the side effect of a final state true that its script could
// not write in the same step: the dead letter of a dead job, in the
// dead-letter store's own slot. It is idempotent; a redelivered task runs
// it again. A job found requeued meanwhile gets no dead letter, and keeps
// the task.
func (w *Worker) settle(ctx context.Context, id string, st job.State) error {
	if st != job.StateDead {
		return nil
	}
	requeued := false
	if err := durably(ctx, func(ctx context.Context) error {
		j, err := w.records.Get(ctx, id, true)
		if errors.Is(err, records.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if j.State != job.StateDead {
			requeued = !j.State.Final() && j.State != job.StateRunning
			return nil
		}
		return w.dlq.Put(ctx, dlq.FromJob(j))
	}); err != nil {
		return &storageError{err}
	}
	if requeued {
		return &laterError{Requeue: true, Cause: errRequeued}
	}
	return nil
}

// deadLetterUnstarted dead-letters a job this delivery holds but did not
// call (it interrupted its workers too often).
func (w *Worker) deadLetterUnstarted(ctx context.Context, d records.Delivery, e *job.Error) error {
	zerolog.Ctx(ctx).Warn().Str("reason", e.Reason).Msg("job dead-lettered without a call")
	w.metrics.jobs.WithLabelValues("dead", string(e.Class), "").Inc()
	return w.finish(ctx, d, records.Outcome{State: job.StateDead, Error: e})
}

// deadLetterLegacy keeps the task of an earlier version, which carries its
// request, as a dead letter: `mimoq dlq requeue --all --code record_moved`
// runs such jobs again, their records written in today's layout.
func (w *Worker) deadLetterLegacy(ctx context.Context, p taskPayload) error {
	rec := &dlq.Record{ID: p.JobID, BatchID: p.BatchID, CustomID: p.CustomID, Queue: p.Queue, Model: p.Model,
		Class: job.ClassExhausted, Reason: "legacy_record", ErrorCode: "record_moved",
		ErrorMessage: "a task of an earlier mimoq version, whose job record is in the old layout: requeue it to run it",
		DeadAt:       time.Now().UTC(), Request: p.Body}
	if err := durably(ctx, func(ctx context.Context) error { return w.dlq.Put(ctx, rec) }); err != nil {
		return &storageError{err}
	}
	zerolog.Ctx(ctx).Warn().Msg("task of an earlier version dead-lettered as record_moved")
	return nil
}

// jobError turns an attempt's error into the record's last error.
func jobError(err error, cl apiclient.Classification) *job.Error {
	if err == nil {
		return &job.Error{}
	}
	je := &job.Error{Class: job.Class(cl.Class), Reason: string(cl.Reason), StatusCode: cl.StatusCode,
		Code: string(cl.Reason), Message: err.Error()}
	var ae *apiclient.APIError
	if errors.As(err, &ae) {
		je.StatusCode, je.Code, je.Message, je.Type, je.RequestID = ae.StatusCode, ae.Code, ae.Message, ae.Type, ae.RequestID
	}
	if len(je.Message) > 1000 {
		je.Message = je.Message[:1000]
	}
	return je
}

// errorBodyOf is the API's JSON error body, for the results file.
func errorBodyOf(err error) json.RawMessage {
	var ae *apiclient.APIError
	if errors.As(err, &ae) {
		return ae.Body
	}
	return nil
}

// tokensUsed is what a call counts against the token limit: what the API
// reported, or the reservation when it reported nothing (a failure the API
// may have counted, a 2xx without usage): a missing report is no refund.
func tokensUsed(u *job.Usage, reserved int64) int64 {
	if u == nil || u.TotalTokens <= 0 {
		return reserved
	}
	return u.TotalTokens
}

func usageOf(r *apiclient.Response) *job.Usage {
	u := &job.Usage{PromptTokens: int64(r.Usage.PromptTokens), CompletionTokens: int64(r.Usage.CompletionTokens),
		TotalTokens: int64(r.Usage.TotalTokens)}
	if d := r.Usage.CompletionTokensDetails; d != nil {
		u.ReasoningTokens = int64(d.ReasoningTokens)
	}
	u.CachedTokens = int64(r.Usage.CachedTokens())
	return u
}

// leases hands out the leases of this process's deliveries: unique in the
// fleet (a random prefix per process) without a random read per delivery.
type leases struct {
	prefix string
	n      atomic.Uint64
}

func newLeases() *leases { return &leases{prefix: records.NewLease() + "-"} }

func (l *leases) next() string { return l.prefix + strconv.FormatUint(l.n.Add(1), 36) }

// durably runs write until it succeeds or storeTimeout passes, with a
// context that keeps ctx's values but not its cancellation: outcomes must be
// written even when the task's context has just ended. Every write given to
// it is idempotent (fenced by the delivery's lease), so running it again
// after a lost reply is safe.
func durably(ctx context.Context, write func(context.Context) error) error {
	// The first try needs no deadline of its own (the Redis client's
	// timeouts bound it), and most writes succeed at once.
	err := write(context.WithoutCancel(ctx))
	if err == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		zerolog.Ctx(ctx).Warn().Err(err).Dur("retry_in", delay).Msg("store failed, will retry")
		select {
		case <-wctx.Done():
			return err
		case <-time.After(delay):
		}
		if err = write(wctx); err == nil || wctx.Err() != nil {
			return err
		}
	}
}
