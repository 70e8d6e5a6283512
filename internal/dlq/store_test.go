package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/redistest"
)

type bundle struct {
	ctx   context.Context
	rdb   *redis.Client
	store *dlq.Store
}

func setup(t testing.TB) *bundle {
	t.Helper()
	rdb := redistest.New(t).Client()
	return &bundle{ctx: context.Background(), rdb: rdb, store: dlq.New(rdb)}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// id returns a ULID-like job ID that sorts with i.
func id(i int) string { return fmt.Sprintf("01J%023d", i) }

func record(i int, deadAt time.Time) *dlq.Record {
	return &dlq.Record{
		ID: id(i), Queue: job.QueueBatch, Model: "mimo-v2.6-flash", Class: job.ClassTerminal,
		StatusCode: 400, ErrorCode: "invalid_request", ErrorMessage: "bad", Attempts: 1, DeadAt: deadAt,
	}
}

func putAll(t testing.TB, b *bundle, recs []*dlq.Record) {
	t.Helper()
	if err := b.store.PutMany(b.ctx, recs); err != nil {
		t.Fatal(err)
	}
}

// listAll pages through f with the given page size and returns the IDs.
func listAll(t testing.TB, b *bundle, f dlq.Filter, page int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for range 1_000_000 {
		recs, next, err := b.store.List(b.ctx, f, cursor, page)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > page {
			t.Fatalf("page of %d records, limit %d", len(recs), page)
		}
		if next != "" && len(recs) == 0 {
			t.Fatalf("empty page with a next cursor %q", next)
		}
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		if next == "" {
			return ids
		}
		cursor = next
	}
	t.Fatal("listing does not end")
	return nil
}

func TestPutGetRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dead := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	want := &dlq.Record{
		ID: "01JQ0000000000000000000001", BatchID: "batch-1", CustomID: "req-7",
		Queue: job.QueueBatch, Model: "mimo-v2.6-pro", Class: job.ClassExhausted, Reason: "server_error",
		StatusCode: 503, ErrorCode: "service_unavailable", ErrorMessage: "try later", ErrorType: "error",
		RequestID: "req-abc", Attempts: 5, DeadAt: dead,
		Request: json.RawMessage(`{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled"}}`),
		History: []job.Attempt{
			{Attempt: 1, Start: t0, DurationMs: 120, StatusCode: 503, ErrorCode: "service_unavailable", Class: "retryable", NextDelay: 2000, Worker: "w1"},
			{Attempt: 2, Start: t0.Add(3 * time.Second), Reason: "interrupted", Worker: "w2"},
			{Attempt: 2, Start: t0.Add(9 * time.Second), DurationMs: 80, StatusCode: 503, RequestID: "req-abc"},
		},
	}
	if err := b.store.Put(b.ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.Get(b.ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.DeadAt.Equal(dead) {
		t.Errorf("dead_at = %v, want %v", got.DeadAt, dead)
	}
	cmp := *want
	cmp.DeadAt = got.DeadAt
	for i := range cmp.History {
		cmp.History[i].Start = got.History[i].Start
		if !got.History[i].Start.Equal(want.History[i].Start) {
			t.Errorf("history[%d].start = %v", i, got.History[i].Start)
		}
	}
	if !reflect.DeepEqual(got, &cmp) {
		t.Errorf("Get:\n got %+v\nwant %+v", got, &cmp)
	}

	// List leaves out the request and history unless asked.
	recs, _, err := b.store.List(b.ctx, dlq.Filter{}, "", 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("List = %d records, %v", len(recs), err)
	}
	if recs[0].Request != nil || recs[0].History != nil || recs[0].ErrorCode != want.ErrorCode {
		t.Errorf("List record = %+v, want summary only", recs[0])
	}
	recs, _, err = b.store.List(b.ctx, dlq.Filter{}, "", 10, dlq.WithDetail(true))
	if err != nil || len(recs) != 1 || string(recs[0].Request) != string(want.Request) || len(recs[0].History) != 3 {
		t.Fatalf("List WithDetail = %+v, %v", recs, err)
	}

	if _, err := b.store.Get(b.ctx, "nope"); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("Get(absent) error = %v, want ErrNotFound", err)
	}
}

func TestPutValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name string
		rec  *dlq.Record
	}{
		{"nil", nil},
		{"no id", &dlq.Record{Class: job.ClassTerminal, DeadAt: t0}},
		{"no class", &dlq.Record{ID: "a", DeadAt: t0}},
		{"no dead_at", &dlq.Record{ID: "a", Class: job.ClassTerminal}},
		{"bad request json", &dlq.Record{ID: "a", Class: job.ClassTerminal, DeadAt: t0, Request: json.RawMessage(`{"x":`)}},
	} {
		if err := b.store.Put(b.ctx, tc.rec); err == nil {
			t.Errorf("%s: Put succeeded", tc.name)
		}
		if err := b.store.PutMany(b.ctx, []*dlq.Record{record(1, t0), tc.rec}); err == nil {
			t.Errorf("%s: PutMany succeeded", tc.name)
		}
	}
	if n, err := b.rdb.DBSize(b.ctx).Result(); err != nil || n != 0 {
		t.Fatalf("invalid records wrote %d keys (%v)", n, err)
	}
}

func TestPutManyAfterScriptFlush(t *testing.T) {
	t.Parallel()
	b := setup(t)
	putAll(t, b, []*dlq.Record{record(1, t0)})
	if err := b.rdb.ScriptFlush(b.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	putAll(t, b, []*dlq.Record{record(1, t0), record(2, t0), record(3, t0)})
	if n, err := b.store.Count(b.ctx, dlq.Filter{}); err != nil || n != 3 {
		t.Fatalf("Count = %d, %v; want 3", n, err)
	}
}

func TestPutUpsertMovesIndexes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := record(1, t0)
	r.ErrorCode, r.Queue, r.StatusCode, r.BatchID = "code_a", job.QueueInteractive, 400, "b1"
	other := record(2, t0.Add(-time.Hour))
	other.ErrorCode = "code_a"
	putAll(t, b, []*dlq.Record{r, other})

	moved := *r
	moved.ErrorCode, moved.Queue, moved.StatusCode, moved.BatchID = "code_b", job.QueueBatch, 422, ""
	moved.DeadAt = t0.Add(time.Minute)
	moved.Attempts = 2
	if err := b.store.Put(b.ctx, &moved); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		f    dlq.Filter
		want []string
	}{
		{dlq.Filter{Code: "code_a"}, []string{id(2)}},
		{dlq.Filter{Code: "code_b"}, []string{id(1)}},
		{dlq.Filter{Queue: job.QueueInteractive}, nil},
		{dlq.Filter{Queue: job.QueueBatch}, []string{id(1), id(2)}},
		{dlq.Filter{BatchID: "b1"}, nil},
		{dlq.Filter{Status: 400}, []string{id(2)}},
		{dlq.Filter{Status: 422}, []string{id(1)}},
		{dlq.Filter{Until: t0.Add(time.Second)}, []string{id(2)}},
		{dlq.Filter{}, []string{id(1), id(2)}},
	} {
		if got := listAll(t, b, tc.f, 10); !slices.Equal(got, tc.want) {
			t.Errorf("List(%+v) = %v, want %v", tc.f, got, tc.want)
		}
		if n, err := b.store.Count(b.ctx, tc.f); err != nil || n != int64(len(tc.want)) {
			t.Errorf("Count(%+v) = %d, %v; want %d", tc.f, n, err, len(tc.want))
		}
	}
	got, err := b.store.Get(b.ctx, id(1))
	if err != nil || got.Attempts != 2 || got.ErrorCode != "code_b" {
		t.Fatalf("Get after upsert = %+v, %v", got, err)
	}
	sum, err := b.store.Summary(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total != 2 || !reflect.DeepEqual(sum.ByCode, map[string]int64{"code_a": 1, "code_b": 1}) ||
		!reflect.DeepEqual(sum.ByQueue, map[string]int64{job.QueueBatch: 2}) {
		t.Errorf("Summary after upsert = %+v", sum)
	}
	// Nothing is left of the old version's index entries.
	if n, err := b.rdb.Exists(b.ctx, "mimoq:{dlq}:idx:code:code_a", "mimoq:{dlq}:idx:batch:b1", "mimoq:{dlq}:idx:queue:interactive").Result(); err != nil || n != 1 {
		t.Errorf("%d of the old index keys exist (%v), want only code_a (record 2)", n, err)
	}
}

func TestConcurrentUpsertsKeepOneIndexEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				r := record(1, t0.Add(time.Duration(i)*time.Millisecond))
				r.ErrorCode = fmt.Sprintf("code_%d", (g+i)%5)
				if err := b.store.Put(b.ctx, r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	sum, err := b.store.Summary(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var codes int64
	for _, n := range sum.ByCode {
		codes += n
	}
	if sum.Total != 1 || codes != 1 {
		t.Fatalf("after concurrent upserts of one ID: total %d, codes %v", sum.Total, sum.ByCode)
	}
	keys, err := b.rdb.Keys(b.ctx, "mimoq:{dlq}:idx:code:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("code index keys = %v (%v), want one", keys, err)
	}
}

func TestListNewestFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Ties on DeadAt (and on its millisecond) are broken by ID, descending.
	putAll(t, b, []*dlq.Record{
		record(1, t0),
		record(2, t0.Add(2*time.Second)),
		record(3, t0),
		record(4, t0.Add(time.Second)),
		record(5, t0.Add(300*time.Microsecond)),
		record(6, t0.Add(-time.Hour)),
	})
	want := []string{id(2), id(4), id(5), id(3), id(1), id(6)}
	for _, page := range []int{1, 2, 5, 6, 100} {
		if got := listAll(t, b, dlq.Filter{}, page); !slices.Equal(got, want) {
			t.Errorf("page size %d: %v, want %v", page, got, want)
		}
	}
	// The last page ends the listing: no empty page after it.
	recs, next, err := b.store.List(b.ctx, dlq.Filter{}, "", 6)
	if err != nil || len(recs) != 6 || next != "" {
		t.Errorf("List(limit = total) = %d records, next %q, %v", len(recs), next, err)
	}
	if _, _, err := b.store.List(b.ctx, dlq.Filter{}, "not a cursor!", 6); !errors.Is(err, dlq.ErrBadCursor) {
		t.Errorf("List(bad cursor) error = %v, want ErrBadCursor", err)
	}
}

// TestListPagingStable pages through 2,500 records while others are added
// and deleted between pages, the record under the cursor included.
func TestListPagingStable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		filter dlq.Filter
	}{
		{"all", dlq.Filter{}},
		{"one index", dlq.Filter{Model: "mimo-v2.6-flash"}},
		{"checked fields", dlq.Filter{Model: "mimo-v2.6-flash", Class: job.ClassTerminal}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			rng := rand.New(rand.NewPCG(1, 2))
			const n = 2500
			recs := make([]*dlq.Record, n)
			for i := range recs {
				// Groups of up to 7 share a millisecond, some the exact time.
				recs[i] = record(i, t0.Add(time.Duration(i/7)*time.Millisecond+time.Duration(i%2)*time.Microsecond))
			}
			putAll(t, b, recs)
			deadAt := map[string]time.Time{}
			for _, r := range recs {
				deadAt[r.ID] = r.DeadAt
			}
			deleted, expected := map[string]bool{}, map[string]bool{}
			for _, r := range recs {
				expected[r.ID] = true
			}
			seen := map[string]int{}
			var prev *dlq.Record
			cursor, next := "", 100000
			for pages := 0; ; pages++ {
				got, nc, err := b.store.List(b.ctx, tc.filter, cursor, 37)
				if err != nil {
					t.Fatal(err)
				}
				for i := range got {
					r := &got[i]
					seen[r.ID]++
					if prev != nil && !(r.DeadAt.UnixMilli() < prev.DeadAt.UnixMilli() ||
						r.DeadAt.UnixMilli() == prev.DeadAt.UnixMilli() && r.ID < prev.ID) {
						t.Fatalf("%s (%v) listed after %s (%v)", r.ID, r.DeadAt, prev.ID, prev.DeadAt)
					}
					prev = r
				}
				if nc == "" {
					break
				}
				cursor = nc
				// Delete the record under the cursor, a few unseen ones, and
				// add records behind the cursor (listed) and ahead (not).
				if _, err := b.store.Delete(b.ctx, prev.ID); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					victim := id(rng.IntN(n))
					if seen[victim] == 0 && !deleted[victim] {
						deleted[victim] = true
						delete(expected, victim)
						if ok, err := b.store.Delete(b.ctx, victim); err != nil || !ok {
							t.Fatalf("Delete(%s) = %v, %v", victim, ok, err)
						}
					}
				}
				// Whole milliseconds, so that "older" is older in listing
				// order too (within a millisecond the ID decides).
				span := prev.DeadAt.Truncate(time.Millisecond).Sub(t0)
				if span > 0 {
					older := record(next, t0.Add(time.Duration(rng.Int64N(int64(span)))))
					expected[older.ID] = true
					newer := record(next+1, t0.Add(time.Hour+time.Duration(pages)*time.Millisecond))
					tie := record(next+2, prev.DeadAt) // same time; sorts after the cursor's ID? only if smaller
					if tie.ID < prev.ID {
						expected[tie.ID] = true
					}
					putAll(t, b, []*dlq.Record{older, newer, tie})
					next += 3
				}
			}
			for idv := range expected {
				if seen[idv] != 1 {
					t.Errorf("%s listed %d times, want once", idv, seen[idv])
				}
			}
			for idv, c := range seen {
				if !expected[idv] {
					t.Errorf("%s listed %d times, want never (added ahead of the cursor or deleted)", idv, c)
				}
			}
			if len(expected) < n-300 {
				t.Fatalf("only %d records expected, the test lost its point", len(expected))
			}
		})
	}
}

// TestListTiesWithDeletedCursor puts many records in one millisecond and
// deletes the record under each cursor, so that paging must find its place
// among equal scores without it.
func TestListTiesWithDeletedCursor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var recs []*dlq.Record
	var want []string
	for i := 300; i > 0; i-- {
		recs = append(recs, record(i, t0))
		want = append(want, id(i))
	}
	putAll(t, b, recs)
	var got []string
	cursor := ""
	for {
		page, next, err := b.store.List(b.ctx, dlq.Filter{Class: job.ClassTerminal}, cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		if ok, err := b.store.Delete(b.ctx, page[len(page)-1].ID); err != nil || !ok {
			t.Fatalf("Delete = %v, %v", ok, err)
		}
		// A listed record that dies again (a newer DeadAt) is not listed twice.
		if len(page) > 1 {
			moved := record(0, t0.Add(time.Second))
			moved.ID = page[0].ID
			if err := b.store.Put(b.ctx, moved); err != nil {
				t.Fatal(err)
			}
		}
		cursor = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d records:\n%v\nwant %d", len(got), got, len(want))
	}
}

func TestFilterMatch(t *testing.T) {
	t.Parallel()
	r := &dlq.Record{ID: "x", BatchID: "b", Queue: "q", Model: "m", ErrorCode: "c", Class: "terminal", StatusCode: 401, DeadAt: t0}
	for _, tc := range []struct {
		f    dlq.Filter
		want bool
	}{
		{dlq.Filter{}, true},
		{dlq.Filter{Queue: "q", BatchID: "b", Model: "m", Code: "c", Class: "terminal", Status: 401, Since: t0, Until: t0.Add(1), IDs: []string{"y", "x"}}, true},
		{dlq.Filter{Queue: "other"}, false},
		{dlq.Filter{BatchID: "other"}, false},
		{dlq.Filter{Model: "other"}, false},
		{dlq.Filter{Code: "other"}, false},
		{dlq.Filter{Class: "exhausted"}, false},
		{dlq.Filter{Status: 402}, false},
		{dlq.Filter{Since: t0.Add(1)}, false},
		{dlq.Filter{Until: t0}, false},
		{dlq.Filter{IDs: []string{"y"}}, false},
	} {
		if got := tc.f.Match(r); got != tc.want {
			t.Errorf("%+v.Match = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	queues := []string{job.QueueInteractive, job.QueueBatch}
	models := []string{"mimo-v2.6-pro", "mimo-v2.6-flash", "mimo-v2.6-pro-ultraspeed"}
	codes := []string{"invalid_request", "authentication_failed", "rate_limit_exceeded", ""}
	statuses := []int{400, 401, 429, 0}
	var recs []*dlq.Record
	for i := range 240 {
		r := record(i, t0.Add(time.Duration(i)*time.Minute+time.Duration(i%3)*time.Microsecond))
		r.Queue = queues[i%2]
		r.Model = models[i%3]
		r.ErrorCode = codes[i%4]
		r.StatusCode = statuses[i%4]
		r.Class = job.ClassTerminal
		if i%4 >= 2 {
			r.Class = job.ClassExhausted
		}
		if r.Queue == job.QueueBatch {
			r.BatchID = fmt.Sprintf("batch-%d", i%5)
		}
		recs = append(recs, r)
	}
	putAll(t, b, recs)

	for _, tc := range []struct {
		name string
		f    dlq.Filter
		want int // -1: only compare with Match over the data
	}{
		{"none", dlq.Filter{}, 240},
		{"queue+model", dlq.Filter{Queue: job.QueueBatch, Model: "mimo-v2.6-flash"}, 40},
		{"batch+code", dlq.Filter{BatchID: "batch-1", Code: "authentication_failed"}, 12},
		{"status", dlq.Filter{Status: 429}, 60},
		{"class", dlq.Filter{Class: job.ClassExhausted}, 120},
		{"since", dlq.Filter{Since: t0.Add(200 * time.Minute)}, 40},
		{"since sub-ms", dlq.Filter{Since: t0.Add(200*time.Minute + 3*time.Microsecond)}, 39},
		{"until sub-ms", dlq.Filter{Until: t0.Add(10*time.Minute + 2*time.Microsecond)}, 11},
		{"since+until", dlq.Filter{Since: t0.Add(10 * time.Minute), Until: t0.Add(20 * time.Minute)}, 10},
		{"queue+status+class", dlq.Filter{Queue: job.QueueInteractive, Status: 401, Class: job.ClassTerminal}, 0},
		{"model+class+since", dlq.Filter{Model: "mimo-v2.6-pro", Class: job.ClassTerminal, Since: t0.Add(120 * time.Minute)}, -1},
		{"ids", dlq.Filter{IDs: []string{id(5), id(7), id(7), id(100), "absent"}}, 3},
		{"ids+queue", dlq.Filter{IDs: []string{id(5), id(6), id(100)}, Queue: job.QueueInteractive}, 2},
		{"ids+until", dlq.Filter{IDs: []string{id(5), id(6), id(100)}, Until: t0.Add(6 * time.Minute)}, 1},
		{"batch in other queue", dlq.Filter{BatchID: "batch-1", Queue: job.QueueInteractive}, 0},
		{"unknown model", dlq.Filter{Model: "gpt-4"}, 0},
		{"code+status mismatch", dlq.Filter{Code: "invalid_request", Status: 401}, 0},
		{"since after all", dlq.Filter{Since: t0.Add(24 * time.Hour)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for i := len(recs) - 1; i >= 0; i-- {
				if tc.f.Match(recs[i]) {
					want = append(want, recs[i].ID)
				}
			}
			if tc.want >= 0 && len(want) != tc.want {
				t.Fatalf("the test data has %d matches, the case says %d", len(want), tc.want)
			}
			if tc.want == -1 && len(want) == 0 {
				t.Fatal("case matches nothing")
			}
			for _, page := range []int{7, 1000} {
				if got := listAll(t, b, tc.f, page); !slices.Equal(got, want) {
					t.Errorf("List (page %d) = %v\nwant %v", page, got, want)
				}
			}
			if n, err := b.store.Count(b.ctx, tc.f); err != nil || n != int64(len(want)) {
				t.Errorf("Count = %d, %v; want %d", n, err, len(want))
			}
		})
	}
}

// TestBeyondAsynqArchiveCap stores more dead letters in one batch than
// asynq's archive keeps per queue (10,000) and finds every one.
func TestBeyondAsynqArchiveCap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 12_000
	recs := make([]*dlq.Record, n)
	for i := range recs {
		recs[i] = record(i, t0.Add(time.Duration(i%97)*time.Second))
		recs[i].BatchID = "big"
		recs[i].Request = json.RawMessage(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hello"}]}`)
	}
	putAll(t, b, recs)
	for _, f := range []dlq.Filter{{}, {BatchID: "big"}, {BatchID: "big", Class: job.ClassTerminal}} {
		if c, err := b.store.Count(b.ctx, f); err != nil || c != n {
			t.Errorf("Count(%+v) = %d, %v; want %d", f, c, err, n)
		}
	}
	seen := make(map[string]bool, n)
	err := b.store.Iterate(b.ctx, dlq.Filter{BatchID: "big", Model: "mimo-v2.6-flash"}, 1000, func(r dlq.Record) error {
		if seen[r.ID] {
			return fmt.Errorf("%s seen twice", r.ID)
		}
		if len(r.Request) == 0 {
			return fmt.Errorf("%s without its request", r.ID)
		}
		seen[r.ID] = true
		return nil
	})
	if err != nil || len(seen) != n {
		t.Fatalf("Iterate saw %d records, %v; want %d", len(seen), err, n)
	}
	sum, err := b.store.Summary(b.ctx)
	if err != nil || sum.Total != n || sum.ByQueueModel[job.QueueBatch]["mimo-v2.6-flash"] != n {
		t.Fatalf("Summary = %+v, %v", sum, err)
	}
}

func TestIterate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var recs []*dlq.Record
	for i := range 50 {
		recs = append(recs, record(i, t0.Add(time.Duration(i)*time.Second)))
	}
	putAll(t, b, recs)

	// fn may delete what it is given (as requeue does), and its error stops
	// the walk.
	stop := errors.New("stop")
	var got []string
	err := b.store.Iterate(b.ctx, dlq.Filter{}, 4, func(r dlq.Record) error {
		got = append(got, r.ID)
		if ok, err := b.store.DeleteIf(b.ctx, r.ID, r.DeadAt); err != nil || !ok {
			return fmt.Errorf("DeleteIf(%s) = %v, %v", r.ID, ok, err)
		}
		if len(got) == 30 {
			return stop
		}
		return nil
	}, dlq.WithDetail(false))
	if !errors.Is(err, stop) || len(got) != 30 || got[0] != id(49) || got[29] != id(20) {
		t.Fatalf("Iterate = %v after %v", err, got)
	}
	got = got[:0]
	if err := b.store.Iterate(b.ctx, dlq.Filter{}, 0, func(r dlq.Record) error {
		got = append(got, r.ID)
		return nil
	}); err != nil || len(got) != 20 || got[0] != id(19) {
		t.Fatalf("Iterate after deletes = %v, %v", got, err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := record(1, t0.Add(123456789*time.Nanosecond))
	r.BatchID, r.Request = "b", json.RawMessage(`{}`)
	if err := b.store.Put(b.ctx, r); err != nil {
		t.Fatal(err)
	}

	// A requeue that read an older death must not delete a newer one.
	for _, at := range []time.Time{r.DeadAt.Add(time.Nanosecond), r.DeadAt.Add(-time.Millisecond), t0} {
		if ok, err := b.store.DeleteIf(b.ctx, r.ID, at); err != nil || ok {
			t.Fatalf("DeleteIf(%v) = %v, %v; want false", at, ok, err)
		}
	}
	if _, err := b.store.Get(b.ctx, r.ID); err != nil {
		t.Fatalf("record gone after DeleteIf with another dead_at: %v", err)
	}
	if _, err := b.store.DeleteIf(b.ctx, r.ID, time.Time{}); err == nil {
		t.Error("DeleteIf(zero time) succeeded")
	}
	if ok, err := b.store.DeleteIf(b.ctx, r.ID, r.DeadAt.In(time.FixedZone("X", 3600))); err != nil || !ok {
		t.Fatalf("DeleteIf(same instant) = %v, %v; want true", ok, err)
	}
	if ok, err := b.store.DeleteIf(b.ctx, r.ID, r.DeadAt); err != nil || ok {
		t.Fatalf("DeleteIf(absent) = %v, %v; want false", ok, err)
	}

	if err := b.store.Put(b.ctx, r); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, false} {
		if ok, err := b.store.Delete(b.ctx, r.ID); err != nil || ok != want {
			t.Fatalf("Delete #%d = %v, %v; want %v", i+1, ok, err, want)
		}
	}
	if _, err := b.store.Get(b.ctx, r.ID); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	// Every index entry and counter went with it.
	if keys, err := b.rdb.Keys(b.ctx, "*").Result(); err != nil || len(keys) != 0 {
		t.Fatalf("keys left after Delete: %v (%v)", keys, err)
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mk := func(i int, q, m, class, code string, status int) *dlq.Record {
		r := record(i, t0.Add(time.Duration(i)*time.Second))
		r.Queue, r.Model, r.Class, r.ErrorCode, r.StatusCode = q, m, job.Class(class), code, status
		return r
	}
	putAll(t, b, []*dlq.Record{
		mk(1, "interactive", "mimo-v2.6-pro", "terminal", "authentication_failed", 401),
		mk(2, "interactive", "mimo-v2.6-pro", "terminal", "authentication_failed", 401),
		mk(3, "batch", "mimo-v2.6-pro", "exhausted", "rate_limit_exceeded", 429),
		mk(4, "batch", "mimo-v2.6-flash", "exhausted", "connection_error", 0),
		mk(5, "batch", "mimo-v2.6-flash", "terminal", "", 400),
	})
	if _, err := b.store.Delete(b.ctx, id(2)); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.Summary(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := dlq.Summary{
		Total:    4,
		ByQueue:  map[string]int64{"interactive": 1, "batch": 3},
		ByModel:  map[string]int64{"mimo-v2.6-pro": 2, "mimo-v2.6-flash": 2},
		ByClass:  map[string]int64{"terminal": 2, "exhausted": 2},
		ByCode:   map[string]int64{"authentication_failed": 1, "rate_limit_exceeded": 1, "connection_error": 1},
		ByStatus: map[int]int64{401: 1, 429: 1, 400: 1},
		ByQueueModel: map[string]map[string]int64{
			"interactive": {"mimo-v2.6-pro": 1},
			"batch":       {"mimo-v2.6-pro": 1, "mimo-v2.6-flash": 2},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Summary:\n got %+v\nwant %+v", got, want)
	}
	empty, err := setup(t).store.Summary(b.ctx)
	if err != nil || empty.Total != 0 || len(empty.ByCode) != 0 {
		t.Fatalf("empty Summary = %+v, %v", empty, err)
	}
}

func TestFromJob(t *testing.T) {
	t.Parallel()
	e := &job.Error{StatusCode: 402, Code: "insufficient_funds", Message: "no money", Type: "server_error",
		Class: job.ClassTerminal, Reason: "payment", RequestID: "r"}
	j := &job.Job{ID: "j", BatchID: "b", CustomID: "c", Queue: "batch", Model: "m", State: job.StateDead, Attempts: 1,
		FinishedAt: t0, Error: e, Request: json.RawMessage(`{"model":"m"}`), History: []job.Attempt{{Attempt: 1, StatusCode: 402}}}
	r := dlq.FromJob(j)
	if r.ID != "j" || r.BatchID != "b" || r.CustomID != "c" || r.Queue != "batch" || r.Model != "m" ||
		string(r.Request) != `{"model":"m"}` || r.Attempts != 1 || !r.DeadAt.Equal(t0) || len(r.History) != 1 ||
		r.Class != job.ClassTerminal {
		t.Errorf("FromJob = %+v", r)
	}
	if got := r.JobError(); !reflect.DeepEqual(got, e) {
		t.Errorf("JobError() = %+v, want %+v", got, e)
	}
	// An exhausted job's dead letter is exhausted; one without an error
	// still says so.
	j.Error = &job.Error{Class: job.ClassExhausted, Code: "server_error"}
	if r := dlq.FromJob(j); r.Class != job.ClassExhausted {
		t.Errorf("class of an exhausted job: %s", r.Class)
	}
	j.Error = nil
	if r := dlq.FromJob(j); r.Class != job.ClassTerminal || r.ErrorCode != "unknown" {
		t.Errorf("dead letter of a job without error: %+v", r)
	}
}
