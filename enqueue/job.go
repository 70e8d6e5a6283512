// Package enqueue is mimoq's task contract and producer API: the asynq task
// type and payload of a chat-completions job, the job and batch records kept in
// Redis, and Submit/Get for producers. The worker imports this package, never
// the reverse.
package enqueue

import (
	"encoding/json"
	"time"
)

// TaskType is the asynq task type of one chat-completions call.
const TaskType = "mimoq:chat"

// The two priority lanes: single submissions and batch lines.
const (
	QueueInteractive = "interactive"
	QueueBatch       = "batch"
)

// AsynqQueue is the asynq queue that holds jobs of one mimoq queue and model.
// Each model has its own asynq queues so that pausing a model's lane (asynq
// PauseQueue) leaves its jobs queued and untouched while other models run.
func AsynqQueue(queue, model string) string { return queue + ":" + model }

// Payload is the body of the asynq task. It carries everything the worker
// needs and never the API key.
type Payload struct {
	JobID       string          `json:"job_id"`
	BatchID     string          `json:"batch_id,omitempty"`
	CustomID    string          `json:"custom_id,omitempty"`
	Queue       string          `json:"queue"`
	Model       string          `json:"model"`
	Body        json.RawMessage `json:"body"`
	SubmittedAt time.Time       `json:"submitted_at"`
}

// State is where a job is in its life. Succeeded, Dead and Canceled are final.
type State string

// The states of a job.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateRetrying  State = "retrying"
	StateSucceeded State = "succeeded"
	StateDead      State = "dead"
	StateCanceled  State = "canceled"
)

// Final reports whether no further work will happen to a job in state s.
func (s State) Final() bool {
	return s == StateSucceeded || s == StateDead || s == StateCanceled
}

// Usage is the token usage reported by the API for one job.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	ReasoningTokens  int64 `json:"reasoning_tokens,omitempty"`
}

// Attempt is one entry of a job's history: one call to the API, or one
// interruption (a worker that stopped or crashed mid-call), which does not
// count against the attempt budget.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	Start      time.Time `json:"start"`
	DurationMs int64     `json:"duration_ms"`
	StatusCode int       `json:"status_code,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Message    string    `json:"message,omitempty"`
	Class      string    `json:"class,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`
	NextDelay  int64     `json:"next_delay_ms,omitempty"`
	Worker     string    `json:"worker,omitempty"`
}

// JobError is the last error of a job that did not succeed.
type JobError struct {
	StatusCode int    `json:"status_code,omitempty"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Type       string `json:"type,omitempty"`
	Class      string `json:"class"`
	Reason     string `json:"reason,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
}

// Job is the record of one job, as `mimoq job get` shows it.
type Job struct {
	ID          string          `json:"id"`
	BatchID     string          `json:"batch_id,omitempty"`
	CustomID    string          `json:"custom_id,omitempty"`
	Queue       string          `json:"queue"`
	Model       string          `json:"model"`
	State       State           `json:"state"`
	Attempts    int             `json:"attempts"`
	SubmittedAt time.Time       `json:"submitted_at"`
	UpdatedAt   time.Time       `json:"updated_at,omitzero"`
	FinishedAt  time.Time       `json:"finished_at,omitzero"`
	StatusCode  int             `json:"status_code,omitempty"`
	RequestID   string          `json:"request_id,omitempty"`
	Usage       *Usage          `json:"usage,omitempty"`
	Error       *JobError       `json:"error,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	History     []Attempt       `json:"history,omitempty"`
}
