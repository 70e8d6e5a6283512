package files

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/redistest"
)

func TestPutAndReadBack(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	s := New(rdb, time.Hour, 0)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2*ChunkSize + ChunkSize/2} {
		content := make([]byte, size)
		for i := range content {
			content[i] = byte(r.IntN(256))
		}
		f, err := s.Put(ctx, "in.jsonl", "batch", bytes.NewReader(content), time.Now())
		if err != nil {
			t.Fatalf("put %d bytes: %v", size, err)
		}
		if f.Bytes != int64(size) || f.Object != "file" || f.Purpose != "batch" || f.ExpiresAt <= f.CreatedAt {
			t.Errorf("file %+v", f)
		}
		rd, err := s.Open(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		for pass := range 2 { // read twice, as a batch submit does
			if _, err := rd.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rd)
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("%d bytes, pass %d: read back %d bytes, %v", size, pass, len(got), err)
			}
		}
		if end, _ := rd.Seek(0, io.SeekEnd); end != int64(size) {
			t.Errorf("size by seeking: %d, want %d", end, size)
		}
		if size > 10 {
			rd.Seek(int64(size-5), io.SeekStart)
			tail, _ := io.ReadAll(rd)
			if !bytes.Equal(tail, content[size-5:]) {
				t.Errorf("read after a seek: %q", tail)
			}
		}
	}
}

func TestTooLargeStoresNothing(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	s := New(rdb, time.Hour, 2*ChunkSize+10)
	ctx := context.Background()
	_, err := s.Put(ctx, "big.jsonl", "batch", bytes.NewReader(make([]byte, 3*ChunkSize)), time.Now())
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Limit != 2*ChunkSize+10 {
		t.Fatalf("put over the limit: %v", err)
	}
	if keys, _ := rdb.Keys(ctx, "*").Result(); len(keys) != 0 {
		t.Errorf("a refused upload left %v", keys)
	}
}

func TestListGetDelete(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	s := New(rdb, time.Hour, 0)
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		f, err := s.Put(ctx, "f.jsonl", "batch", bytes.NewReader([]byte("x")), time.Unix(int64(1000+i), 0))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	page, more, err := s.List(ctx, "", 2, false)
	if err != nil || len(page) != 2 || !more || page[0].ID != ids[4] || page[1].ID != ids[3] {
		t.Fatalf("first page: %v more %v, %v", page, more, err)
	}
	page, more, err = s.List(ctx, page[1].ID, 10, false)
	if err != nil || len(page) != 3 || more || page[2].ID != ids[0] {
		t.Fatalf("second page: %v more %v, %v", page, more, err)
	}
	page, more, err = s.List(ctx, ids[1], 2, true)
	if err != nil || len(page) != 2 || !more || page[0].ID != ids[2] || page[1].ID != ids[3] {
		t.Fatalf("oldest first, after the second: %v more %v, %v", page, more, err)
	}
	if ok, err := s.Delete(ctx, ids[2]); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if _, err := s.Get(ctx, ids[2]); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if ok, _ := s.Delete(ctx, ids[2]); ok {
		t.Error("a second delete found the file")
	}
	if _, err := s.Get(ctx, "file-{x}"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get of a malformed id: %v", err)
	}
	all, _, _ := s.List(ctx, "", 10, false)
	if len(all) != 4 {
		t.Errorf("%d files left, want 4", len(all))
	}
}
