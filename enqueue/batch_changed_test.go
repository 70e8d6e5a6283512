package enqueue_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/redistest"
)

// changingFile serves one content to a submit's first pass and another to
// its second: a file edited while it is being submitted.
type changingFile struct {
	contents [2][]byte
	starts   int
	r        *bytes.Reader
}

func (f *changingFile) Read(p []byte) (int, error) { return f.r.Read(p) }

func (f *changingFile) Seek(off int64, whence int) (int64, error) {
	if f.r == nil {
		f.r = bytes.NewReader(f.contents[0])
	}
	if whence == io.SeekStart && off == 0 {
		f.r = bytes.NewReader(f.contents[min(f.starts, 1)])
		f.starts++
	}
	return f.r.Seek(off, whence)
}

func batchLines(n int, model string) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"custom_id":"r%d","body":{"model":%q,"messages":[{"role":"user","content":"q%d"}]}}`+"\n", i, model, i)
	}
	return []byte(b.String())
}

func TestSubmitBatchRefusesAFileChangedMidway(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	orig := batchLines(600, "mimo-v2.6-flash")
	for _, tc := range []struct {
		name   string
		second []byte
	}{
		{"a line edited", bytes.Replace(orig, []byte(`"q7"`), []byte(`"Q7"`), 1)},
		{"a model changed", bytes.Replace(orig, []byte(`"mimo-v2.6-flash","messages":[{"role":"user","content":"q9"}`), []byte(`"mimo-v2.6-pro","messages":[{"role":"user","content":"q9"}`), 1)},
		{"a line added", append(bytes.Clone(orig), `{"custom_id":"extra","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}`+"\n"...)},
		{"a line broken", bytes.Replace(orig, []byte(`{"custom_id":"r3"`), []byte(`{"custom_id":`), 1)},
	} {
		f := &changingFile{contents: [2][]byte{orig, tc.second}}
		_, err := c.SubmitBatch(context.Background(), f, enqueue.BatchOptions{})
		if err == nil || !strings.Contains(err.Error(), "changed while it was submitted") {
			t.Errorf("%s: SubmitBatch = %v; want the file refused as changed", tc.name, err)
		}
	}
	// Unchanged, the same reader type submits fine.
	f := &changingFile{contents: [2][]byte{orig, orig}}
	b, err := c.SubmitBatch(context.Background(), f, enqueue.BatchOptions{})
	if err != nil || b.Total != 600 {
		t.Fatalf("unchanged file: %+v, %v", b, err)
	}
}
