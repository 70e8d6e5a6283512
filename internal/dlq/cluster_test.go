package dlq_test

import (
	"context"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestStoreOnCluster runs the store on a Redis Cluster. Put and Delete
// touch index and counter keys they do not declare (built from the prefix
// inside the script); Redis Cluster accepts that only because every key
// carries the {dlq} hash tag and so lives in one slot. Listing, filters,
// summary, the NOSCRIPT reload of PutMany and upserts must all work there.
func TestStoreOnCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.NewCluster(t).Client()
	store := dlq.New(rdb)

	if err := rdb.ScriptFlush(ctx).Err(); err != nil { // every master: PutMany reloads
		t.Fatal(err)
	}
	var recs []*dlq.Record
	for i := range 300 {
		r := record(i, t0.Add(time.Duration(i)*time.Second))
		if i%3 == 0 {
			r.Model, r.Class, r.StatusCode, r.ErrorCode = "mimo-v2.6-pro", job.ClassExhausted, 503, "service_unavailable"
		}
		r.BatchID = "b1"
		recs = append(recs, r)
	}
	if err := store.PutMany(ctx, recs); err != nil {
		t.Fatalf("PutMany on a cluster: %v", err)
	}
	// An upsert replaces the record and its index entries.
	up := record(1, t0.Add(time.Hour))
	up.BatchID, up.Model = "b1", "mimo-v2.6-pro-ultraspeed"
	if err := store.Put(ctx, up); err != nil {
		t.Fatalf("Put on a cluster: %v", err)
	}

	count := func(f dlq.Filter) int64 {
		t.Helper()
		n, err := store.Count(ctx, f)
		if err != nil {
			t.Fatalf("count %+v: %v", f, err)
		}
		return n
	}
	if n := count(dlq.Filter{}); n != 300 {
		t.Errorf("%d records; want 300", n)
	}
	if n := count(dlq.Filter{Model: "mimo-v2.6-pro", Status: 503}); n != 100 {
		t.Errorf("%d pro/503 records; want 100", n)
	}
	if n := count(dlq.Filter{Model: "mimo-v2.6-pro-ultraspeed", BatchID: "b1"}); n != 1 {
		t.Errorf("%d omni records; want the one upserted", n)
	}
	recsPage, next, err := store.List(ctx, dlq.Filter{Class: job.ClassTerminal}, "", 10)
	if err != nil || len(recsPage) != 10 || next == "" {
		t.Fatalf("list: %d records, cursor %q, %v", len(recsPage), next, err)
	}
	if recsPage[0].ID != up.ID {
		t.Errorf("newest terminal record %s; want the upserted %s", recsPage[0].ID, up.ID)
	}
	sum, err := store.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total != 300 || sum.ByModel["mimo-v2.6-pro"] != 100 || sum.ByStatus[503] != 100 || sum.ByModel["mimo-v2.6-pro-ultraspeed"] != 1 {
		t.Errorf("summary %+v", sum)
	}
	if ok, err := store.Delete(ctx, recs[0].ID); err != nil || !ok {
		t.Fatalf("delete on a cluster: %v %v", ok, err)
	}
	if ok, err := store.DeleteIf(ctx, up.ID, t0); err != nil || ok {
		t.Fatalf("DeleteIf with an old dead_at deleted %v, %v; want it kept", ok, err)
	}
	if n := count(dlq.Filter{Model: "mimo-v2.6-pro"}); n != 99 {
		t.Errorf("%d pro records after a delete; want 99", n)
	}
	if _, err := store.Get(ctx, up.ID); err != nil {
		t.Errorf("get: %v", err)
	}
}
