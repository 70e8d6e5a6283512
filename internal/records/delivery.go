package records

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mimoq/mimoq/internal/job"
)

// Verdict is what Begin decided about a delivery.
type Verdict int

// The verdicts of Begin.
const (
	// Run: the delivery holds the job; it may call the API.
	Run Verdict = iota
	// Final: the job is final already (a redelivery after its outcome was
	// stored); the delivery must not call the API.
	Final
	// NotYet: the job's next attempt is due at DueAt (a task delivered
	// early); the delivery must not call the API before then.
	NotYet
	// Missing: there is no record (it expired after a final state, or was
	// never written); the delivery must not call the API.
	Missing
)

// Delivery identifies one run of a job's task: the lease every write of the
// run carries.
type Delivery struct {
	JobID   string
	BatchID string
	Lease   string
	// Webhook is set when the job has a subscription of its own: its end
	// is to be told.
	Webhook bool
}

// Begun is what Begin found or did.
type Begun struct {
	Verdict Verdict
	// State is the job's state: running for Run, the final state for Final.
	State job.State
	// Attempts counts the attempts made before this delivery.
	Attempts int
	// JustExpired is set when this Begin found the job's deadline passed
	// and expired it (Final, state expired).
	JustExpired bool
	// Interrupted is set when an earlier delivery of the job stopped
	// mid-flight (its worker crashed or lost Redis); Interrupts counts them.
	Interrupted bool
	Interrupts  int
	// DueAt is when the next attempt may start (NotYet only).
	DueAt time.Time
	// Body is the request (Run only); Model the model it is for.
	Body  []byte
	Model string
	// Requeues counts the operator's requeues of the job.
	Requeues int
	// Delivery is what this delivery's writes carry.
	Delivery Delivery
}

// Begin hands job id to a delivery under lease (chosen by the caller, once
// per delivery, so that a retried call is recognised), for worker, or says
// why the delivery must not call the API (see Verdict).
func (s *Store) Begin(ctx context.Context, id, lease, worker string, now time.Time) (Begun, error) {
	vals, what, err := reply(beginScript.Run(ctx, s.rdb, []string{jobKey(id)},
		now.UnixMilli(), fmtTime(now), lease, worker, s.ttlSeconds(), id), "begin job "+id)
	if err != nil {
		return Begun{}, err
	}
	switch what {
	case "missing":
		return Begun{Verdict: Missing}, nil
	case "final":
		return Begun{Verdict: Final, State: job.State(toStr(vals[1])), Attempts: toInt(vals[2]),
			JustExpired: len(vals) > 3 && toInt(vals[3]) == 1}, nil
	case "wait":
		return Begun{Verdict: NotYet, DueAt: time.UnixMilli(int64(toInt(vals[1])))}, nil
	case "run":
		if len(vals) != 9 {
			return Begun{}, fmt.Errorf("begin job %s: unexpected reply %v", id, vals)
		}
		b := Begun{Verdict: Run, State: job.StateRunning, Attempts: toInt(vals[1]), Interrupts: toInt(vals[2]),
			Interrupted: toInt(vals[3]) == 1, Body: []byte(toStr(vals[4])), Model: toStr(vals[5]),
			Requeues: toInt(vals[7])}
		b.Delivery = Delivery{JobID: id, BatchID: toStr(vals[6]), Lease: lease, Webhook: len(vals) > 8 && toStr(vals[8]) != ""}
		return b, nil
	}
	return Begun{}, fmt.Errorf("begin job %s: unexpected reply %v", id, vals)
}

// Outcome is what a delivery writes about its attempt.
type Outcome struct {
	// State is the job's new state: succeeded, retrying, dead, or queued
	// for a put-back that is no attempt (shutdown, a wait that ran out).
	State job.State
	// Counted says the attempt counts against the attempt budget.
	Counted bool
	// Entry is the history entry, nil for none.
	Entry *job.Attempt
	// DueAt is when the next attempt may start (retrying, or a put-back
	// until a set time); zero for at once.
	DueAt time.Time
	// Result, StatusCode, RequestID, Usage, ServedModel: the answer.
	Result      json.RawMessage
	StatusCode  int
	RequestID   string
	Usage       *job.Usage
	ServedModel string
	// CostPico is what the answer cost, in pico-USD (0: unknown).
	CostPico int64
	// Error is the attempt's error and ErrorBody the API's error body
	// (JSON), kept for the results file.
	Error     *job.Error
	ErrorBody json.RawMessage
}

// Written says what Finish did.
type Written int

// The results of Finish.
const (
	// Applied: the outcome was written.
	Applied Written = iota
	// Replayed: this delivery's outcome was written before (a retried
	// call whose first reply was lost); nothing changed.
	Replayed
	// Stale: another delivery or a requeue holds the job now; nothing
	// changed, and State is the job's current state.
	Stale
	// Gone: the record does not exist.
	Gone
)

// Finished is what Finish found or did.
type Finished struct {
	Written  Written
	State    job.State // the job's state now
	Attempts int
	// BatchEnded is set when this outcome was its batch's last.
	BatchEnded bool
	// SpendPico and MaxPico are the batch's spend and maximum cost (0:
	// none), in pico-USD, when this outcome added its cost to them (a
	// batch job's success with a known cost); both 0 otherwise.
	SpendPico, MaxPico int64
}

// Finish writes the outcome of delivery d's attempt (see finishScript): a
// final state is counted in the job's batch and announced in the same
// step.
func (s *Store) Finish(ctx context.Context, d Delivery, o Outcome, now time.Time) (Finished, error) {
	argv, err := finishArgs(d, o, s.ttlSeconds(), now)
	if err != nil {
		return Finished{}, fmt.Errorf("finish job %s: %w", d.JobID, err)
	}
	spend := jobKey(d.JobID)
	if d.BatchID != "" {
		spend = spendKey(d.BatchID)
	}
	vals, what, err := reply(finishScript.Run(ctx, s.rdb, []string{jobKey(d.JobID), s.batchKeyOf(d), spend}, argv...),
		"finish job "+d.JobID)
	if err != nil {
		return Finished{}, err
	}
	switch what {
	case "missing":
		return Finished{Written: Gone}, nil
	case "stale", "replay", "ok":
		if len(vals) < 3 {
			break
		}
		f := Finished{State: job.State(toStr(vals[1])), Attempts: toInt(vals[2])}
		switch what {
		case "stale":
			f.Written = Stale
		case "replay":
			f.Written = Replayed
		default:
			f.BatchEnded = len(vals) > 3 && toInt(vals[3]) == 1
			if len(vals) > 5 {
				f.SpendPico, f.MaxPico = int64(toInt(vals[4])), int64(toInt(vals[5]))
			}
		}
		return f, nil
	}
	return Finished{}, fmt.Errorf("finish job %s: unexpected reply %v", d.JobID, vals)
}

// batchKeyOf is the batch key a script of delivery d touches: the job's own
// key stands in for a single job (every key of a script must share a slot).
func (s *Store) batchKeyOf(d Delivery) string {
	if d.BatchID == "" {
		return jobKey(d.JobID)
	}
	return batchKey(d.BatchID)
}

// finishArgs is finishScript's ARGV for outcome o of delivery d.
func finishArgs(d Delivery, o Outcome, ttl int64, now time.Time) ([]any, error) {
	entry := ""
	if o.Entry != nil {
		b, err := json.Marshal(o.Entry)
		if err != nil {
			return nil, err
		}
		entry = string(b)
	}
	if !o.State.Final() {
		ttl = 0
	}
	counted := "0"
	if o.Counted {
		counted = "1"
	}
	var u job.Usage
	if o.Usage != nil {
		u = *o.Usage
	}
	argv := make([]any, 0, 14+16)
	argv = append(argv, d.Lease, string(o.State), counted, entry, ttl, fmtTime(now), d.BatchID,
		u.PromptTokens, u.CachedTokens, u.CompletionTokens, u.ReasoningTokens, u.TotalTokens, d.JobID, max(o.CostPico, 0))
	if o.Result != nil {
		argv = append(argv, "result", []byte(o.Result))
	}
	if o.StatusCode != 0 {
		argv = append(argv, "status_code", o.StatusCode)
	}
	if o.RequestID != "" {
		argv = append(argv, "request_id", o.RequestID)
	}
	if o.Usage != nil {
		b, _ := json.Marshal(o.Usage)
		argv = append(argv, "usage", b)
	}
	if o.ServedModel != "" {
		argv = append(argv, "served_model", o.ServedModel)
	}
	if o.CostPico > 0 {
		argv = append(argv, "cost_pico", o.CostPico)
	}
	if o.Error != nil {
		b, _ := json.Marshal(o.Error)
		argv = append(argv, "error", b)
	}
	if len(o.ErrorBody) > 0 {
		argv = append(argv, "error_body", []byte(o.ErrorBody))
	}
	if !o.DueAt.IsZero() {
		// retry_at is what a reader sees while the job is retrying; due_at
		// is what Begin enforces, and goes once the job runs.
		argv = append(argv, "due_at", o.DueAt.UnixMilli(), "retry_at", o.DueAt.UnixMilli())
	}
	return argv, nil
}

// Abandon dead-letters job id, which no delivery can finish (its task was
// archived by asynq, or lost and cannot be made again), with error e. It
// returns the job's state afterwards; a final job is left as it is.
func (s *Store) Abandon(ctx context.Context, id, batchID string, e *job.Error, now time.Time) (job.State, error) {
	eb, _ := json.Marshal(e)
	entry, _ := json.Marshal(job.Attempt{Start: now.UTC(), Class: e.Class, Reason: e.Reason, Message: e.Message})
	bk := jobKey(id)
	if batchID != "" {
		bk = batchKey(batchID)
	}
	st, err := abandonScript.Run(ctx, s.rdb, []string{jobKey(id), bk},
		fmtTime(now), s.ttlSeconds(), batchID, entry, eb).Text()
	if err != nil {
		return "", fmt.Errorf("abandon job %s: %w", id, err)
	}
	if st == "missing" {
		return "", fmt.Errorf("abandon job %s: %w", id, ErrNotFound)
	}
	return job.State(st), nil
}

// NewLease returns a lease for one delivery.
func NewLease() string { return NewID() }
