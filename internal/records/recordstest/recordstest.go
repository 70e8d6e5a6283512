// Package recordstest plays a worker's part in tests of the packages that
// read jobs (the HTTP API, the web page, operator actions): it takes a job
// and ends it the way a worker does, through the record store's own
// transitions, so that tests never write Redis keys by hand.
package recordstest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
)

// Finish takes job id as a worker's delivery would and writes outcome o:
// counted in its batch, announced, and for a dead job with its dead letter
// written, as the worker does. It fails the test when the job cannot be
// taken.
func Finish(tb testing.TB, rdb redis.UniversalClient, id string, o records.Outcome) {
	tb.Helper()
	ctx := context.Background()
	st := records.New(rdb, 0)
	b, err := st.Begin(ctx, id, records.NewLease(), "test-worker", time.Now())
	if err != nil || b.Verdict != records.Run {
		tb.Fatalf("recordstest: begin job %s: %+v, %v", id, b, err)
	}
	if f, err := st.Finish(ctx, b.Delivery, o, time.Now()); err != nil || f.Written != records.Applied {
		tb.Fatalf("recordstest: finish job %s: %+v, %v", id, f, err)
	}
	if o.State != job.StateDead {
		return
	}
	j, err := st.Get(ctx, id, true)
	if err != nil {
		tb.Fatal(err)
	}
	if err := dlq.New(rdb).Put(ctx, dlq.FromJob(j)); err != nil {
		tb.Fatal(err)
	}
}

// Succeed ends job id with answer result (200).
func Succeed(tb testing.TB, rdb redis.UniversalClient, id string, result string) {
	tb.Helper()
	Finish(tb, rdb, id, records.Outcome{State: job.StateSucceeded, Counted: true, Result: json.RawMessage(result),
		StatusCode: 200, RequestID: "req-" + id, Entry: &job.Attempt{Attempt: 1, Start: time.Now().UTC(), StatusCode: 200,
			Class: job.ClassSuccess}})
}

// Kill ends job id dead with a terminal error of status and code.
func Kill(tb testing.TB, rdb redis.UniversalClient, id string, status int, code string) {
	tb.Helper()
	e := &job.Error{StatusCode: status, Code: code, Message: "failed: " + code, Class: job.ClassTerminal}
	Finish(tb, rdb, id, records.Outcome{State: job.StateDead, Counted: true, Error: e, StatusCode: status,
		ErrorBody: json.RawMessage(`{"error":{"code":"` + code + `","message":"failed","type":"error"}}`),
		Entry:     &job.Attempt{Attempt: 1, Start: time.Now().UTC(), StatusCode: status, ErrorCode: code, Class: job.ClassTerminal}})
}
