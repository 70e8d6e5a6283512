package dlq

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/mimoq/mimoq/enqueue"
)

// The classes of a dead letter (see "Failure classes" in SPEC.md).
const (
	ClassTerminal  = "terminal"
	ClassExhausted = "exhausted"
)

// Record is one dead job: what was asked, why it died and every attempt made.
// Its JSON is the `--json` shape of `mimoq dlq show`; `mimoq dlq list` leaves
// out Request and History, which List does not load unless asked.
type Record struct {
	ID           string            `json:"id"` // job ID (ULID)
	BatchID      string            `json:"batch_id"`
	CustomID     string            `json:"custom_id"`
	Queue        string            `json:"queue"` // mimoq queue: interactive | batch | ...
	Model        string            `json:"model"`
	Class        string            `json:"class"`            // terminal | exhausted
	Reason       string            `json:"reason,omitempty"` // machine-readable reason from classification
	StatusCode   int               `json:"status_code"`      // 0 when there was no HTTP status (transport error)
	ErrorCode    string            `json:"error_code"`
	ErrorMessage string            `json:"error_message"`
	ErrorType    string            `json:"error_type,omitempty"`
	RequestID    string            `json:"request_id"`
	Attempts     int               `json:"attempts"`
	DeadAt       time.Time         `json:"dead_at"`
	Request      json.RawMessage   `json:"request,omitempty"` // the full chat request body
	History      []enqueue.Attempt `json:"history,omitempty"`
}

// NewRecord builds the dead letter of the job described by p that died with
// error e after attempts counted attempts, at deadAt. history is kept as
// given (it may hold interruptions that did not count as attempts).
func NewRecord(p *enqueue.Payload, e *enqueue.JobError, attempts int, history []enqueue.Attempt, deadAt time.Time) *Record {
	r := &Record{
		ID:       p.JobID,
		BatchID:  p.BatchID,
		CustomID: p.CustomID,
		Queue:    p.Queue,
		Model:    p.Model,
		Attempts: attempts,
		DeadAt:   deadAt,
		Request:  p.Body,
		History:  history,
	}
	if e != nil {
		r.Class = e.Class
		r.Reason = e.Reason
		r.StatusCode = e.StatusCode
		r.ErrorCode = e.Code
		r.ErrorMessage = e.Message
		r.ErrorType = e.Type
		r.RequestID = e.RequestID
	}
	return r
}

// JobError is the record's last error in the shape job records and batch
// results use.
func (r *Record) JobError() *enqueue.JobError {
	return &enqueue.JobError{
		StatusCode: r.StatusCode,
		Code:       r.ErrorCode,
		Message:    r.ErrorMessage,
		Type:       r.ErrorType,
		Class:      r.Class,
		Reason:     r.Reason,
		RequestID:  r.RequestID,
	}
}

// Filter selects dead letters. Every set field must match; the zero Filter
// matches everything.
type Filter struct {
	Queue   string
	BatchID string
	Model   string
	Code    string // ErrorCode
	Class   string
	Status  int       // HTTP status, 0 = any
	Since   time.Time // DeadAt >= Since; zero = any
	Until   time.Time // DeadAt < Until; zero = any
	IDs     []string  // only these job IDs; empty = any
}

// Match reports whether r passes the filter. The store applies the same test,
// mostly through its indexes.
func (f Filter) Match(r *Record) bool {
	switch {
	case r == nil,
		f.Queue != "" && r.Queue != f.Queue,
		f.BatchID != "" && r.BatchID != f.BatchID,
		f.Model != "" && r.Model != f.Model,
		f.Code != "" && r.ErrorCode != f.Code,
		f.Class != "" && r.Class != f.Class,
		f.Status != 0 && r.StatusCode != f.Status,
		!f.Since.IsZero() && r.DeadAt.Before(f.Since),
		!f.Until.IsZero() && !r.DeadAt.Before(f.Until),
		len(f.IDs) > 0 && !slices.Contains(f.IDs, r.ID):
		return false
	}
	return true
}
