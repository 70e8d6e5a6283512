package enqueue_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestBatchShareOptions: a batch keeps its weight and tenant (a resubmit
// keeps the first submit's), and bad ones are refused before anything is
// enqueued.
func TestBatchShareOptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.New(t).Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lines := batchLines(3, "mimo-v2.6-flash")
	b, err := c.SubmitBatch(ctx, bytes.NewReader(lines), enqueue.BatchOptions{ID: "s", Weight: 7, Tenant: "acme"})
	if err != nil || b.Weight != 7 || b.Tenant != "acme" || b.Backlog != 3 {
		t.Fatalf("batch %+v %v, want weight 7, tenant acme, 3 lines waiting", b, err)
	}
	b, err = c.SubmitBatch(ctx, bytes.NewReader(lines), enqueue.BatchOptions{ID: "s", Weight: 2})
	if err != nil || b.Weight != 7 || b.Tenant != "acme" {
		t.Errorf("resubmit: %+v %v, want the first submit's weight and tenant", b, err)
	}
	for _, opts := range []enqueue.BatchOptions{{Weight: -1}, {Weight: enqueue.MaxWeight + 1}, {Tenant: "a b"}, {Tenant: "é"}} {
		opts.ID = "bad"
		var inv *enqueue.InvalidRequestError
		if _, err := c.SubmitBatch(ctx, bytes.NewReader(lines), opts); !errors.As(err, &inv) {
			t.Errorf("options %+v: %v, want an InvalidRequestError", opts, err)
		}
	}
	if _, err := c.GetBatch(ctx, "bad"); !errors.Is(err, enqueue.ErrNotFound) {
		t.Errorf("a refused batch exists: %v", err)
	}
}

func TestParseWeight(t *testing.T) {
	for in, want := range map[string]int{"1": 1, "1000": 1000, "0": 0, "-2": 0, "1001": 0, "x": 0, "": 0, "2.0": 0} {
		got, err := enqueue.ParseWeight(in)
		if got != want || (err == nil) != (want > 0) {
			t.Errorf("ParseWeight(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}
