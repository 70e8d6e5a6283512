package dlq_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
)

// benchRecord is a dead letter of realistic size: a 1 KB request and five
// attempts.
func benchRecord(i int) *dlq.Record {
	models := []string{"mimo-v2.6-pro", "mimo-v2.6-flash", "mimo-v2.6-pro-ultraspeed"}
	codes := []string{"invalid_request", "authentication_failed", "rate_limit_exceeded", "server_error"}
	r := record(i, t0.Add(time.Duration(i)*time.Millisecond))
	r.Queue = []string{job.QueueInteractive, job.QueueBatch}[i%2]
	r.Model = models[i%3]
	r.ErrorCode = codes[i%4]
	r.BatchID = fmt.Sprintf("batch-%d", i%10)
	r.Request = json.RawMessage(`{"model":"` + r.Model + `","messages":[{"role":"user","content":"` + strings.Repeat("x", 1000) + `"}]}`)
	for a := 1; a <= 5; a++ {
		r.History = append(r.History, job.Attempt{Attempt: a, Start: t0, DurationMs: 100, StatusCode: 503, ErrorCode: "server_error", Class: "retryable", NextDelay: 2000})
	}
	return r
}

func BenchmarkPut(b *testing.B) {
	bb := setup(b)
	recs := make([]*dlq.Record, 1000)
	for i := range recs {
		recs[i] = benchRecord(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := *recs[i%len(recs)]
		r.ID = id(i)
		if err := bb.store.Put(bb.ctx, &r); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkListFiltered lists the first page of 50 out of 20,000 dead
// letters through filters of growing selectivity.
func BenchmarkListFiltered(b *testing.B) {
	bb := setup(b)
	const n = 20_000
	recs := make([]*dlq.Record, n)
	for i := range recs {
		recs[i] = benchRecord(i)
	}
	if err := bb.store.PutMany(bb.ctx, recs); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		f    dlq.Filter
	}{
		{"all", dlq.Filter{}},
		{"code", dlq.Filter{Code: "rate_limit_exceeded"}},
		{"queue+model", dlq.Filter{Queue: job.QueueBatch, Model: "mimo-v2.6-flash"}},
		{"batch+code+model", dlq.Filter{BatchID: "batch-3", Code: "server_error", Model: "mimo-v2.6-pro"}},
		{"since+model", dlq.Filter{Since: t0.Add(15 * time.Second), Model: "mimo-v2.6-pro-ultraspeed"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				recs, _, err := bb.store.List(bb.ctx, bc.f, "", 50)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) == 0 {
					b.Fatal("no match")
				}
			}
		})
	}
}
