package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
)

// submitBatch submits the batch file at path with enqueue.Client.SubmitBatch
// and returns the batch ID.
func (f *fleet) submitBatch(path, source string) string {
	f.t.Helper()
	file, err := os.Open(path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer file.Close()
	b, err := f.client.SubmitBatch(context.Background(), file, enqueue.BatchOptions{Source: source + "/" + filepath.Base(path)})
	if err != nil {
		f.t.Fatalf("submit batch: %v", err)
	}
	return b.ID
}

// waitBatch polls batch id until done reports true and returns it.
func (f *fleet) waitBatch(id string, done func(*enqueue.Batch) bool, d time.Duration) *enqueue.Batch {
	f.t.Helper()
	var b *enqueue.Batch
	Eventually(f.t, d, "batch "+id, func() bool {
		var err error
		if b, err = f.client.GetBatch(context.Background(), id); err != nil {
			f.t.Fatalf("get batch %s: %v", id, err)
		}
		return done(b)
	})
	return b
}

// deadLines runs `mimoq dlq list --json` with filter flags and parses every
// line.
func (f *fleet) deadLines(filters ...string) []deadLine {
	f.t.Helper()
	out, stderr, code := f.run(append([]string{"dlq", "list", "--json"}, filters...)...)
	if code != 0 {
		f.t.Fatalf("dlq list %v exited %d: %s", filters, code, stderr)
	}
	var lines []deadLine
	for i, l := range Lines(out) {
		var d deadLine
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			f.t.Fatalf("dlq list line %d: %v: %s", i+1, err, l)
		}
		lines = append(lines, d)
	}
	return lines
}

// deadCount counts dead letters in the store directly.
func (f *fleet) deadCount(filter dlq.Filter) int64 {
	f.t.Helper()
	n, err := dlq.New(f.rdb).Count(context.Background(), filter)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}
