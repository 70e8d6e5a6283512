package dlq

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/mimoq/mimoq/internal/job"
)

// Record is one dead job: what was asked, why it died and every attempt made.
// Its JSON is the `--json` shape of `mimoq dlq show`; `mimoq dlq list` leaves
// out Request and History, which List does not load unless asked.
type Record struct {
	ID           string          `json:"id"` // job ID (ULID)
	BatchID      string          `json:"batch_id"`
	CustomID     string          `json:"custom_id"`
	Queue        string          `json:"queue"` // mimoq queue: interactive | batch | ...
	Model        string          `json:"model"`
	Class        job.Class       `json:"class"`            // terminal | exhausted
	Reason       string          `json:"reason,omitempty"` // machine-readable reason from classification
	StatusCode   int             `json:"status_code"`      // 0 when there was no HTTP status (transport error)
	ErrorCode    string          `json:"error_code"`
	ErrorMessage string          `json:"error_message"`
	ErrorType    string          `json:"error_type,omitempty"`
	RequestID    string          `json:"request_id"`
	Attempts     int             `json:"attempts"`
	DeadAt       time.Time       `json:"dead_at"`
	Request      json.RawMessage `json:"request,omitempty"` // the full chat request body
	History      []job.Attempt   `json:"history,omitempty"`
}

// FromJob builds the dead letter of dead job j from its record (with its
// request and history), so that every writer of a job's dead letter — the
// worker, a redelivery, the reconciler — writes the very same record.
func FromJob(j *job.Job) *Record {
	r := &Record{
		ID:       j.ID,
		BatchID:  j.BatchID,
		CustomID: j.CustomID,
		Queue:    j.Queue,
		Model:    j.Model,
		Attempts: j.Attempts,
		DeadAt:   j.FinishedAt,
		Request:  j.Request,
		History:  j.History,
		Class:    job.ClassTerminal,
	}
	if r.DeadAt.IsZero() {
		r.DeadAt = j.UpdatedAt
	}
	if e := j.Error; e != nil {
		if e.Class == job.ClassExhausted {
			r.Class = job.ClassExhausted
		}
		r.Reason = e.Reason
		r.StatusCode = e.StatusCode
		r.ErrorCode = e.Code
		r.ErrorMessage = e.Message
		r.ErrorType = e.Type
		r.RequestID = e.RequestID
	} else {
		r.ErrorCode, r.ErrorMessage = "unknown", "no error recorded"
	}
	return r
}

// JobError is the record's last error in the shape job records and batch
// results use.
func (r *Record) JobError() *job.Error {
	return &job.Error{
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
	Class   job.Class
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
