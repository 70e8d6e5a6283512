package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/dlq"
)

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{in: "2h", want: now.Add(-2 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "3d", want: now.Add(-72 * time.Hour)},
		{in: "2026-02-28T10:00:00Z", want: time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)},
		{in: "2026-02-28T10:00:00+08:00", want: time.Date(2026, 2, 28, 2, 0, 0, 0, time.UTC)},
		{in: "-2h", bad: true},
		{in: "yesterday", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in, now)
		if tt.bad {
			if err == nil {
				t.Errorf("parseSince(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDLQFilterFlags(t *testing.T) {
	t.Parallel()
	now := time.Now()
	f, err := (&dlqFilterFlags{batch: "B", model: "m", status: 404, class: "terminal", since: "1h", code: "c", queue: "q"}).filter(now)
	if err != nil {
		t.Fatal(err)
	}
	want := dlq.Filter{Queue: "q", BatchID: "B", Model: "m", Code: "c", Class: "terminal", Status: 404, Since: now.Add(-time.Hour)}
	if f.Queue != want.Queue || f.BatchID != want.BatchID || f.Model != want.Model || f.Code != want.Code ||
		f.Class != want.Class || f.Status != want.Status || !f.Since.Equal(want.Since) {
		t.Errorf("filter = %+v, want %+v", f, want)
	}
	for _, tt := range []struct {
		flags dlqFilterFlags
		name  string
	}{
		{dlqFilterFlags{status: 42}, "--status"},
		{dlqFilterFlags{status: 600}, "--status"},
		{dlqFilterFlags{class: "fatal"}, "--class"},
		{dlqFilterFlags{since: "soon"}, "--since"},
	} {
		_, err := tt.flags.filter(now)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("%+v: %v, want a usage error naming %s", tt.flags, err, tt.name)
		}
	}
}
