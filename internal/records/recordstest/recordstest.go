// Package recordstest plays a worker's part in tests of the packages that
// read jobs (the HTTP API, the web page, operator actions): it takes a job
// and ends it the way a worker does, through the record store's own
// transitions, so that tests never write Redis keys by hand.
package recordstest

import (
	"context"
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
