package enqueue_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// failingFile reads like its content on a submit's first pass and fails
// after cut bytes on the second: a submit interrupted (the disk, the
// process) while it enqueues.
type failingFile struct {
	content []byte
	cut     int
	starts  int
	r       io.Reader
}

var errDiskGone = errors.New("the disk went away")

func (f *failingFile) Read(p []byte) (int, error) { return f.r.Read(p) }

func (f *failingFile) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart && off == 0 {
		f.starts++
		if f.starts == 2 { // the second pass
			f.r = io.MultiReader(bytes.NewReader(f.content[:f.cut]), errReader{})
			return 0, nil
		}
	}
	r := bytes.NewReader(f.content)
	n, err := r.Seek(off, whence)
	f.r = r
	return n, err
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errDiskGone }

// TestCancelOfAnInterruptedSubmitEndsTheBatch (review hole 1): a submit
// interrupted after its first chunk, then canceled, ends: the batch is
// over, every line is final (the lines never enqueued as canceled),
// total = succeeded + dead + canceled, and waiting for it returns.
func TestCancelOfAnInterruptedSubmitEndsTheBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 2500
	content := batchLines(n, "mimo-v2.6-flash")
	f := &failingFile{content: content, cut: len(content) / 2}
	if _, err := c.SubmitBatch(ctx, f, enqueue.BatchOptions{ID: "cut-short"}); !errors.Is(err, errDiskGone) {
		t.Fatalf("interrupted submit: %v, want the read error", err)
	}
	b, err := c.GetBatch(ctx, "cut-short")
	if err != nil || b.State != enqueue.BatchSubmitting || b.Total != n {
		t.Fatalf("interrupted batch: %+v, %v", b, err)
	}
	canceled, err := c.CancelBatch(ctx, "cut-short")
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	b, err = c.WaitBatch(wctx, "cut-short")
	if err != nil {
		t.Fatalf("waiting for the canceled batch: %v (%+v)", err, b)
	}
	if b.State != enqueue.BatchCanceled || b.FinishedAt.IsZero() || b.Pending != 0 ||
		b.Succeeded+b.Dead+b.Canceled != b.Total || canceled != n {
		t.Errorf("canceled batch: %+v, %d canceled; want it over with every line canceled", b, canceled)
	}
	if ttl := rdb.TTL(ctx, batchKeyOf(t, rdb, "cut-short")).Val(); ttl <= 0 {
		t.Errorf("the over batch's record keeps no TTL (%s): it would stay forever", ttl)
	}
	lines := 0
	if err := c.Results(ctx, "cut-short", false, func(l *enqueue.ResultLine) error {
		if l.Error == nil || l.Error.Code != "canceled" {
			t.Errorf("result %+v, want canceled", l)
		}
		lines++
		return nil
	}); err != nil || lines != n {
		t.Errorf("results: %d lines, %v; want %d", lines, err, n)
	}
}

// batchKeyOf finds the key of batch id's record as an operator would, with
// redis-cli's KEYS.
func batchKeyOf(t *testing.T, rdb *redis.Client, id string) string {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), "mimoq:batch:*"+id+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, ":final") && !strings.HasSuffix(k, ":lines") && !strings.Contains(k, ":backlog") {
			return k
		}
	}
	t.Fatalf("no record key of batch %s in %v", id, keys)
	return ""
}
