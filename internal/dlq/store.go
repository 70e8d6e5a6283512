// Package dlq is mimoq's dead-letter store: one record per dead job in Redis,
// with the full request, the class, the last error and the whole attempt
// history, indexed by queue, batch, model, error code, HTTP status, class and
// time of death.
//
// asynq keeps its own archive too, but trims it to the newest 10,000 tasks per
// queue and silently drops anything older than 90 days. This store is
// uncapped and sets no TTL: a dead letter is something an operator has not
// dealt with yet, and it stays until it is requeued or deleted. Losing one
// would lose a request the user paid to submit.
//
// # Layout
//
// Every key carries the hash tag {dlq}, so that each Lua script touches a
// single Redis Cluster slot (the whole store lives on one shard):
//
//	<prefix>{dlq}:rec:<id>            hash: sc (DeadAt, unix ms), dn (DeadAt, unix ns),
//	                                  q b m c st cl ln (indexed values), s (summary JSON),
//	                                  d (request and history JSON)
//	<prefix>{dlq}:idx:all             sorted set: id scored by DeadAt (unix ms)
//	<prefix>{dlq}:idx:<dim>:<value>   the same, per queue, batch, model, code, status, class
//	<prefix>{dlq}:cnt:<dim>           hash: value -> number of records (queue, model,
//	                                  code, status, class, lane), for Summary
//
// Empty values (and status 0) are not indexed. Put and Delete are Lua
// scripts, so a record and its index entries and counters always agree. They
// build the names of the old version's index keys from the prefix they are
// given, which Redis Cluster accepts because all keys share one slot.
// Listing walks the most selective index from newest to oldest and checks
// the remaining conditions on the small hash fields, loading the summary JSON
// (and the detail only when asked) for records that match.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// ErrNotFound is returned (wrapped; test with errors.Is) when no dead letter
// has the ID asked for.
var ErrNotFound = errors.New("dead letter not found")

// ErrBadCursor is returned when List is given a cursor it did not produce.
var ErrBadCursor = errors.New("invalid dlq cursor")

// Store reads and writes dead letters. It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	base string // prefix + "{dlq}:"
}

// New returns a store on rdb.
func New(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, base: job.KeyPrefix + "{dlq}:"}
}

func (s *Store) recKey(id string) string { return s.base + "rec:" + id }
func (s *Store) allKey() string          { return s.base + "idx:all" }
func (s *Store) idxKey(dim, v string) string {
	return s.base + "idx:" + dim + ":" + v
}
func (s *Store) cntKey(dim string) string { return s.base + "cnt:" + dim }

// Hash fields of a record. The index dimensions are listed in the same
// order in the Lua scripts (dims) and in filterFields.
const (
	fScore   = "sc"
	fNano    = "dn"
	fSummary = "s"
	fDetail  = "d"
)

// luaDims describes the indexed and counted dimensions for the scripts: the
// record field holding the value, the dimension name used in key names,
// whether it has a sorted-set index and whether Summary counts it.
const luaDims = `
local base, id = ARGV[1], ARGV[2]
local dims = {
  {'q', 'queue', true, true},
  {'b', 'batch', true, false},
  {'m', 'model', true, true},
  {'c', 'code', true, true},
  {'st', 'status', true, true},
  {'cl', 'class', true, true},
  {'ln', 'lane', false, true},
}
local function unindex(rec)
  local vals = redis.call('HMGET', rec, 'q', 'b', 'm', 'c', 'st', 'cl', 'ln')
  for i, d in ipairs(dims) do
    local v = vals[i]
    if v and v ~= '' then
      if d[3] then redis.call('ZREM', base .. 'idx:' .. d[2] .. ':' .. v, id) end
      if d[4] then
        local cnt = base .. 'cnt:' .. d[2]
        if redis.call('HINCRBY', cnt, v, -1) <= 0 then redis.call('HDEL', cnt, v) end
      end
    end
  end
  redis.call('ZREM', base .. 'idx:all', id)
end
`

// putScript upserts a record: it removes the index entries and counts of the
// version it replaces, then writes and indexes the new one.
// KEYS: rec, idx:all. ARGV: base, id, score, nanos, then the values of dims
// in order, summary, detail. Returns 1 when created, 0 when replaced.
var putScript = redis.NewScript(luaDims + `
local existed = redis.call('EXISTS', KEYS[1]) == 1
if existed then
  unindex(KEYS[1])
  redis.call('DEL', KEYS[1])
end
local score = ARGV[3]
local fields = {'sc', score, 'dn', ARGV[4], 's', ARGV[12], 'd', ARGV[13]}
for i, d in ipairs(dims) do
  local v = ARGV[4 + i]
  fields[#fields + 1] = d[1]
  fields[#fields + 1] = v
  if v ~= '' then
    if d[3] then redis.call('ZADD', base .. 'idx:' .. d[2] .. ':' .. v, score, id) end
    if d[4] then redis.call('HINCRBY', base .. 'cnt:' .. d[2], v, 1) end
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], score, id)
if existed then return 0 end
return 1
`)

// deleteScript removes a record and all its index entries and counts.
// KEYS: rec, idx:all. ARGV: base, id, nanos ("" = any DeadAt).
// Returns 1 when deleted, 0 when absent, -1 when DeadAt differs.
var deleteScript = redis.NewScript(luaDims + `
local dn = redis.call('HGET', KEYS[1], 'dn')
if not dn then return 0 end
if ARGV[3] ~= '' and dn ~= ARGV[3] then return -1 end
unindex(KEYS[1])
redis.call('DEL', KEYS[1])
return 1
`)

// detail is what the d field holds: the parts of a record List leaves out.
type detail struct {
	Request json.RawMessage `json:"request,omitempty"`
	History []job.Attempt   `json:"history,omitempty"`
}

// encoded is a validated record ready for putScript.
type encoded struct {
	id   string
	keys []string
	args []any
}

func (s *Store) encode(rec *Record) (encoded, error) {
	if rec == nil {
		return encoded{}, errors.New("put dead letter: nil record")
	}
	switch {
	case rec.ID == "":
		return encoded{}, errors.New("put dead letter: empty id")
	case rec.Class == "":
		return encoded{}, fmt.Errorf("put dead letter %s: empty class", rec.ID)
	case rec.DeadAt.IsZero():
		return encoded{}, fmt.Errorf("put dead letter %s: zero dead_at", rec.ID)
	}
	sum := *rec
	sum.DeadAt = rec.DeadAt.UTC()
	sum.Request, sum.History = nil, nil
	sb, err := json.Marshal(&sum)
	if err != nil {
		return encoded{}, fmt.Errorf("put dead letter %s: %w", rec.ID, err)
	}
	var db []byte
	if len(rec.Request) > 0 || len(rec.History) > 0 {
		if db, err = json.Marshal(detail{Request: rec.Request, History: rec.History}); err != nil {
			return encoded{}, fmt.Errorf("put dead letter %s: %w", rec.ID, err)
		}
	}
	st := ""
	if rec.StatusCode != 0 {
		st = strconv.Itoa(rec.StatusCode)
	}
	return encoded{
		id:   rec.ID,
		keys: []string{s.recKey(rec.ID), s.allKey()},
		args: []any{
			s.base, rec.ID, rec.DeadAt.UnixMilli(), strconv.FormatInt(rec.DeadAt.UnixNano(), 10),
			rec.Queue, rec.BatchID, rec.Model, rec.ErrorCode, st, string(rec.Class), laneField(rec.Queue, rec.Model),
			sb, db,
		},
	}, nil
}

// laneField is the counter field of a queue and model pair. Queue names
// never hold a NUL byte.
func laneField(queue, model string) string { return queue + "\x00" + model }

// Put writes rec, replacing any record with the same ID together with its
// index entries, in one atomic step. ID and Class must be set and DeadAt
// non-zero.
func (s *Store) Put(ctx context.Context, rec *Record) error {
	e, err := s.encode(rec)
	if err != nil {
		return err
	}
	if err := putScript.Run(ctx, s.rdb, e.keys, e.args...).Err(); err != nil {
		return fmt.Errorf("put dead letter %s: %w", e.id, err)
	}
	return nil
}

// putBatch bounds the commands queued in one pipeline by PutMany.
const putBatch = 500

// PutMany writes recs as Put does, pipelined. Each record is written
// atomically, the set as a whole is not: on error some may have been
// written (writing them again is harmless). Every record is validated before
// anything is written.
func (s *Store) PutMany(ctx context.Context, recs []*Record) error {
	all := make([]encoded, 0, len(recs))
	for _, r := range recs {
		e, err := s.encode(r)
		if err != nil {
			return err
		}
		all = append(all, e)
	}
	for start := 0; start < len(all); start += putBatch {
		chunk := all[start:min(start+putBatch, len(all))]
		err := s.putPipelined(ctx, chunk)
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// The script cache was flushed (or never filled): load it
			// and write the chunk again; upserts are idempotent.
			if err = putScript.Load(ctx, s.rdb).Err(); err == nil {
				err = s.putPipelined(ctx, chunk)
			}
		}
		if err != nil {
			return fmt.Errorf("put %d dead letters: %w", len(recs), err)
		}
	}
	return nil
}

func (s *Store) putPipelined(ctx context.Context, chunk []encoded) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range chunk {
			putScript.EvalSha(ctx, p, e.keys, e.args...)
		}
		return nil
	})
	return err
}

// Get returns the full record of job id, request and history included.
func (s *Store) Get(ctx context.Context, id string) (*Record, error) {
	vals, err := s.rdb.HMGet(ctx, s.recKey(id), fSummary, fDetail).Result()
	if err != nil {
		return nil, fmt.Errorf("get dead letter %s: %w", id, err)
	}
	rec, err := decode(vals[0], vals[1])
	if err != nil {
		return nil, fmt.Errorf("get dead letter %s: %w", id, err)
	}
	if rec == nil {
		return nil, fmt.Errorf("get dead letter %s: %w", id, ErrNotFound)
	}
	return rec, nil
}

// Missing returns those of ids that have no dead letter, in order.
func (s *Store) Missing(ctx context.Context, ids []string) ([]string, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Exists(ctx, s.recKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	var out []string
	for i, c := range cmds {
		if c.Val() == 0 {
			out = append(out, ids[i])
		}
	}
	return out, nil
}

// decode builds a record from the s and d hash fields as HMGET returns
// them; a nil summary means the record does not exist (nil, nil).
func decode(sum, det any) (*Record, error) {
	sb, ok := sum.(string)
	if !ok {
		return nil, nil
	}
	rec := new(Record)
	if err := json.Unmarshal([]byte(sb), rec); err != nil {
		return nil, fmt.Errorf("decode summary: %w", err)
	}
	if db, ok := det.(string); ok && db != "" {
		var d detail
		if err := json.Unmarshal([]byte(db), &d); err != nil {
			return nil, fmt.Errorf("decode detail: %w", err)
		}
		rec.Request, rec.History = d.Request, d.History
	}
	return rec, nil
}

// Delete removes the record of job id and all its index entries. It reports
// false when there was none.
func (s *Store) Delete(ctx context.Context, id string) (bool, error) {
	n, err := s.del(ctx, id, "")
	if err != nil {
		return false, fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return n == 1, nil
}

// DeleteIf removes the record of job id only when its DeadAt equals deadAt,
// and reports whether it did. A requeue reads a record, enqueues the job
// again and then deletes the record with DeleteIf: if the job died again in
// between, the new record (with a later DeadAt) stays.
func (s *Store) DeleteIf(ctx context.Context, id string, deadAt time.Time) (bool, error) {
	if deadAt.IsZero() {
		return false, fmt.Errorf("delete dead letter %s: zero dead_at", id)
	}
	n, err := s.del(ctx, id, strconv.FormatInt(deadAt.UnixNano(), 10))
	if err != nil {
		return false, fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return n == 1, nil
}

func (s *Store) del(ctx context.Context, id, nanos string) (int64, error) {
	return deleteScript.Run(ctx, s.rdb, []string{s.recKey(id), s.allKey()}, s.base, id, nanos).Int64()
}

// Summary is the dead-letter totals `mimoq stats` shows. Empty values and
// status 0 are not counted in their maps, so a map may sum to less than
// Total.
type Summary struct {
	Total        int64                       `json:"total"`
	ByQueue      map[string]int64            `json:"by_queue"`
	ByModel      map[string]int64            `json:"by_model"`
	ByClass      map[string]int64            `json:"by_class"`
	ByCode       map[string]int64            `json:"by_code"`
	ByStatus     map[int]int64               `json:"by_status"`
	ByQueueModel map[string]map[string]int64 `json:"by_queue_model"` // queue -> model -> count
}

// Summary returns the totals. It reads counters kept by Put and Delete, so
// its cost does not grow with the number of records.
func (s *Store) Summary(ctx context.Context) (Summary, error) {
	var (
		total *redis.IntCmd
		cnt   = map[string]*redis.MapStringStringCmd{}
		dims  = []string{"queue", "model", "class", "code", "status", "lane"}
	)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		total = p.ZCard(ctx, s.allKey())
		for _, d := range dims {
			cnt[d] = p.HGetAll(ctx, s.cntKey(d))
		}
		return nil
	})
	if err != nil {
		return Summary{}, fmt.Errorf("dead letter summary: %w", err)
	}
	sum := Summary{
		Total:        total.Val(),
		ByQueue:      counts(cnt["queue"].Val()),
		ByModel:      counts(cnt["model"].Val()),
		ByClass:      counts(cnt["class"].Val()),
		ByCode:       counts(cnt["code"].Val()),
		ByStatus:     map[int]int64{},
		ByQueueModel: map[string]map[string]int64{},
	}
	for k, n := range counts(cnt["status"].Val()) {
		if code, err := strconv.Atoi(k); err == nil {
			sum.ByStatus[code] = n
		}
	}
	for k, n := range counts(cnt["lane"].Val()) {
		q, m, _ := strings.Cut(k, "\x00")
		if sum.ByQueueModel[q] == nil {
			sum.ByQueueModel[q] = map[string]int64{}
		}
		sum.ByQueueModel[q][m] = n
	}
	return sum, nil
}

func counts(h map[string]string) map[string]int64 {
	out := make(map[string]int64, len(h))
	for k, v := range h {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			out[k] = n
		}
	}
	return out
}
