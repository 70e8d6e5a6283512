package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/dlq"
)

func TestDLQFilterFlags(t *testing.T) {
	t.Parallel()
	now := time.Now()
	f, err := (&dlqFilterFlags{dlq.FilterInput{Batch: "B", Model: "m", Status: "404", Class: "terminal", Since: "1h", Code: "c", Queue: "q"}}).filter(now)
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
		{dlqFilterFlags{dlq.FilterInput{Status: "42"}}, "--status"},
		{dlqFilterFlags{dlq.FilterInput{Status: "600"}}, "--status"},
		{dlqFilterFlags{dlq.FilterInput{Class: "fatal"}}, "--class"},
		{dlqFilterFlags{dlq.FilterInput{Since: "soon"}}, "--since"},
		{dlqFilterFlags{dlq.FilterInput{Until: "later"}}, "--until"},
	} {
		_, err := tt.flags.filter(now)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("%+v: %v, want a usage error naming %s", tt.flags, err, tt.name)
		}
	}
}
