// Package files keeps uploaded files in Redis, for the OpenAI-compatible
// Files API of `mimoq serve`: every replica behind a load balancer reads
// every file, so none may live on a local disk. A file is stored in chunks
// as it arrives (never whole in memory), read back as an io.ReadSeeker
// (a batch submit reads its file twice), and kept for the result TTL.
package files

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// ChunkSize is how much of a file one Redis string holds: just under 1 MiB,
// so that a chunk with Redis's string header fits the allocator's 1 MiB size
// class (a chunk of exactly 1 MiB takes the 1.25 MiB one: 25 % more memory).
const ChunkSize = 1<<20 - 512

// DefaultMaxBytes is the largest file accepted: 200 MB, the limit of an
// OpenAI Batch input file.
const DefaultMaxBytes = 200_000_000

// ErrNotFound is returned (wrapped) for a file that does not exist or has
// expired.
var ErrNotFound = errors.New("no such file")

// TooLargeError says a file was over the limit; nothing of it was kept.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the file is larger than the limit of %d bytes; nothing was stored", e.Limit)
}

// File is a stored file's description, in OpenAI's shape.
type File struct {
	ID        string `json:"id"`
	Object    string `json:"object"` // "file"
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt int64  `json:"expires_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	chunks    int
}

// Key layout: a file's keys share the tag {file:<id>}.
//
//	mimoq:{file:<id>}      hash: id, bytes, created_at, expires_at, filename, purpose, chunks
//	mimoq:{file:<id>}:<n>  string: chunk n
//	mimoq:files            sorted set: file IDs by creation (unix s)
func metaKey(id string) string         { return job.KeyPrefix + "{file:" + id + "}" }
func chunkKey(id string, n int) string { return metaKey(id) + ":" + strconv.Itoa(n) }

const indexKey = job.KeyPrefix + "files"

// Store keeps files in Redis.
type Store struct {
	rdb      redis.UniversalClient
	ttl      time.Duration
	maxBytes int64
}

// New returns a store keeping files for ttl (default job.DefaultResultTTL)
// and refusing files over maxBytes (default DefaultMaxBytes).
func New(rdb redis.UniversalClient, ttl time.Duration, maxBytes int64) *Store {
	if ttl <= 0 {
		ttl = job.DefaultResultTTL
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &Store{rdb: rdb, ttl: ttl, maxBytes: maxBytes}
}

// MaxBytes is the largest file the store accepts.
func (s *Store) MaxBytes() int64 { return s.maxBytes }

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "file-" + hex.EncodeToString(b[:])
}

// Put stores what r yields as a new file. A file over the limit is refused
// with a *TooLargeError and its chunks already written are removed: the
// file's description is written last, so a file is either whole or absent.
func (s *Store) Put(ctx context.Context, filename, purpose string, r io.Reader, now time.Time) (*File, error) {
	f := &File{ID: newID(), Object: "file", Filename: filename, Purpose: purpose, CreatedAt: now.Unix(),
		ExpiresAt: now.Add(s.ttl).Unix()}
	buf := make([]byte, ChunkSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if f.Bytes+int64(n) > s.maxBytes {
				s.removeChunks(f.ID, f.chunks)
				return nil, &TooLargeError{Limit: s.maxBytes}
			}
			if err := s.rdb.Set(ctx, chunkKey(f.ID, f.chunks), buf[:n], s.ttl).Err(); err != nil {
				s.removeChunks(f.ID, f.chunks)
				return nil, fmt.Errorf("store file: %w", err)
			}
			f.Bytes += int64(n)
			f.chunks++
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			s.removeChunks(f.ID, f.chunks)
			return nil, fmt.Errorf("read the upload: %w", err)
		}
	}
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, metaKey(f.ID), "id", f.ID, "bytes", f.Bytes, "created_at", f.CreatedAt, "expires_at", f.ExpiresAt,
		"filename", f.Filename, "purpose", f.Purpose, "chunks", f.chunks)
	pipe.Expire(ctx, metaKey(f.ID), s.ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		s.removeChunks(f.ID, f.chunks)
		return nil, fmt.Errorf("store file: %w", err)
	}
	if err := s.rdb.ZAdd(ctx, indexKey, redis.Z{Score: float64(f.CreatedAt), Member: f.ID}).Err(); err != nil {
		return nil, fmt.Errorf("store file: %w", err)
	}
	return f, nil
}

// removeChunks deletes the first n chunks of file id (a refused upload).
func (s *Store) removeChunks(id string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < n; i += 100 {
		keys := make([]string, 0, 100)
		for j := i; j < min(i+100, n); j++ {
			keys = append(keys, chunkKey(id, j))
		}
		_ = s.rdb.Del(ctx, keys...).Err() // an error leaves them to their TTL
	}
}

// Get reads file id's description.
func (s *Store) Get(ctx context.Context, id string) (*File, error) {
	if !validID(id) {
		return nil, fmt.Errorf("file %s: %w", id, ErrNotFound)
	}
	h, err := s.rdb.HGetAll(ctx, metaKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read file %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("file %s: %w", id, ErrNotFound)
	}
	return fromHash(h), nil
}

func validID(id string) bool {
	return strings.HasPrefix(id, "file-") && len(id) <= 64 && !strings.ContainsAny(id, "{}:")
}

func fromHash(h map[string]string) *File {
	num := func(k string) int64 { n, _ := strconv.ParseInt(h[k], 10, 64); return n }
	return &File{ID: h["id"], Object: "file", Bytes: num("bytes"), CreatedAt: num("created_at"), ExpiresAt: num("expires_at"),
		Filename: h["filename"], Purpose: h["purpose"], chunks: int(num("chunks"))}
}

// List returns files, newest first (oldest first with oldestFirst), after
// the file after (the one before the page; "" for the first page), at most
// limit; more says whether further files follow.
func (s *Store) List(ctx context.Context, after string, limit int, oldestFirst bool) (out []*File, more bool, err error) {
	rank, rangeOf := s.rdb.ZRevRank, s.rdb.ZRevRange
	if oldestFirst {
		rank, rangeOf = s.rdb.ZRank, s.rdb.ZRange
	}
	start := int64(0)
	if after != "" {
		rank, err := rank(ctx, indexKey, after).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, false, fmt.Errorf("list files: %w", err)
		}
		if err == nil {
			start = rank + 1
		}
	}
	for len(out) <= limit {
		ids, err := rangeOf(ctx, indexKey, start, start+int64(limit)).Result()
		if err != nil {
			return nil, false, fmt.Errorf("list files: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		start += int64(len(ids))
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, metaKey(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, false, fmt.Errorf("list files: %w", err)
		}
		var gone []any
		for i, c := range cmds {
			if h := c.Val(); len(h) > 0 {
				out = append(out, fromHash(h))
			} else {
				gone = append(gone, ids[i])
			}
		}
		if len(gone) > 0 {
			_ = s.rdb.ZRem(ctx, indexKey, gone...).Err() // expired files leave the index
		}
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// Delete removes file id; false when there was none.
func (s *Store) Delete(ctx context.Context, id string) (bool, error) {
	f, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := s.rdb.Del(ctx, metaKey(id)).Err(); err != nil {
		return false, fmt.Errorf("delete file %s: %w", id, err)
	}
	s.removeChunks(id, f.chunks)
	_ = s.rdb.ZRem(ctx, indexKey, id).Err()
	return true, nil
}

// Open returns the content of file id as an io.ReadSeeker, reading one
// chunk at a time from Redis.
func (s *Store) Open(ctx context.Context, id string) (*Reader, error) {
	f, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &Reader{ctx: ctx, s: s, f: f, chunk: -1}, nil
}

// Reader reads a stored file.
type Reader struct {
	ctx   context.Context
	s     *Store
	f     *File
	off   int64
	chunk int    // the chunk in buf, -1 for none
	buf   []byte // chunk's bytes
}

// File is the description of the file being read.
func (r *Reader) File() *File { return r.f }

func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.f.Bytes {
		return 0, io.EOF
	}
	n := int(r.off / ChunkSize)
	if n != r.chunk {
		b, err := r.s.rdb.Get(r.ctx, chunkKey(r.f.ID, n)).Bytes()
		if errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("file %s: chunk %d is gone (the file expired while it was read)", r.f.ID, n)
		}
		if err != nil {
			return 0, fmt.Errorf("read file %s: %w", r.f.ID, err)
		}
		r.chunk, r.buf = n, b
	}
	k := copy(p, r.buf[r.off-int64(n)*ChunkSize:])
	r.off += int64(k)
	return k, nil
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.f.Bytes
	default:
		return 0, errors.New("files: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("files: negative position")
	}
	r.off = offset
	return offset, nil
}
