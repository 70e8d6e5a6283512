package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
)

// Headers the worker sends with every call, so that the API side (and
// mockapi's duplicate counter) can tell jobs and attempts apart.
const (
	HeaderJobID   = "X-Mimoq-Job-Id"
	HeaderAttempt = "X-Mimoq-Attempt"
)

// maxInterrupts is how many interrupted deliveries (a worker crashing or
// being stopped mid-call) a job survives before it is dead-lettered as
// exhausted: a job that kills its worker every time must not loop forever.
const maxInterrupts = 10

// retryError asks asynq to run the task again after Delay. Requeue marks a
// put-back that is no failure (shutdown, paused lane): it burns no attempt.
type retryError struct {
	Delay   time.Duration
	Requeue bool
	Cause   error
}

func (e *retryError) Error() string {
	if e.Requeue {
		return fmt.Sprintf("requeued (%v)", e.Cause)
	}
	return fmt.Sprintf("retry in %s: %v", e.Delay, e.Cause)
}
func (e *retryError) Unwrap() error { return e.Cause }

// retryDelay is asynq's RetryDelayFunc: the delay the handler chose, or none
// for a lease that expired (a crashed worker's job goes back at once).
func retryDelay(_ int, err error, _ *asynq.Task) time.Duration {
	var re *retryError
	if errors.As(err, &re) {
		return re.Delay
	}
	return 0
}

// isFailure tells asynq's statistics which errors are failures.
func isFailure(err error) bool {
	var re *retryError
	return !errors.As(err, &re) || !re.Requeue
}

// ProcessTask handles one chat-completions job: it brings the job one step
// towards its final state and returns nil once the outcome is safely stored.
func (w *Worker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p enqueue.Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.JobID == "" {
		// Not a task mimoq wrote. Archive it; the sweeper dead-letters it.
		return fmt.Errorf("decode payload: %v: %w", err, asynq.SkipRetry)
	}
	log := w.log.With().Str("job_id", p.JobID).Str("batch_id", p.BatchID).
		Str("custom_id", p.CustomID).Str("model", p.Model).Logger()
	ctx = log.WithContext(ctx)
	// Every wait before the call (a slot, the retry's due time, a permit)
	// ends when shutdown begins: the job goes back at once.
	wait, stopWait := w.drainable(ctx)
	defer stopWait()

	// One of the process's slots, shared by every model's server. A job
	// still waiting for one when shutdown begins goes back untouched.
	release, err := w.slots.Acquire(wait, p.Queue)
	if err != nil {
		return &retryError{Requeue: true, Cause: err}
	}
	defer release()

	b, err := w.records.Begin(ctx, &p, w.cfg.ID, time.Now())
	if err != nil {
		return err // Redis trouble: asynq retries the task later
	}
	if b.State.Final() {
		// Redelivered after its outcome was stored: finish the side effects
		// that may not have happened, never call the API again.
		return w.settle(ctx, &p, b.State)
	}
	if b.Interrupted {
		log.Warn().Int("interrupts", b.Interrupts).Msg("job was interrupted in an earlier delivery")
		if b.Interrupts > maxInterrupts {
			return w.deadLetter(ctx, &p, &enqueue.JobError{
				Code: "worker_interrupted", Class: "exhausted", Reason: "interrupted",
				Message: fmt.Sprintf("the job interrupted its worker %d times", b.Interrupts),
			}, nil, nil)
		}
	}
	if w.isCanceled(ctx, &p) {
		return w.finish(ctx, &p, enqueue.Outcome{State: enqueue.StateCanceled})
	}
	// asynq stores retry times in whole seconds and may hand a retry over
	// up to a second early: the backoff (and Retry-After) is honoured here.
	if due := time.Until(b.RetryAt); due > 0 {
		t := time.NewTimer(min(due, 2*time.Second))
		select {
		case <-t.C:
		case <-wait.Done():
			t.Stop()
			return w.putBack(ctx, &p, nil, &retryError{Requeue: true, Cause: wait.Err()})
		}
	}
	return w.attempt(ctx, wait, &p, b.Attempts+1, log)
}

// attempt makes call number n of the job. wait is ctx that also ends when
// shutdown begins, for the wait for a permit.
func (w *Worker) attempt(ctx, wait context.Context, p *enqueue.Payload, n int, log zerolog.Logger) error {
	req, err := apiclient.ParseRequest(p.Body)
	if err == nil {
		err = w.cfg.API.Validate(req)
	}
	if err != nil {
		// Validated at submit time; the model list may have changed since.
		return w.deadLetter(ctx, p, jobError(err, apiclient.Classify(err), 0), nil, nil)
	}

	// Wait for the fleet-wide rate limit. Neither this wait nor a put-back
	// while waiting (shutdown, paused lane) counts as an attempt.
	waitStart := time.Now()
	permit, err := w.cfg.Gate.Wait(wait, p.Model, int64(req.EstimatePromptTokens()+req.MaxOutputTokens()))
	w.metrics.limiterWait.WithLabelValues(p.Model).Observe(time.Since(waitStart).Seconds())
	if err != nil {
		delay := time.Duration(0)
		if errors.Is(err, lane.ErrPaused) {
			delay = time.Second
		}
		return w.putBack(ctx, p, nil, &retryError{Delay: delay, Requeue: true, Cause: err})
	}

	w.metrics.inflight.Inc()
	start := time.Now()
	resp, callErr := w.cfg.API.Do(ctx, req,
		apiclient.WithHeader(HeaderJobID, p.JobID), apiclient.WithHeader(HeaderAttempt, strconv.Itoa(n)))
	elapsed := time.Since(start)
	w.metrics.inflight.Dec()

	cl := apiclient.Classify(callErr)
	if cl.Class != apiclient.ClassNone || callErr == nil {
		w.counts.add(p.Model, callErr == nil)
	}
	entry := &enqueue.Attempt{Attempt: n, Start: start.UTC(), DurationMs: elapsed.Milliseconds(),
		Class: string(cl.Class), Reason: string(cl.Reason), Worker: w.cfg.ID}
	ev := func(e *zerolog.Event) *zerolog.Event {
		return e.Int("attempt", n).Int("status", entry.StatusCode).Str("error_code", entry.ErrorCode).
			Str("class", entry.Class).Str("request_id", entry.RequestID).Int64("latency_ms", entry.DurationMs)
	}

	if callErr == nil {
		u := usageOf(resp)
		permit.Done(u.TotalTokens)
		entry.StatusCode, entry.RequestID, entry.Class = resp.StatusCode, resp.RequestID, "success"
		w.metrics.latency.WithLabelValues(p.Model, strconv.Itoa(resp.StatusCode)).Observe(elapsed.Seconds())
		err := w.finish(ctx, p, enqueue.Outcome{State: enqueue.StateSucceeded, Counted: true, Entry: entry,
			Result: resp.Raw, StatusCode: resp.StatusCode, RequestID: resp.RequestID, Usage: u})
		if err == nil {
			w.metrics.jobs.WithLabelValues("succeeded", "success", p.Model).Inc()
			ev(log.Info()).Msg("attempt succeeded")
		}
		return err
	}

	permit.Done(permit.Tokens) // the reservation stands: the API may have counted the call
	jerr := jobError(callErr, cl, 0)
	entry.StatusCode, entry.ErrorCode, entry.Message, entry.RequestID = jerr.StatusCode, jerr.Code, jerr.Message, jerr.RequestID
	w.metrics.latency.WithLabelValues(p.Model, strconv.Itoa(jerr.StatusCode)).Observe(elapsed.Seconds())

	switch cl.Class {
	case apiclient.ClassNone:
		// Our own context ended (shutdown past its grace, task deadline):
		// not the API's failure, so no attempt is burnt.
		entry.Class, entry.Reason = "", "interrupted"
		w.metrics.jobs.WithLabelValues("requeued", "", p.Model).Inc()
		ev(log.Warn()).Msg("attempt interrupted")
		return w.putBack(ctx, p, entry, &retryError{Requeue: true, Cause: callErr})

	case apiclient.ClassRetryable:
		if cl.StatusCode == 429 {
			cool := cl.RetryAfter
			if cool <= 0 {
				cool = w.cfg.Backoff.Delay(n, 0)
			}
			if err := w.cfg.Gate.Cooldown(ctx, p.Model, cool); err != nil {
				log.Error().Err(err).Msg("start lane cooldown")
			}
		}
		if n >= w.cfg.MaxAttempts {
			jerr.Class = "exhausted"
			ev(log.Warn()).Msg("attempts exhausted")
			return w.deadLetter(ctx, p, jerr, entry, errorBodyOf(callErr))
		}
		delay := w.cfg.Backoff.Delay(n, cl.RetryAfter)
		entry.NextDelay = delay.Milliseconds()
		if err := durably(ctx, func(ctx context.Context) error {
			_, err := w.records.Finish(ctx, p.JobID, enqueue.Outcome{State: enqueue.StateRetrying, Counted: true,
				Entry: entry, Error: jerr, StatusCode: jerr.StatusCode, RequestID: jerr.RequestID,
				RetryAt: time.Now().Add(delay)}, time.Now())
			return err
		}); err != nil {
			return err
		}
		w.metrics.jobs.WithLabelValues("retried", string(cl.Class), p.Model).Inc()
		ev(log.Warn()).Int64("next_delay_ms", entry.NextDelay).Msg("attempt failed, will retry")
		return &retryError{Delay: delay, Cause: callErr}

	default: // terminal
		if cl.PauseLane {
			reason := fmt.Sprintf("%d %s on job %s", jerr.StatusCode, jerr.Code, p.JobID)
			if _, err := w.cfg.Lanes.Pause(ctx, p.Model, reason); err != nil {
				log.Error().Err(err).Msg("pause lane")
			} else {
				log.Warn().Str("reason", reason).Msg("lane paused")
			}
		}
		ev(log.Warn()).Msg("attempt failed, dead-lettered")
		return w.deadLetter(ctx, p, jerr, entry, errorBodyOf(callErr))
	}
}

// drainable returns a context that also ends when the worker starts to shut
// down, so that jobs still waiting for a permit are put back at once.
func (w *Worker) drainable(ctx context.Context) (context.Context, func()) {
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(w.drain, cancel)
	return c, func() { stop(); cancel() }
}

// putBack returns the job to queued without counting an attempt and hands
// asynq the error that reschedules the task.
func (w *Worker) putBack(ctx context.Context, p *enqueue.Payload, entry *enqueue.Attempt, re *retryError) error {
	if err := durably(ctx, func(ctx context.Context) error {
		_, err := w.records.Finish(ctx, p.JobID, enqueue.Outcome{State: enqueue.StateQueued, Entry: entry}, time.Now())
		return err
	}); err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("put job back")
	}
	return re
}

// deadLetter stores the job as dead (record, then dead-letter store, then
// batch counters) before the task leaves asynq.
func (w *Worker) deadLetter(ctx context.Context, p *enqueue.Payload, jerr *enqueue.JobError, entry *enqueue.Attempt, errorBody json.RawMessage) error {
	o := enqueue.Outcome{State: enqueue.StateDead, Counted: entry != nil, Entry: entry, Error: jerr,
		StatusCode: jerr.StatusCode, RequestID: jerr.RequestID, ErrorBody: errorBody}
	if err := w.finish(ctx, p, o); err != nil {
		return err
	}
	w.metrics.jobs.WithLabelValues("dead", jerr.Class, p.Model).Inc()
	return nil
}

// finish writes a final outcome and then settles its side effects.
func (w *Worker) finish(ctx context.Context, p *enqueue.Payload, o enqueue.Outcome) error {
	if o.State != enqueue.StateDead {
		// The common case: the outcome, its batch count and its notice
		// in one round trip.
		return durably(ctx, func(wctx context.Context) error {
			f, done, err := w.records.FinishAnnounce(wctx, p.BatchID, p.JobID, o, time.Now())
			if err != nil {
				return err
			}
			if f.State != o.State {
				// Another delivery finished the job otherwise first.
				return w.settle(wctx, p, f.State)
			}
			if done {
				w.publishBatchDone(wctx, p.BatchID)
			}
			return nil
		})
	}
	return durably(ctx, func(wctx context.Context) error {
		f, err := w.records.Finish(wctx, p.JobID, o, time.Now())
		if err != nil {
			return err
		}
		if !f.Changed || f.State == enqueue.StateDead {
			// Final before (a redelivery, or a write that reached Redis
			// but whose reply was lost), or dead: the slow path reads the
			// record, which the dead letter is built from.
			return w.settle(wctx, p, f.State)
		}
		return w.announce(wctx, p, f.State, o.Usage)
	})
}

// settle makes the side effects of a final state true: the dead-letter
// record, the batch counters and the completion notice. Each is idempotent,
// so a redelivered task may run it again.
func (w *Worker) settle(ctx context.Context, p *enqueue.Payload, st enqueue.State) error {
	j, err := w.records.Get(ctx, p.JobID)
	if err != nil {
		return err
	}
	if st == enqueue.StateDead {
		if err := w.cfg.DLQ.Put(ctx, deadLetterRecord(p, j)); err != nil {
			return err
		}
	}
	return w.announce(ctx, p, st, j.Usage)
}

// announce counts a final job in its batch and publishes its completion (and
// the batch's, when it was the last), in one round trip.
func (w *Worker) announce(ctx context.Context, p *enqueue.Payload, st enqueue.State, u *enqueue.Usage) error {
	done, err := w.records.Announce(ctx, p.BatchID, p.JobID, st, u)
	if err != nil {
		return err
	}
	if done {
		w.publishBatchDone(ctx, p.BatchID)
	}
	return nil
}

func (w *Worker) publishBatchDone(ctx context.Context, batchID string) {
	if err := w.records.PublishBatchDone(ctx, batchID); err != nil {
		// Waiters poll as a fallback: a lost notice only delays them.
		zerolog.Ctx(ctx).Warn().Err(err).Msg("publish batch completion")
	}
}

// isCanceled reports whether the job's batch was canceled. The answer is
// cached for a second per batch: a canceled batch's remaining tasks are
// drained quickly without a Redis round trip each.
func (w *Worker) isCanceled(ctx context.Context, p *enqueue.Payload) bool {
	if p.BatchID == "" {
		return false
	}
	now := time.Now()
	if v, ok := w.canceled.Load(p.BatchID); ok {
		if c := v.(canceledEntry); now.Sub(c.at) < time.Second {
			return c.canceled
		}
	}
	st, err := w.records.BatchState(ctx, p.BatchID)
	if err != nil {
		return false // run the job; cancel is best effort for what already started
	}
	c := canceledEntry{canceled: st == enqueue.BatchCanceled, at: now}
	w.canceled.Store(p.BatchID, c)
	return c.canceled
}

type canceledEntry struct {
	canceled bool
	at       time.Time
}

// deadLetterRecord builds the dead-letter record of a dead job from its
// record, so that a redelivered task writes the very same record again.
func deadLetterRecord(p *enqueue.Payload, j *enqueue.Job) *dlq.Record {
	e := j.Error
	if e == nil {
		e = &enqueue.JobError{Code: "unknown", Class: dlq.ClassTerminal, Message: "no error recorded"}
	}
	deadAt := j.FinishedAt
	if deadAt.IsZero() {
		deadAt = j.UpdatedAt
	}
	r := dlq.NewRecord(p, e, j.Attempts, j.History, deadAt)
	if r.Class != dlq.ClassExhausted {
		r.Class = dlq.ClassTerminal
	}
	return r
}

// jobError turns an attempt's error into the record's last error.
func jobError(err error, cl apiclient.Classification, status int) *enqueue.JobError {
	je := &enqueue.JobError{Class: string(cl.Class), Reason: string(cl.Reason), StatusCode: status, Code: string(cl.Reason), Message: err.Error()}
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

func usageOf(r *apiclient.Response) *enqueue.Usage {
	u := &enqueue.Usage{PromptTokens: int64(r.Usage.PromptTokens), CompletionTokens: int64(r.Usage.CompletionTokens),
		TotalTokens: int64(r.Usage.TotalTokens)}
	if d := r.Usage.CompletionTokensDetails; d != nil {
		u.ReasoningTokens = int64(d.ReasoningTokens)
	}
	return u
}

// storeTimeout bounds how long a worker keeps trying to write an outcome
// while Redis does not answer (a restart, a failover, a network fault). An
// API answer already received is not given up after one failed write: it
// would be lost and the API called again. asynq's lease of the task (30 s,
// extended while Redis answers) bounds it from above: past the lease,
// another worker may take the task.
const storeTimeout = 25 * time.Second

// durably runs write until it succeeds or storeTimeout passes, with a
// context that keeps ctx's values but not its cancellation: outcomes must be
// written even when the task's context has just ended. Every write given to
// it is idempotent, so running it again after a lost reply is safe.
func durably(ctx context.Context, write func(context.Context) error) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		err := write(wctx)
		if err == nil || wctx.Err() != nil {
			return err
		}
		zerolog.Ctx(ctx).Warn().Err(err).Dur("retry_in", delay).Msg("store outcome failed, will retry")
		select {
		case <-wctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}
