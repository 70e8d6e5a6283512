// Package job is mimoq's shared vocabulary: the words every other package
// uses for a job and a batch (states, attempts, errors, failure classes,
// usage), the names of the queues and the named defaults. It imports only the
// standard library, so that the producer API, the worker, the record store,
// the dead-letter store and the HTTP API all speak of the same things without
// importing one another.
//
// What a state means and which changes are allowed is written down once, in
// package internal/records, which alone changes them.
package job

import (
	"encoding/json"
	"time"
)

// TaskType is the asynq task type of one chat-completions job.
const TaskType = "mimoq:chat"

// KeyPrefix starts every Redis key and channel mimoq writes besides asynq's.
const KeyPrefix = "mimoq:"

// The two priority lanes: single submissions and batch lines.
const (
	QueueInteractive = "interactive"
	QueueBatch       = "batch"
)

// Queues lists the mimoq queues, most urgent first.
func Queues() []string { return []string{QueueInteractive, QueueBatch} }

// DefaultQueueWeights is how often a worker serves each queue relative to the
// others: a long batch never starves single submissions.
func DefaultQueueWeights() map[string]int {
	return map[string]int{QueueInteractive: 4, QueueBatch: 1}
}

// AsynqQueue is the asynq queue that holds the jobs of one mimoq queue and
// model. Each model has its own asynq queues, so that pausing a model's lane
// (asynq PauseQueue) leaves its jobs queued and untouched while other models
// run.
func AsynqQueue(queue, model string) string { return queue + ":" + model }

// Named defaults, shared by the configuration of every command and package.
const (
	// DefaultResultTTL is how long final job records, results and batch
	// records are kept (MIMOQ_RESULT_TTL).
	DefaultResultTTL = 168 * time.Hour
	// DefaultMaxAttempts is a job's attempt budget, the first attempt
	// included (MIMOQ_MAX_ATTEMPTS).
	DefaultMaxAttempts = 5
	// DefaultConcurrency is the API calls in flight per worker process
	// (MIMOQ_CONCURRENCY).
	DefaultConcurrency = 50
	// DefaultBackoffBase and DefaultBackoffMax bound the delay between
	// attempts (MIMOQ_BACKOFF_BASE, MIMOQ_BACKOFF_MAX).
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 60 * time.Second
	// DefaultRequestTimeout bounds one API attempt, body included
	// (MIMOQ_REQUEST_TIMEOUT).
	DefaultRequestTimeout = 5 * time.Minute
	// DefaultShutdownTimeout is the grace of calls in flight on SIGTERM
	// (MIMOQ_SHUTDOWN_TIMEOUT).
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultMaxLineBytes is the longest batch file line accepted: base64
	// images and audio make long lines.
	DefaultMaxLineBytes = 16 << 20
	// DefaultMaxJobBytes and DefaultMaxBatchBytes bound the bodies of
	// POST /v1/jobs and POST /v1/batches on `mimoq serve`.
	DefaultMaxJobBytes   = 8 << 20
	DefaultMaxBatchBytes = 256 << 20
	// DefaultMaxWait is the longest ?wait= of GET /v1/jobs/{id}.
	DefaultMaxWait = 60 * time.Second
)

// State is where a job is in its life. Succeeded, Dead, Canceled and
// Expired are final: no further work happens to the job, and nothing changes
// its state again but an operator's requeue of a dead job.
type State string

// The states of a job.
const (
	StateQueued    State = "queued"    // waiting for a worker
	StateRunning   State = "running"   // a worker holds it
	StateRetrying  State = "retrying"  // an attempt failed; the next is due at a set time
	StateSucceeded State = "succeeded" // answered; the result is kept
	StateDead      State = "dead"      // given up; a dead letter says why
	StateCanceled  State = "canceled"  // canceled before it ran
	StateExpired   State = "expired"   // its deadline (or its batch's) passed before it ran
)

// Final reports whether no further work will happen to a job in state s.
func (s State) Final() bool {
	return s == StateSucceeded || s == StateDead || s == StateCanceled || s == StateExpired
}

// BatchState is where a batch is in its life.
type BatchState string

// The states of a batch.
const (
	// BatchSubmitting: lines are being enqueued (an interrupted submit stays
	// here until it is run again with the same ID, or canceled).
	BatchSubmitting BatchState = "submitting"
	// BatchRunning: every line is enqueued; some jobs are not final yet.
	BatchRunning BatchState = "running"
	// BatchDone: every job is final.
	BatchDone BatchState = "done"
	// BatchCanceled: canceled; jobs that had not started (and lines never
	// enqueued) are canceled, the rest run to their end. The batch is over
	// when its FinishedAt is set.
	BatchCanceled BatchState = "canceled"
	// BatchExpired: its completion window passed before every job was
	// final; jobs that had not started are expired, the rest run to their
	// end. The batch is over when its FinishedAt is set.
	BatchExpired BatchState = "expired"
)

// Class says what an outcome means: the class of a failure, or success.
type Class string

// The classes of an outcome (see "Failure classes" in SPEC.md).
const (
	// ClassNone is no failure: the caller's own context ended, which says
	// nothing about the request.
	ClassNone Class = ""
	// ClassSuccess is a 2xx with a well-formed body.
	ClassSuccess Class = "success"
	// ClassRetryable failures may succeed on another attempt.
	ClassRetryable Class = "retryable"
	// ClassTerminal failures will fail again the same way.
	ClassTerminal Class = "terminal"
	// ClassExhausted is a retryable failure with no attempt left.
	ClassExhausted Class = "exhausted"
)

// Payload is the body of a job's asynq task. It names the job and where it
// runs; the request itself is in the job's record, which is the only copy a
// worker reads, so that a task re-created after a loss needs nothing but the
// record. It never holds the API key.
type Payload struct {
	JobID    string `json:"job_id"`
	BatchID  string `json:"batch_id,omitempty"`
	CustomID string `json:"custom_id,omitempty"`
	Queue    string `json:"queue"`
	Model    string `json:"model"`
}

// Usage is the token usage the API reported for one job, or the sum over a
// batch.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CachedTokens     int64 `json:"cached_tokens,omitempty"`
	CompletionTokens int64 `json:"completion_tokens"`
	ReasoningTokens  int64 `json:"reasoning_tokens,omitempty"`
	TotalTokens      int64 `json:"total_tokens"`
}

// Add adds u's counts to v.
func (v *Usage) Add(u Usage) {
	v.PromptTokens += u.PromptTokens
	v.CachedTokens += u.CachedTokens
	v.CompletionTokens += u.CompletionTokens
	v.ReasoningTokens += u.ReasoningTokens
	v.TotalTokens += u.TotalTokens
}

// Attempt is one entry of a job's history: one call to the API, or an event
// that was not one (an interrupted delivery, a requeue), which does not count
// against the attempt budget.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	Start      time.Time `json:"start"`
	DurationMs int64     `json:"duration_ms"`
	StatusCode int       `json:"status_code,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Message    string    `json:"message,omitempty"`
	Class      Class     `json:"class,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`
	NextDelay  int64     `json:"next_delay_ms,omitempty"`
	Worker     string    `json:"worker,omitempty"`
}

// Error is the last error of a job that did not succeed.
type Error struct {
	StatusCode int    `json:"status_code,omitempty"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Type       string `json:"type,omitempty"`
	Class      Class  `json:"class"`
	Reason     string `json:"reason,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
	// Body is the API's error body, byte-for-byte, when it answered one.
	Body json.RawMessage `json:"body,omitempty"`
}

// Job is the record of one job, as `mimoq job get --json` prints it.
type Job struct {
	ID       string `json:"id"`
	BatchID  string `json:"batch_id,omitempty"`
	CustomID string `json:"custom_id,omitempty"`
	Queue    string `json:"queue"`
	Model    string `json:"model"`
	// ServedModel is the model that answered, when the API says it is not
	// Model (a forwarded or aliased name).
	ServedModel string    `json:"served_model,omitempty"`
	State       State     `json:"state"`
	Attempts    int       `json:"attempts"`
	Requeues    int       `json:"requeues,omitempty"`
	SubmittedAt time.Time `json:"submitted_at"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	RetryAt     time.Time `json:"retry_at,omitzero"`
	// Deadline is when the job expires if it has not started (its own
	// deadline, or its batch's completion window).
	Deadline   time.Time `json:"deadline,omitzero"`
	StatusCode int       `json:"status_code,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`
	Usage      *Usage    `json:"usage,omitempty"`
	// Cost is what the answer cost at the price of the model that
	// answered (internal/price), when that model has a price.
	Cost    *Cost           `json:"cost,omitempty"`
	Error   *Error          `json:"error,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	History []Attempt       `json:"history,omitempty"`
	// Request is the chat-completions body as submitted; Get leaves it out
	// unless asked (it can be large).
	Request json.RawMessage `json:"request,omitempty"`
	// Webhook is the URL told when the job ends (a single job's own
	// subscription), and WebhookIncludeResult whether the event carries
	// its result.
	Webhook              string `json:"webhook,omitempty"`
	WebhookIncludeResult bool   `json:"webhook_include_result,omitempty"`
}

// Batch is the record of one batch, as `mimoq batch status --json` prints it.
type Batch struct {
	ID        string     `json:"id"`
	State     BatchState `json:"state"`
	Queue     string     `json:"queue"`
	Source    string     `json:"source,omitempty"` // file name it came from
	Total     int        `json:"total"`
	Enqueued  int        `json:"enqueued"`
	Succeeded int        `json:"succeeded"`
	Dead      int        `json:"dead"`
	Canceled  int        `json:"canceled"`
	Expired   int        `json:"expired"`
	Pending   int        `json:"pending"` // total - succeeded - dead - canceled - expired
	Usage     Usage      `json:"usage"`
	// Cost adds up the costs of the batch's answered jobs; MaxCostUSD is
	// the most it may spend (--max-cost), after which its jobs not started
	// are canceled with CancelReason "budget_exhausted".
	Cost         *Cost     `json:"cost,omitempty"`
	MaxCostUSD   float64   `json:"max_cost_usd,omitempty"`
	CancelReason string    `json:"cancel_reason,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	SubmittedAt  time.Time `json:"submitted_at,omitzero"` // every line enqueued
	CanceledAt   time.Time `json:"canceled_at,omitzero"`
	// ExpiresAt is the end of the completion window, when the batch has
	// one; ExpiredAt is when its unstarted jobs were expired.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	ExpiredAt time.Time `json:"expired_at,omitzero"`
	// Webhook is the URL told when the batch ends.
	Webhook string `json:"webhook,omitempty"`
	// Weight is the batch's share of each of its lanes against the other
	// batches (or tenants) there, when submitted with one (0: the default,
	// 1); Tenant, when set, is who the share belongs to: one tenant's
	// batches share one share.
	Weight int    `json:"weight,omitempty"`
	Tenant string `json:"tenant,omitempty"`
	// Backlog counts the jobs waiting for their turn in their lanes (not
	// yet handed to asynq), when it was read; Share is, while it has a
	// backlog, its part of the jobs its lanes released in the last minute
	// (0 to 1).
	Backlog    int64     `json:"backlog,omitempty"`
	Share      float64   `json:"share,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"` // every job final
	// Rate is jobs finished per second since the batch was submitted, and
	// ETA the expected time of the last one: at the pace its lanes gave it
	// over the last minute while it shares them, else at Rate (zero if
	// unknown).
	Rate float64   `json:"rate"`
	ETA  time.Time `json:"eta,omitzero"`
}

// Cost is an amount of money spent on the API.
type Cost struct {
	USD float64 `json:"usd"`
}

// PicoToUSD converts pico-dollars (1e-12 USD, the unit costs are added
// up in, exactly) to dollars.
func PicoToUSD(pico int64) float64 { return float64(pico) / 1e12 }

// Over reports whether every job of the batch is final.
func (b *Batch) Over() bool { return !b.FinishedAt.IsZero() }

// ResultLine is one line of a batch results file (the OpenAI Batch output
// format).
type ResultLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	// ServedModel is the model that answered, when not the one asked for.
	ServedModel string          `json:"served_model,omitempty"`
	Response    *ResultResponse `json:"response"`
	Error       *ResultError    `json:"error"`
}

// ResultResponse is the API's answer to one line.
type ResultResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// ResultError is why a line did not succeed.
type ResultError struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Class    Class  `json:"class,omitempty"`
	Attempts int    `json:"attempts"`
}
