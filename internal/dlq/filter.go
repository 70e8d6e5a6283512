package dlq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mimoq/mimoq/internal/job"
)

// FilterInput is a dead-letter filter as text, as every front end receives
// it: `mimoq dlq` flags, GET /v1/dlq query parameters, the "filter" object of
// POST /v1/dlq/requeue and the web page's form all carry these names (queue,
// batch, model, code, status, class, since, until), and all of them go
// through ParseFilter, so that a value means the same everywhere.
type FilterInput struct {
	Queue, Batch, Model, Code, Status, Class, Since, Until string
}

// FieldError is an invalid filter value; Field names the filter.
type FieldError struct {
	Field, Value, Want string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q is not valid: want %s", e.Field, e.Value, e.Want)
}

// ParseFilter checks in and builds the filter it describes. now anchors
// relative times: since=3d is the last three days. A bad value gives a
// *FieldError naming its field.
func ParseFilter(in FilterInput, now time.Time) (Filter, error) {
	f := Filter{
		Queue: strings.TrimSpace(in.Queue), BatchID: strings.TrimSpace(in.Batch),
		Model: strings.TrimSpace(in.Model), Code: strings.TrimSpace(in.Code),
	}
	if v := strings.TrimSpace(in.Status); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			return f, &FieldError{Field: "status", Value: v, Want: "an HTTP status from 100 to 599"}
		}
		f.Status = n
	}
	switch c := job.Class(strings.TrimSpace(in.Class)); c {
	case "", job.ClassTerminal, job.ClassExhausted:
		f.Class = c
	default:
		return f, &FieldError{Field: "class", Value: in.Class, Want: "terminal or exhausted"}
	}
	var err error
	if f.Since, err = ParseTime(in.Since, now); err != nil {
		return f, &FieldError{Field: "since", Value: in.Since, Want: timeWant}
	}
	if f.Until, err = ParseTime(in.Until, now); err != nil {
		return f, &FieldError{Field: "until", Value: in.Until, Want: timeWant}
	}
	return f, nil
}

const timeWant = "a duration back from now (30m, 2h, 3d), a date (2026-03-01) or a time (2026-03-01T12:00:00, " +
	"UTC unless it carries an offset such as Z or +02:00)"

// timeLayouts are the times ParseTime reads, most specific first. A time
// without an offset is UTC: a filter means the same whichever machine or
// browser it comes from.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04",
	"2006-01-02 15:04", time.DateOnly}

// ParseTime reads a point in time for a filter: a duration counted back
// from now (Go syntax such as 90m or 2h30m, or whole days such as 3d), a
// date (midnight UTC), or a time, UTC unless it carries an offset. "" is
// the zero time (no bound).
func ParseTime(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %q is negative", v)
		}
		return now.Add(-d), nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time", v)
}
