package worker

import (
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
)

// The worker decides in pure functions and then carries the decision out
// (handler.go): decideStart, on what Begin found, whether this delivery may
// go on; decideCall, with a permit in hand, whether the call fits in the
// delivery's time; decide, on an attempt's outcome, what becomes of the
// job. Neither touches Redis, the API or the clock, so every branch is
// table-tested (decide_test.go).

// ActionKind is what the worker does next with a job.
type ActionKind int

// The actions.
const (
	// ActCall: make the API call (decideStart only).
	ActCall ActionKind = iota
	// ActSucceed: store the answer; the job succeeded.
	ActSucceed
	// ActRetry: store the failure; the next attempt is due at At.
	ActRetry
	// ActDeadLetter: store the failure as final and write the dead letter.
	ActDeadLetter
	// ActPutBack: give the job back without counting an attempt, to be
	// taken again not before At (zero: at once).
	ActPutBack
	// ActWait: leave the job as it is (it is not due) and have its task
	// delivered again at At.
	ActWait
	// ActSettle: the job is final already (a redelivery): make sure its
	// dead letter exists, never call the API again.
	ActSettle
	// ActDrop: the job has no record (it expired after a final state): drop
	// the task, never call the API.
	ActDrop
)

var actionNames = [...]string{"call", "succeed", "retry", "dead_letter", "put_back", "wait", "settle", "drop"}

func (k ActionKind) String() string { return actionNames[k] }

// Action is a decision.
type Action struct {
	Kind ActionKind
	// At is when the next attempt is due (ActRetry) or the job may be
	// taken again (ActPutBack, ActWait).
	At time.Time
	// Class is the dead letter's class (ActDeadLetter): terminal or
	// exhausted.
	Class job.Class
	// Reason says why, for the record and the logs.
	Reason string
	// Counted says the attempt counts against the budget.
	Counted bool
	// Cooldown, when positive, cools the model's lane down fleet-wide for
	// that long (a 429).
	Cooldown time.Duration
	// Throttled marks a 429: the lane's run of 429s and effective rate
	// learn of it (lane.Gate.Note429), which sets the fleet's cooldown —
	// RetryAfter when the API gave one, else one that doubles with the
	// run; Cooldown is what to use when that cannot be reached.
	Throttled  bool
	RetryAfter time.Duration
	// Quota marks a 429 that says the quota is used up: no news about the
	// rate.
	Quota bool
	// PauseLane pauses the model's lane fleet-wide: every other job would
	// fail the same way (401, 402, 403).
	PauseLane bool
}

// Policy is what the decisions depend on besides the outcome.
type Policy struct {
	// MaxAttempts is the attempt budget, the first attempt included.
	MaxAttempts int
	// MaxInterrupts is how many interrupted deliveries a job survives
	// before it is dead-lettered as exhausted: a job that kills its worker
	// every time must not loop forever.
	MaxInterrupts int
	// Backoff is the delay between attempts.
	Backoff Backoff
	// ShortWait is the longest wait for a due time a worker sleeps through
	// itself rather than handing the task back to asynq (which keeps
	// retry times in whole seconds).
	ShortWait time.Duration
	// CallBudget is the least time a delivery must have left before asynq
	// ends it, for a call to start: one attempt's timeout plus the time to
	// store its outcome.
	CallBudget time.Duration
}

// decideStart decides, from what Begin found, whether this delivery may
// go on towards a call.
func decideStart(b records.Begun, p Policy) Action {
	switch b.Verdict {
	case records.Missing:
		return Action{Kind: ActDrop, Reason: "no_record"}
	case records.Final:
		return Action{Kind: ActSettle, Reason: string(b.State)}
	case records.NotYet:
		return Action{Kind: ActWait, At: b.DueAt, Reason: "not_due"}
	}
	if b.Interrupted && b.Interrupts > p.MaxInterrupts {
		return Action{Kind: ActDeadLetter, Class: job.ClassExhausted, Reason: "interrupted"}
	}
	return Action{Kind: ActCall}
}

// decideCall decides, once a permit is held, whether the call may start:
// left is the time until asynq ends the delivery (its deadline), and
// leftAtStart what was left when the delivery began; negative for none.
// When asynq would end the call midway (and hand the task out again), the
// job goes back now and its next delivery starts with a full deadline:
// waiting in mimoq never eats into an attempt. A delivery whose whole time
// is too short (a task not written by mimoq, whose tasks get a day) calls
// all the same: going back would not give it more.
func decideCall(left, leftAtStart time.Duration, p Policy) Action {
	if left >= 0 && left < p.CallBudget && leftAtStart >= p.CallBudget {
		return Action{Kind: ActPutBack, Reason: "deadline"}
	}
	return Action{Kind: ActCall}
}

// decide decides what becomes of a job after attempt n (1-based) ended
// with classification c. A nil error classifies as success.
func decide(c apiclient.Classification, success bool, n int, p Policy, now time.Time) Action {
	if success {
		return Action{Kind: ActSucceed, Counted: true, Reason: "success"}
	}
	var a Action
	if c.StatusCode == 429 {
		a.Throttled, a.RetryAfter, a.Quota = true, c.RetryAfter, c.Reason == apiclient.ReasonQuotaExhausted
		a.Cooldown = c.RetryAfter
		if a.Cooldown <= 0 {
			a.Cooldown = p.Backoff.Delay(n, 0)
		}
	}
	switch c.Class {
	case apiclient.ClassNone:
		// Our own context ended (shutdown past its grace): not the API's
		// failure, so no attempt is burnt.
		return Action{Kind: ActPutBack, Reason: "interrupted"}
	case apiclient.ClassRetryable:
		a.Counted, a.Reason = true, string(c.Reason)
		if n >= p.MaxAttempts {
			a.Kind, a.Class = ActDeadLetter, job.ClassExhausted
			return a
		}
		a.Kind, a.At = ActRetry, now.Add(p.Backoff.Delay(n, c.RetryAfter))
		return a
	default:
		// A request that failed local validation never reached the API:
		// it costs no attempt.
		a.Kind, a.Class, a.Reason = ActDeadLetter, job.ClassTerminal, string(c.Reason)
		a.Counted, a.PauseLane = c.Reason != apiclient.ReasonValidation, c.PauseLane
		return a
	}
}
