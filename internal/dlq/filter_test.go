package dlq_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
)

func TestParseTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{in: "", want: time.Time{}},
		{in: "2h", want: now.Add(-2 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "2h30m", want: now.Add(-150 * time.Minute)},
		{in: "3d", want: now.Add(-72 * time.Hour)},
		{in: "0d", want: now},
		{in: " 24h ", want: now.Add(-24 * time.Hour)},
		// Times without an offset are UTC, on every front end.
		{in: "2026-02-28", want: time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC)},
		{in: "2026-02-28T10:00:00", want: time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)},
		{in: "2026-02-28 10:00:00", want: time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)},
		{in: "2026-02-28T10:00", want: time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)},
		{in: "2026-02-28T10:00:00Z", want: time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)},
		{in: "2026-02-28T10:00:00+08:00", want: time.Date(2026, 2, 28, 2, 0, 0, 0, time.UTC)},
		{in: "2026-02-28T10:00:00.250Z", want: time.Date(2026, 2, 28, 10, 0, 0, 250e6, time.UTC)},
		{in: "-2h", bad: true},
		{in: "-1d", bad: true},
		{in: "yesterday", bad: true},
		{in: "2026-13-01", bad: true},
		{in: "3 d", bad: true},
	} {
		got, err := dlq.ParseTime(tc.in, now)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseTime(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f, err := dlq.ParseFilter(dlq.FilterInput{Queue: "q", Batch: "B", Model: "m", Code: "c", Status: "404",
		Class: "terminal", Since: "3d", Until: "2026-03-01"}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := dlq.Filter{Queue: "q", BatchID: "B", Model: "m", Code: "c", Class: job.ClassTerminal, Status: 404,
		Since: now.Add(-72 * time.Hour), Until: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	if f.Queue != want.Queue || f.BatchID != want.BatchID || f.Model != want.Model || f.Code != want.Code ||
		f.Class != want.Class || f.Status != want.Status || !f.Since.Equal(want.Since) || !f.Until.Equal(want.Until) {
		t.Errorf("filter = %+v, want %+v", f, want)
	}
	if f, err := dlq.ParseFilter(dlq.FilterInput{}, now); err != nil || !f.Match(&dlq.Record{ID: "x"}) {
		t.Errorf("the empty filter: %+v, %v; want one that matches everything", f, err)
	}
	for _, tc := range []struct {
		in    dlq.FilterInput
		field string
	}{
		{dlq.FilterInput{Status: "42"}, "status"},
		{dlq.FilterInput{Status: "600"}, "status"},
		{dlq.FilterInput{Status: "4O4"}, "status"},
		{dlq.FilterInput{Class: "fatal"}, "class"},
		{dlq.FilterInput{Class: "retryable"}, "class"},
		{dlq.FilterInput{Since: "soon"}, "since"},
		{dlq.FilterInput{Until: "-1h"}, "until"},
	} {
		_, err := dlq.ParseFilter(tc.in, now)
		var fe *dlq.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: %v, want a FieldError for %s", tc.in, err, tc.field)
		}
	}
}
