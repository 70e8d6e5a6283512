package enqueue

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
)

// BatchState is where a batch is in its life.
type BatchState string

// The states of a batch.
const (
	// BatchSubmitting: lines are being enqueued (an interrupted submit stays
	// here until it is run again with the same ID).
	BatchSubmitting BatchState = "submitting"
	// BatchRunning: every line is enqueued; some are not final yet.
	BatchRunning BatchState = "running"
	// BatchDone: every job is final.
	BatchDone BatchState = "done"
	// BatchCanceled: canceled; jobs that had not started are canceled, the
	// rest ran to their end.
	BatchCanceled BatchState = "canceled"
)

// Batch is the record of one batch, as `mimoq batch status --json` prints it.
type Batch struct {
	ID          string     `json:"id"`
	State       BatchState `json:"state"`
	Queue       string     `json:"queue"`
	Source      string     `json:"source,omitempty"` // file name it came from
	Total       int        `json:"total"`
	Enqueued    int        `json:"enqueued"`
	Succeeded   int        `json:"succeeded"`
	Dead        int        `json:"dead"`
	Canceled    int        `json:"canceled"`
	Pending     int        `json:"pending"` // total - succeeded - dead - canceled
	Usage       Usage      `json:"usage"`
	CreatedAt   time.Time  `json:"created_at"`
	SubmittedAt time.Time  `json:"submitted_at,omitzero"` // every line enqueued
	FinishedAt  time.Time  `json:"finished_at,omitzero"`
	// Rate is jobs finished per second since the batch was submitted, and
	// ETA the expected time of the last one at that rate (zero if unknown).
	Rate float64   `json:"rate"`
	ETA  time.Time `json:"eta,omitzero"`
}

// BatchLine is one parsed line of a batch input file (the OpenAI Batch input
// format: {"custom_id", "method", "url", "body"}).
type BatchLine struct {
	Line     int             // 1-based line number in the file
	CustomID string          // required, unique in the file
	Body     json.RawMessage // the chat-completions request body, byte-for-byte
	Model    string
}

// LineError is one invalid line of a batch file.
type LineError struct {
	Line   int
	Reason string
}

// BatchFileError reports every invalid line of a batch file (the first
// MaxLineErrors of them kept, Count counting all). Nothing was enqueued.
type BatchFileError struct {
	Name   string      // file name, for FILE:LINE messages
	Errors []LineError // the first MaxLineErrors
	Count  int         // all invalid lines
}

// MaxLineErrors is how many invalid lines a BatchFileError keeps.
const MaxLineErrors = 20

// BatchOptions changes one SubmitBatch call.
type BatchOptions struct {
	// ID is the batch ID. Submitting again with the same ID enqueues nothing
	// twice and completes an interrupted submit. Default: a new ULID.
	ID string
	// Queue is where the lines go. Default batch.
	Queue string
	// Source names the input (a file name) in errors and in the record.
	Source string
	// Progress, when set, is told how far validation ("validate") and
	// enqueueing ("enqueue") have come.
	Progress func(phase string, done, total int)
	// MaxLineBytes, when positive, replaces the client's MaxLineBytes for
	// this file.
	MaxLineBytes int
}

// ResultLine is one line of a batch results file (the OpenAI Batch output
// format).
type ResultLine struct {
	ID       string          `json:"id"`
	CustomID string          `json:"custom_id"`
	Response *ResultResponse `json:"response"`
	Error    *ResultError    `json:"error"`
}

// ResultResponse is the API's answer to one line.
type ResultResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// ResultError is why a line did not succeed.
type ResultError struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Class    string `json:"class,omitempty"`
	Attempts int    `json:"attempts"`
}

// ErrBatchConflict is returned when a batch ID is reused for different
// content.
var ErrBatchConflict = errors.New("batch ID already used for a different file")

// ErrBadCursor is returned for a listing cursor this package did not write.
var ErrBadCursor = errors.New("bad cursor")

// validBatchID limits user-given batch IDs to what is safe in keys and URLs.
func validBatchID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("batch ID %q must be 1 to 128 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("batch ID %q may hold only letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

// batchJobID is the job ID of request index (0-based) of a batch: a ULID
// with the batch's creation time and an entropy made of the batch ID's hash
// and the index, so that submitting the same batch again yields the same
// IDs (asynq refuses them: nothing is enqueued twice) and IDs sort in input
// order.
func batchJobID(batchID string, createdMs int64, index int) string {
	var id ulid.ULID
	_ = id.SetTime(uint64(createdMs))
	h := sha256.Sum256([]byte(batchID))
	var e [10]byte
	copy(e[:6], h[:6])
	binary.BigEndian.PutUint32(e[6:], uint32(index))
	_ = id.SetEntropy(e[:])
	return id.String()
}

// batchCreateScript creates a batch record unless one exists. An existing
// record must describe the same file (hash and line count).
// KEYS: batch. ARGV: id, sha256, total, queue, source, created_at, created_ms.
var batchCreateScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st then
  if redis.call('HGET', KEYS[1], 'sha256') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'total') ~= ARGV[3] then
    return {'conflict', st, redis.call('HGET', KEYS[1], 'created_ms')}
  end
  return {'exists', st, redis.call('HGET', KEYS[1], 'created_ms')}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'submitting', 'sha256', ARGV[2], 'total', ARGV[3],
  'queue', ARGV[4], 'source', ARGV[5], 'created_at', ARGV[6], 'created_ms', ARGV[7],
  'succeeded', 0, 'dead', 0, 'canceled', 0)
return {'created', 'submitting', ARGV[7]}
`)

// batchDoneLua ends a batch whose jobs are all final: state done (a
// canceled batch stays canceled), finished_at, and the TTL of its keys.
// Expects KEYS[1] batch, KEYS[2] final set, ARGV[1] now, ARGV[2] ttl; leaves
// done = 1 when it ended the batch just now.
const batchDoneLua = `
local done = 0
local h = redis.call('HMGET', KEYS[1], 'state', 'total', 'succeeded', 'dead', 'canceled', 'finished_at')
if (h[1] == 'running' or h[1] == 'canceled') and not h[6] then
  local fin = tonumber(h[3] or '0') + tonumber(h[4] or '0') + tonumber(h[5] or '0')
  if fin >= tonumber(h[2] or '0') then
    if h[1] == 'running' then redis.call('HSET', KEYS[1], 'state', 'done') end
    redis.call('HSET', KEYS[1], 'finished_at', ARGV[1])
    local ttl = tonumber(ARGV[2])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[1], ttl)
      redis.call('EXPIRE', KEYS[2], ttl)
    end
    done = 1
  end
end
`

// batchSealScript marks a batch fully enqueued. KEYS: batch, final set.
// ARGV: now, ttl.
var batchSealScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') == 'submitting' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'submitted_at', ARGV[1])
  redis.call('HSET', KEYS[1], 'enqueued', redis.call('HGET', KEYS[1], 'total'))
end
` + batchDoneLua + `
return done
`)

// maxLine is the longest line accepted in the file of one SubmitBatch.
func (c *Client) maxLine(opts BatchOptions) int {
	if opts.MaxLineBytes > 0 {
		return opts.MaxLineBytes
	}
	return c.cfg.MaxLineBytes
}

// enqueueChunk is how many lines go to Redis in one pipelined round trip.
const enqueueChunk = 1000

// SubmitBatch validates every line of r, and only when all are valid
// enqueues them all. r is read twice (validation, then enqueueing), so it
// must be seekable: a file, or an upload spooled to a temporary file.
// Invalid lines give a *BatchFileError and enqueue nothing. Submitting the
// same file again with the same ID enqueues nothing twice and completes an
// interrupted submit.
func (c *Client) SubmitBatch(ctx context.Context, r io.ReadSeeker, opts BatchOptions) (*Batch, error) {
	if opts.Queue == "" {
		opts.Queue = QueueBatch
	}
	if !slices.Contains(c.cfg.Queues, opts.Queue) {
		return nil, &InvalidRequestError{Err: fmt.Errorf("queue %q is not one of %v", opts.Queue, c.cfg.Queues)}
	}
	if opts.ID == "" {
		opts.ID = NewID()
	} else if err := validBatchID(opts.ID); err != nil {
		return nil, &InvalidRequestError{Err: err}
	}
	if opts.Source == "" {
		opts.Source = "batch"
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string, int, int) {}
	}

	// Pass 1: validate every line.
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	counter := &countingReader{r: r, every: 1 << 20, fn: func(n int64) { progress("validate", int(n), int(size)) }}
	sc := newBatchScanner(counter, c.cfg.Models, c.maxLine(opts))
	ferr := &BatchFileError{Name: opts.Source}
	seen := make(map[string]int)
	total := 0
	// Each line's model, by its index in models, for the second pass.
	var models []string
	modelIndex := map[string]uint16{}
	var lineModels []uint16
	err = sc.each(func(bl *BatchLine, reason string) error {
		if reason == "" {
			if first, dup := seen[bl.CustomID]; dup {
				reason = fmt.Sprintf("custom_id %q is already used on line %d", truncate(bl.CustomID, 80), first)
			} else {
				seen[bl.CustomID] = bl.Line
			}
		}
		if reason != "" {
			ferr.add(bl.Line, reason)
			return nil
		}
		i, ok := modelIndex[bl.Model]
		if !ok {
			if len(models) > math.MaxUint16 {
				return fmt.Errorf("more than %d models in one file", math.MaxUint16+1)
			}
			i = uint16(len(models))
			modelIndex[bl.Model] = i
			models = append(models, bl.Model)
		}
		lineModels = append(lineModels, i)
		total++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", opts.Source, err)
	}
	progress("validate", int(size), int(size))
	if ferr.Count > 0 {
		return nil, ferr
	}
	if total == 0 {
		return nil, &BatchFileError{Name: opts.Source, Errors: []LineError{{Reason: "the file holds no requests"}}}
	}
	seen = nil
	sum := hex.EncodeToString(sc.sum.Sum(nil))

	// The batch record: new, or the one a previous submit of this file left.
	now := time.Now().UTC()
	vals, err := batchCreateScript.Run(ctx, c.cfg.Redis, []string{c.records.keys.batch(opts.ID)},
		opts.ID, sum, total, opts.Queue, opts.Source, now.Format(timeLayout), now.UnixMilli()).Slice()
	if err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", opts.ID, err)
	}
	outcome, _ := vals[0].(string)
	state, _ := vals[1].(string)
	createdMs, _ := strconv.ParseInt(fmt.Sprint(vals[2]), 10, 64)
	switch {
	case outcome == "conflict":
		return nil, fmt.Errorf("submit batch %s: %w", opts.ID, ErrBatchConflict)
	case outcome == "exists" && state != string(BatchSubmitting):
		return c.GetBatch(ctx, opts.ID) // complete already: enqueue nothing
	}
	if err := c.cfg.Redis.ZAdd(ctx, c.records.keys.prefix+"batches", redis.Z{Score: float64(createdMs), Member: opts.ID}).Err(); err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", opts.ID, err)
	}

	// Pass 2: enqueue, a chunk per round trip, a few round trips in flight.
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	if err := c.enqueueBatch(ctx, r, opts, createdMs, lineModels, models, sum, progress); err != nil {
		return nil, err
	}
	done, err := batchSealScript.Run(ctx, c.cfg.Redis, []string{c.records.keys.batch(opts.ID), c.records.keys.batchFinal(opts.ID)},
		time.Now().UTC().Format(timeLayout), int64(c.cfg.ResultTTL/time.Second)).Int()
	if err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", opts.ID, err)
	}
	if done == 1 {
		c.records.publishBatchDone(ctx, opts.ID)
	}
	return c.GetBatch(ctx, opts.ID)
}

func (c *Client) enqueueBatch(ctx context.Context, r io.Reader, opts BatchOptions, createdMs int64, lineModels []uint16, models []string, sum string, progress func(string, int, int)) error {
	total := len(lineModels)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []*Payload, 4)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		done     int
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for range 4 {
		wg.Go(func() {
			for chunk := range chunks {
				if err := c.enqueueMany(ctx, chunk); err != nil {
					fail(err)
					continue
				}
				mu.Lock()
				done += len(chunk)
				d := done
				mu.Unlock()
				progress("enqueue", d, total)
			}
		})
	}
	sc := newBatchScanner(r, nil, c.maxLine(opts))
	submitted := time.Now().UTC()
	chunk := make([]*Payload, 0, enqueueChunk)
	index := 0
	var readErr error
	if err := sc.each(func(bl *BatchLine, reason string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if reason == "" && index >= total {
			reason = "a line was added"
		}
		if reason != "" {
			return fmt.Errorf("line %d changed while it was submitted: %s", bl.Line, reason)
		}
		chunk = append(chunk, &Payload{
			JobID: batchJobID(opts.ID, createdMs, index), BatchID: opts.ID, CustomID: bl.CustomID,
			Queue: opts.Queue, Model: models[lineModels[index]], Body: bl.Body, SubmittedAt: submitted,
		})
		index++
		if len(chunk) == enqueueChunk {
			chunks <- chunk
			chunk = make([]*Payload, 0, enqueueChunk)
		}
		return nil
	}); err != nil && ctx.Err() == nil {
		readErr = fmt.Errorf("submit batch %s: read %s: %w", opts.ID, opts.Source, err)
	}
	if len(chunk) > 0 && readErr == nil && ctx.Err() == nil {
		chunks <- chunk
	}
	close(chunks)
	wg.Wait()
	switch {
	case readErr != nil:
		return readErr
	case firstErr != nil:
		return fmt.Errorf("submit batch %s: %w", opts.ID, firstErr)
	case index != total || hex.EncodeToString(sc.sum.Sum(nil)) != sum:
		return fmt.Errorf("submit batch %s: %s changed while it was submitted", opts.ID, opts.Source)
	}
	return nil
}

// enqueueMany writes the records and the tasks of a chunk of jobs: records
// first, so that a worker always finds one. Both steps are idempotent.
func (c *Client) enqueueMany(ctx context.Context, ps []*Payload) error {
	if _, err := asynqwire.RunPipelined(ctx, c.cfg.Redis, createScript, len(ps), func(i int) ([]string, []any) {
		return []string{c.records.keys.job(ps[i].JobID)}, payloadFields(ps[i], StateQueued)
	}); err != nil {
		return err
	}
	tasks := make([]asynqwire.Task, len(ps))
	for i, p := range ps {
		tasks[i] = asynqwire.Task{Type: TaskType, Payload: p.appendJSON(nil), ID: p.JobID,
			Queue: AsynqQueue(p.Queue, p.Model), MaxRetry: c.cfg.MaxRetry}
	}
	_, err := asynqwire.EnqueueMany(ctx, c.cfg.Redis, tasks)
	return err
}

// GetBatch returns a batch's record and counts.
func (c *Client) GetBatch(ctx context.Context, id string) (*Batch, error) {
	f, err := c.cfg.Redis.HGetAll(ctx, c.records.keys.batch(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("get batch %s: %w", id, err)
	}
	if len(f) == 0 {
		return nil, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	return batchFromFields(f, time.Now()), nil
}

func batchFromFields(f map[string]string, now time.Time) *Batch {
	b := &Batch{
		ID: f["id"], State: BatchState(f["state"]), Queue: f["queue"], Source: f["source"],
		Total: atoi(f["total"]), Enqueued: atoi(f["enqueued"]), Succeeded: atoi(f["succeeded"]),
		Dead: atoi(f["dead"]), Canceled: atoi(f["canceled"]),
		Usage: Usage{PromptTokens: int64(atoi(f["prompt_tokens"])), CompletionTokens: int64(atoi(f["completion_tokens"])),
			TotalTokens: int64(atoi(f["total_tokens"]))},
	}
	b.CreatedAt, _ = time.Parse(timeLayout, f["created_at"])
	b.SubmittedAt, _ = time.Parse(timeLayout, f["submitted_at"])
	b.FinishedAt, _ = time.Parse(timeLayout, f["finished_at"])
	finished := b.Succeeded + b.Dead + b.Canceled
	b.Pending = max(b.Total-finished, 0)
	start := b.SubmittedAt
	if start.IsZero() {
		start = b.CreatedAt
	}
	end := now
	if !b.FinishedAt.IsZero() {
		end = b.FinishedAt
	}
	if el := end.Sub(start).Seconds(); el > 0 && finished > 0 {
		b.Rate = float64(finished) / el
		if b.Pending > 0 {
			b.ETA = now.Add(time.Duration(float64(b.Pending) / b.Rate * float64(time.Second))).UTC()
		}
	}
	return b
}

// ListBatches returns batches, newest first, page by page (cursor "" starts;
// next "" ends). Batches whose records expired are dropped from the list.
func (c *Client) ListBatches(ctx context.Context, cursor string, limit int) ([]*Batch, string, error) {
	if limit <= 0 {
		limit = 50
	}
	key := c.records.keys.prefix + "batches"
	maxScore, afterID := "+inf", ""
	if cursor != "" {
		ms, id, ok := strings.Cut(cursor, "/")
		if _, err := strconv.ParseInt(ms, 10, 64); !ok || err != nil {
			return nil, "", fmt.Errorf("list batches: cursor %q: %w", cursor, ErrBadCursor)
		}
		maxScore, afterID = ms, id
	}
	zs, err := c.cfg.Redis.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{
		Max: maxScore, Min: "-inf", Count: int64(limit + 64)}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list batches: %w", err)
	}
	// Members of equal score come in reverse lexical order: skip up to and
	// including the cursor's.
	if afterID != "" {
		ms, _ := strconv.ParseFloat(maxScore, 64)
		i := 0
		for i < len(zs) && zs[i].Score == ms && zs[i].Member.(string) >= afterID {
			i++
		}
		zs = zs[i:]
	}
	if len(zs) > limit {
		zs = zs[:limit]
	}
	pipe := c.cfg.Redis.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(zs))
	for i, z := range zs {
		cmds[i] = pipe.HGetAll(ctx, c.records.keys.batch(z.Member.(string)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fmt.Errorf("list batches: %w", err)
	}
	now := time.Now()
	var out []*Batch
	var gone []any
	for i, cmd := range cmds {
		if f := cmd.Val(); len(f) > 0 {
			out = append(out, batchFromFields(f, now))
		} else {
			gone = append(gone, zs[i].Member)
		}
	}
	if len(gone) > 0 {
		_ = c.cfg.Redis.ZRem(ctx, key, gone...).Err()
	}
	next := ""
	if len(zs) == limit {
		last := zs[len(zs)-1]
		next = fmt.Sprintf("%d/%s", int64(last.Score), last.Member)
	}
	return out, next, nil
}

// batchCancelScript marks a batch canceled unless it is finished.
var batchCancelScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'missing' end
if st == 'submitting' or st == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'canceled_at', ARGV[1])
end
return st
`)

// jobCancelScript cancels a job that has not started (queued, or waiting
// for a retry). KEYS: job, history. ARGV: now, ttl.
var jobCancelScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'queued' and st ~= 'retrying' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'canceled', 'finished_at', ARGV[1], 'updated_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'running_since', 'running_worker')
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
`)

// CancelBatch cancels a batch: jobs not started become canceled, running
// ones finish. It returns how many jobs it canceled. Their tasks stay in
// asynq until a worker takes them and, finding them canceled, drops them
// without calling the API.
func (c *Client) CancelBatch(ctx context.Context, id string) (int, error) {
	now := time.Now().UTC().Format(timeLayout)
	prev, err := batchCancelScript.Run(ctx, c.cfg.Redis, []string{c.records.keys.batch(id)}, now).Text()
	if err != nil {
		return 0, fmt.Errorf("cancel batch %s: %w", id, err)
	}
	switch prev {
	case "missing":
		return 0, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	case string(BatchDone):
		return 0, nil
	}
	b, err := c.GetBatch(ctx, id)
	if err != nil {
		return 0, err
	}
	createdMs := b.CreatedAt.UnixMilli()
	ttl := int64(c.cfg.ResultTTL / time.Second)
	canceled := 0
	for start := 0; start < b.Total; start += enqueueChunk {
		n := min(enqueueChunk, b.Total-start)
		ids := make([]string, n)
		for i := range n {
			ids[i] = batchJobID(id, createdMs, start+i)
		}
		cmds, err := asynqwire.RunPipelined(ctx, c.cfg.Redis, jobCancelScript, n, func(i int) ([]string, []any) {
			return []string{c.records.keys.job(ids[i]), c.records.keys.history(ids[i])}, []any{now, ttl}
		})
		if err != nil {
			return canceled, fmt.Errorf("cancel batch %s: %w", id, err)
		}
		for i, cmd := range cmds {
			if v, _ := cmd.Int(); v == 1 {
				if _, err := c.records.Announce(ctx, id, ids[i], StateCanceled, nil); err != nil {
					return canceled, err
				}
				canceled++
			}
		}
	}
	done, err := batchSealScript.Run(ctx, c.cfg.Redis, []string{c.records.keys.batch(id), c.records.keys.batchFinal(id)}, now, ttl).Int()
	if err != nil {
		return canceled, fmt.Errorf("cancel batch %s: %w", id, err)
	}
	if done == 1 {
		c.records.publishBatchDone(ctx, id)
	}
	return canceled, nil
}

// Results streams one ResultLine per request, in input order, to fn: the
// final ones (all of them once the batch is done), or with errorsOnly only
// those that did not succeed.
func (c *Client) Results(ctx context.Context, id string, errorsOnly bool, fn func(*ResultLine) error) error {
	b, err := c.GetBatch(ctx, id)
	if err != nil {
		return err
	}
	createdMs := b.CreatedAt.UnixMilli()
	fields := []string{"state", "custom_id", "result", "status_code", "request_id", "error", "attempts", "error_body"}
	for start := 0; start < b.Total; start += 500 {
		n := min(500, b.Total-start)
		pipe := c.cfg.Redis.Pipeline()
		ids := make([]string, n)
		cmds := make([]*redis.SliceCmd, n)
		for i := range n {
			ids[i] = batchJobID(id, createdMs, start+i)
			cmds[i] = pipe.HMGet(ctx, c.records.keys.job(ids[i]), fields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("batch %s results: %w", id, err)
		}
		for i, cmd := range cmds {
			line := resultLine(ids[i], cmd.Val())
			if line == nil || (errorsOnly && line.Error == nil) {
				continue
			}
			if err := fn(line); err != nil {
				return err
			}
		}
	}
	return nil
}

// resultLine builds the output line of one job from its record fields, or
// nil when the job is not final.
func resultLine(id string, v []any) *ResultLine {
	str := func(i int) string { s, _ := v[i].(string); return s }
	if v[0] == nil {
		return &ResultLine{ID: id, Error: &ResultError{Code: "result_expired",
			Message: "the job's record expired (MIMOQ_RESULT_TTL) or was never written"}}
	}
	l := &ResultLine{ID: id, CustomID: str(1)}
	attempts := atoi(str(6))
	switch State(str(0)) {
	case StateSucceeded:
		l.Response = &ResultResponse{StatusCode: atoi(str(3)), RequestID: str(4), Body: json.RawMessage(str(2))}
	case StateDead:
		var je JobError
		_ = json.Unmarshal([]byte(str(5)), &je)
		l.Error = &ResultError{Code: je.Code, Message: je.Message, Class: je.Class, Attempts: attempts}
		if je.StatusCode != 0 {
			l.Response = &ResultResponse{StatusCode: je.StatusCode, RequestID: je.RequestID}
			if b := str(7); b != "" {
				l.Response.Body = json.RawMessage(b)
			}
		}
	case StateCanceled:
		l.Error = &ResultError{Code: "canceled", Message: "the batch was canceled before this request ran", Attempts: attempts}
	default:
		return nil
	}
	return l
}

// WaitBatch blocks until every job of the batch is final, or ctx ends; it
// listens for the completion notice and polls as a fallback.
func (c *Client) WaitBatch(ctx context.Context, id string) (*Batch, error) {
	sub := c.cfg.Redis.Subscribe(ctx, BatchDoneChannel(c.cfg.Prefix, id))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return nil, fmt.Errorf("wait for batch %s: %w", id, err)
	}
	msgs := sub.Channel()
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	for {
		b, err := c.GetBatch(ctx, id)
		if err != nil {
			return nil, err
		}
		if !b.FinishedAt.IsZero() {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, fmt.Errorf("wait for batch %s: %w", id, ctx.Err())
		case <-msgs:
		case <-poll.C:
		}
	}
}

// countingReader reports how many bytes went through it, every `every` bytes.
type countingReader struct {
	r     io.Reader
	n     int64
	next  int64
	every int64
	fn    func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.next {
		c.fn(c.n)
		c.next = c.n + c.every
	}
	return n, err
}

// truncate cuts s to at most n bytes, at a character boundary, marking the
// cut with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// appendJSON appends the payload's JSON encoding. It is what json.Marshal
// writes, without re-validating the body, which was validated when the line
// was read: on a 50,000-line batch, json.Marshal's check of every body was
// the largest single cost of enqueueing.
func (p *Payload) appendJSON(b []byte) []byte {
	str := func(b []byte, s string) []byte {
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	b = append(b, `{"job_id":`...)
	b = str(b, p.JobID)
	if p.BatchID != "" {
		b = append(b, `,"batch_id":`...)
		b = str(b, p.BatchID)
	}
	if p.CustomID != "" {
		b = append(b, `,"custom_id":`...)
		b = str(b, p.CustomID)
	}
	b = append(b, `,"queue":`...)
	b = str(b, p.Queue)
	b = append(b, `,"model":`...)
	b = str(b, p.Model)
	b = append(b, `,"body":`...)
	b = append(b, p.Body...)
	b = append(b, `,"submitted_at":"`...)
	b = p.SubmittedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}
