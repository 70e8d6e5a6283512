package dlq

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// DefaultListLimit is the page size of List when limit <= 0.
const DefaultListLimit = 100

// DefaultPageSize is the page size of Iterate when pageSize <= 0.
const DefaultPageSize = 500

const (
	// minChunk is the least number of index entries read at once when
	// records must be checked against conditions the walked index does not
	// cover.
	minChunk = 64
	// maxChunk bounds every read of an index and the pipelines that follow.
	maxChunk = 1000
)

// ListOption tunes List and Iterate.
type ListOption func(*listConfig)

type listConfig struct{ detail bool }

// WithDetail sets whether listed records carry Request and History. List
// leaves them out by default (they can be large); Iterate, which exports and
// requeues, includes them by default.
func WithDetail(on bool) ListOption { return func(c *listConfig) { c.detail = on } }

// position is a place in listing order: DeadAt (unix ms) descending, then
// job ID descending, which is the order of ZREVRANGE on an index.
type position struct {
	score int64
	id    string
}

// before reports whether p is listed before q.
func (p position) before(q position) bool {
	return p.score > q.score || p.score == q.score && p.id > q.id
}

func encodeCursor(p position) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.score, 10) + ":" + p.id))
}

func decodeCursor(c string) (position, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return position{}, ErrBadCursor
	}
	sc, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return position{}, ErrBadCursor
	}
	n, err := strconv.ParseInt(sc, 10, 64)
	if err != nil {
		return position{}, ErrBadCursor
	}
	return position{score: n, id: id}, nil
}

// pageScript returns up to n entries of an index in listing order, starting
// just after a position, as member, score pairs. The position need not be in
// the index any more (its record may have been deleted or moved): the start
// is then found by binary search among the entries with the same score,
// comparing IDs byte by byte as Redis orders them (Lua's < uses the locale).
// KEYS: index. ARGV: has position (1|0), score, id, max score or +inf (used
// without a position), min score or -inf, n.
var pageScript = redis.NewScript(`
local function less(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return la < lb
end
local key = KEYS[1]
local n = tonumber(ARGV[6])
local start
if ARGV[1] == '1' then
  local cur = redis.call('ZSCORE', key, ARGV[3])
  if cur and tonumber(cur) == tonumber(ARGV[2]) then
    start = redis.call('ZREVRANK', key, ARGV[3]) + 1
  else
    local lo = redis.call('ZCOUNT', key, '(' .. ARGV[2], '+inf')
    local hi = lo + redis.call('ZCOUNT', key, ARGV[2], ARGV[2])
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local m = redis.call('ZREVRANGE', key, mid, mid)[1]
      if less(m, ARGV[3]) then hi = mid else lo = mid + 1 end
    end
    start = lo
  end
elseif ARGV[4] == '+inf' then
  start = 0
else
  start = redis.call('ZCOUNT', key, '(' .. ARGV[4], '+inf')
end
local res = redis.call('ZREVRANGE', key, start, start + n - 1, 'WITHSCORES')
if ARGV[5] == '-inf' then return res end
local min = tonumber(ARGV[5])
local out = {}
for i = 1, #res, 2 do
  if tonumber(res[i + 1]) < min then break end
  out[#out + 1] = res[i]
  out[#out + 1] = res[i + 1]
end
return out
`)

// source yields candidate positions in listing order.
type source interface {
	page(ctx context.Context, after *position, n int) ([]position, error)
}

// indexSource walks one sorted-set index within a score range.
type indexSource struct {
	rdb           redis.UniversalClient
	key, min, max string
}

func (src indexSource) page(ctx context.Context, after *position, n int) ([]position, error) {
	args := []any{"0", "0", "", src.max, src.min, n}
	if after != nil {
		args[0], args[1], args[2] = "1", after.score, after.id
	}
	vals, err := pageScript.Run(ctx, src.rdb, []string{src.key}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", src.key, err)
	}
	out := make([]position, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		f, err := strconv.ParseFloat(vals[i+1], 64)
		if err != nil {
			return nil, fmt.Errorf("read index %s: score %q: %w", src.key, vals[i+1], err)
		}
		out = append(out, position{score: int64(f), id: vals[i]})
	}
	return out, nil
}

// idsSource lists an explicit set of records, already checked and sorted.
type idsSource []position

func (src idsSource) page(_ context.Context, after *position, n int) ([]position, error) {
	i := 0
	if after != nil {
		i, _ = slices.BinarySearchFunc(src, *after, func(e, t position) int {
			if e.before(t) || e == t {
				return -1
			}
			return 1
		})
	}
	return src[i:min(i+n, len(src))], nil
}

// plan is how a filter is served.
type plan struct {
	src   source
	empty bool  // nothing can match
	check bool  // candidates must be checked against the record's fields
	count int64 // the number of candidates, exact when !check
}

// filterFields are the hash fields checkFields reads, in this order.
var filterFields = []string{"q", "b", "m", "c", "st", "cl", fNano, fScore}

func (s *Store) plan(ctx context.Context, f Filter) (plan, error) {
	minS, maxS, exact := "-inf", "+inf", true
	if !f.Since.IsZero() {
		minS = strconv.FormatInt(f.Since.UnixMilli(), 10)
		exact = f.Since.Nanosecond()%1e6 == 0
	}
	if !f.Until.IsZero() {
		if f.Until.Nanosecond()%1e6 == 0 {
			maxS = strconv.FormatInt(f.Until.UnixMilli()-1, 10)
		} else {
			maxS = strconv.FormatInt(f.Until.UnixMilli(), 10)
			exact = false
		}
	}
	if len(f.IDs) > 0 {
		return s.planIDs(ctx, f)
	}
	type dim struct{ name, val string }
	var dims []dim
	for _, d := range []dim{
		{"queue", f.Queue}, {"batch", f.BatchID}, {"model", f.Model},
		{"code", f.Code}, {"class", string(f.Class)}, {"status", statusValue(f.Status)},
	} {
		if d.val != "" {
			dims = append(dims, d)
		}
	}
	keys := []string{s.allKey()}
	if len(dims) > 0 {
		keys = keys[:0]
		for _, d := range dims {
			keys = append(keys, s.idxKey(d.name, d.val))
		}
	}
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.ZCount(ctx, k, minS, maxS)
		}
		return nil
	})
	if err != nil {
		return plan{}, fmt.Errorf("count index entries: %w", err)
	}
	best := 0
	for i, c := range cmds {
		if c.Val() < cmds[best].Val() {
			best = i
		}
	}
	return plan{
		src:   indexSource{rdb: s.rdb, key: keys[best], min: minS, max: maxS},
		empty: cmds[best].Val() == 0,
		check: len(dims) > 1 || !exact,
		count: cmds[best].Val(),
	}, nil
}

// planIDs reads the fields of the listed records and keeps, in listing
// order, those that match.
func (s *Store) planIDs(ctx context.Context, f Filter) (plan, error) {
	ids := slices.Clone(f.IDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	pos := make([]position, len(ids))
	for i, id := range ids {
		pos[i].id = id
	}
	var src idsSource
	for start := 0; start < len(pos); start += maxChunk {
		chunk := pos[start:min(start+maxChunk, len(pos))]
		vals, err := s.fields(ctx, chunk)
		if err != nil {
			return plan{}, err
		}
		for i, v := range vals {
			if !fieldsMatch(f, v) {
				continue
			}
			sc, err := strconv.ParseInt(str(v[7]), 10, 64)
			if err != nil {
				continue
			}
			src = append(src, position{score: sc, id: chunk[i].id})
		}
	}
	slices.SortFunc(src, func(a, b position) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	return plan{src: src, empty: len(src) == 0, count: int64(len(src))}, nil
}

func statusValue(code int) string {
	if code == 0 {
		return ""
	}
	return strconv.Itoa(code)
}

// fields reads filterFields of each candidate, pipelined.
func (s *Store) fields(ctx context.Context, cands []position) ([][]any, error) {
	cmds := make([]*redis.SliceCmd, len(cands))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range cands {
			cmds[i] = p.HMGet(ctx, s.recKey(c.id), filterFields...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := make([][]any, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

func str(v any) string { s, _ := v.(string); return s }

// fieldsMatch applies f to the filterFields values of one record; a record
// that is gone matches nothing.
func fieldsMatch(f Filter, v []any) bool {
	if len(v) != len(filterFields) || v[6] == nil {
		return false
	}
	if f.Queue != "" && str(v[0]) != f.Queue ||
		f.BatchID != "" && str(v[1]) != f.BatchID ||
		f.Model != "" && str(v[2]) != f.Model ||
		f.Code != "" && str(v[3]) != f.Code ||
		f.Status != 0 && str(v[4]) != statusValue(f.Status) ||
		f.Class != "" && str(v[5]) != string(f.Class) {
		return false
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		ns, err := strconv.ParseInt(str(v[6]), 10, 64)
		if err != nil ||
			!f.Since.IsZero() && ns < f.Since.UnixNano() ||
			!f.Until.IsZero() && ns >= f.Until.UnixNano() {
			return false
		}
	}
	return true
}

// load reads the records at cands, pipelined. An entry is nil when the
// record is gone or no longer at that position (replaced with another
// DeadAt since the index was read), so that no record is listed twice.
func (s *Store) load(ctx context.Context, cands []position, withDetail bool) ([]*Record, error) {
	fields := []string{fSummary}
	if withDetail {
		fields = append(fields, fDetail)
	}
	cmds := make([]*redis.SliceCmd, len(cands))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range cands {
			cmds[i] = p.HMGet(ctx, s.recKey(c.id), fields...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := make([]*Record, len(cands))
	for i, c := range cmds {
		v := c.Val()
		var det any
		if withDetail {
			det = v[1]
		}
		rec, err := decode(v[0], det)
		if err != nil {
			return nil, fmt.Errorf("read dead letter %s: %w", cands[i].id, err)
		}
		if rec != nil && rec.ID == cands[i].id && rec.DeadAt.UnixMilli() == cands[i].score {
			out[i] = rec
		}
	}
	return out, nil
}

// chunkSize is how many index entries to read for want more matches, given
// how many of those scanned so far matched: twice the need at first, then
// the need scaled by the observed share of matches, with a margin.
func chunkSize(want, scanned, matched int) int {
	want = min(want, maxChunk)
	n := 2 * want
	switch {
	case scanned == 0:
	case matched == 0:
		n = 2 * scanned
	default:
		n = want * scanned / matched * 5 / 4
	}
	return min(max(n, minChunk), maxChunk)
}

// List returns up to limit dead letters that match f, newest first (DeadAt
// descending, then ID descending), starting after cursor ("" for the first
// page), and the cursor of the next page, "" when there is none.
//
// Paging is stable while records are added and deleted: each record that
// exists throughout is listed exactly once, in order; records added behind
// the cursor (older) are listed, those added ahead of it are not. Records
// carry no Request or History unless WithDetail(true) is given.
//
// List walks the most selective index of the filter and checks the other
// conditions on small hash fields, so its cost follows the records it
// passes over, not the size of the store.
func (s *Store) List(ctx context.Context, f Filter, cursor string, limit int, opts ...ListOption) ([]Record, string, error) {
	var cfg listConfig
	for _, o := range opts {
		o(&cfg)
	}
	return s.list(ctx, f, cursor, limit, cfg)
}

func (s *Store) list(ctx context.Context, f Filter, cursor string, limit int, cfg listConfig) ([]Record, string, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	var after *position
	if cursor != "" {
		p, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", fmt.Errorf("list dead letters: %w", err)
		}
		after = &p
	}
	pl, err := s.plan(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("list dead letters: %w", err)
	}
	if pl.empty {
		return nil, "", nil
	}
	// The sources only yield records with one of the IDs: the final check
	// need not look for each in the list again.
	fm := f
	fm.IDs = nil
	out := make([]Record, 0, min(limit, maxChunk))
	var last position
	var scanned, matched int // for sizing reads when conditions are checked
	for {
		// One more match than asked for tells whether a next page exists.
		want := limit + 1 - len(out)
		n := want
		if pl.check {
			n = chunkSize(want, scanned, matched)
		}
		n = min(n, maxChunk)
		cands, err := pl.src.page(ctx, after, n)
		if err != nil {
			return nil, "", fmt.Errorf("list dead letters: %w", err)
		}
		if len(cands) == 0 {
			return out, "", nil
		}
		// Select the first want candidates that pass the field check; the
		// rest of the chunk is read again on the next round.
		sel := make([]position, 0, min(want, len(cands)))
		upto := len(cands) - 1
		if pl.check {
			vals, err := s.fields(ctx, cands)
			if err != nil {
				return nil, "", fmt.Errorf("list dead letters: %w", err)
			}
			for i, v := range vals {
				if fieldsMatch(f, v) {
					sel = append(sel, cands[i])
					if len(sel) == want {
						upto = i
						break
					}
				}
			}
			scanned += upto + 1
			matched += len(sel)
		} else {
			upto = min(want, len(cands)) - 1
			sel = append(sel, cands[:upto+1]...)
		}
		recs, err := s.load(ctx, sel, cfg.detail)
		if err != nil {
			return nil, "", fmt.Errorf("list dead letters: %w", err)
		}
		for i, r := range recs {
			if r == nil || !fm.Match(r) {
				continue
			}
			if len(out) == limit {
				return out, encodeCursor(last), nil
			}
			out = append(out, *r)
			last = sel[i]
		}
		if upto == len(cands)-1 && len(cands) < n {
			return out, "", nil
		}
		after = &cands[upto]
	}
}

// Iterate calls fn with every dead letter that matches f, newest first,
// reading pageSize records at a time (DefaultPageSize when <= 0), so that
// memory stays bounded however many there are. Records carry Request and
// History unless WithDetail(false) is given. fn may delete the record it is
// given. Iterate stops at the first error from fn and returns it.
func (s *Store) Iterate(ctx context.Context, f Filter, pageSize int, fn func(Record) error, opts ...ListOption) error {
	cfg := listConfig{detail: true}
	for _, o := range opts {
		o(&cfg)
	}
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	cursor := ""
	for {
		recs, next, err := s.list(ctx, f, cursor, pageSize, cfg)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// Count returns the number of dead letters that match f. A filter on at
// most one indexed field (and whole-millisecond Since/Until) is counted from
// the index alone; other filters walk the most selective index.
func (s *Store) Count(ctx context.Context, f Filter) (int64, error) {
	pl, err := s.plan(ctx, f)
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	if pl.empty || !pl.check {
		return pl.count, nil
	}
	var (
		n     int64
		after *position
	)
	for {
		cands, err := pl.src.page(ctx, after, maxChunk)
		if err != nil {
			return 0, fmt.Errorf("count dead letters: %w", err)
		}
		if len(cands) == 0 {
			return n, nil
		}
		vals, err := s.fields(ctx, cands)
		if err != nil {
			return 0, fmt.Errorf("count dead letters: %w", err)
		}
		for _, v := range vals {
			if fieldsMatch(f, v) {
				n++
			}
		}
		if len(cands) < maxChunk {
			return n, nil
		}
		after = &cands[len(cands)-1]
	}
}
