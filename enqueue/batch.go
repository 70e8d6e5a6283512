package enqueue

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mimoq/mimoq/internal/fair"
	"github.com/mimoq/mimoq/internal/records"
)

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
	Line int
	// Code is what kind of fault it is (one of the Code… constants), Param
	// the field at fault when there is one (e.g. "custom_id",
	// "body.messages[0].role"), Reason one sentence naming it.
	Code   string
	Param  string
	Reason string
}

// The codes of LineError, as the OpenAI Batch API's errors.data[].code.
const (
	CodeInvalidJSONLine   = "invalid_json_line"
	CodeLineTooLong       = "line_too_long"
	CodeMissingParameter  = "missing_required_parameter"
	CodeInvalidParameter  = "invalid_parameter"
	CodeUnknownParameter  = "unknown_parameter"
	CodeInvalidCustomID   = "invalid_custom_id"
	CodeDuplicateCustomID = "duplicate_custom_id"
	CodeInvalidMethod     = "invalid_method"
	CodeInvalidURL        = "invalid_url"
	CodeInvalidBody       = "invalid_request"
	CodeModelNotFound     = "model_not_found"
	CodeEmptyFile         = "empty_file"
)

// BatchFileError reports every invalid line of a batch file (the first
// BatchOptions.MaxLineErrors of them kept, Count counting all). Nothing was
// enqueued.
type BatchFileError struct {
	Name   string      // file name, for FILE:LINE messages
	Errors []LineError // the first MaxLineErrors
	Count  int         // all invalid lines
}

// MaxLineErrors is how many invalid lines a BatchFileError keeps by default.
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
	// MaxLineErrors is how many invalid lines a *BatchFileError lists (all
	// are counted). Default MaxLineErrors.
	MaxLineErrors int
	// ExpiresAt, when set, ends the batch's completion window: jobs not
	// started by then expire, and the batch ends expired. A resubmit keeps
	// the window of the first submit.
	ExpiresAt time.Time
	// Webhook, when set, is told (POST, signed) when the batch ends:
	// batch.completed, batch.failed, batch.cancelled or batch.expired,
	// with the batch record. It is checked as Submit's WithWebhook is.
	Webhook string
	// MaxCostUSD, when positive, is the most the batch may spend (at the
	// prices of the workers' table, MIMOQ_PRICES): once its answered jobs
	// cost that much, its jobs not started are canceled, and the batch
	// says cancel_reason "budget_exhausted". A resubmit sets it again.
	MaxCostUSD float64
	// Weight is the batch's share of each model's rate against the other
	// batches running on it (1 to MaxWeight; 0 means 1): active batches
	// of a model share it round-robin, a batch of weight 2 getting twice
	// the calls of one of weight 1. A resubmit keeps the first submit's.
	Weight int
	// Tenant, when set, makes the share the tenant's: all the running
	// batches of one tenant on a model share one share (of the largest
	// of their weights), however many they are. 1 to 64 letters, digits,
	// '-', '_' or '.'. A resubmit keeps the first submit's.
	Tenant string
}

// MaxWeight is the largest weight a batch may have.
const MaxWeight = 1000

// ParseWeight parses a batch weight as --weight and the HTTP API's weight
// give it.
func ParseWeight(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxWeight {
		return 0, fmt.Errorf("weight %q must be a whole number from 1 to %d", s, MaxWeight)
	}
	return n, nil
}

// CheckTenant reports whether tenant is a valid tenant name.
func CheckTenant(tenant string) error { return checkName("tenant", tenant, 64) }

// checkName limits a user-given name (what it names, for the error) to 1 to
// maxLen letters, digits, '-', '_' and '.': what is safe in keys and URLs.
func checkName(what, name string, maxLen int) error {
	if name == "" || len(name) > maxLen {
		return fmt.Errorf("%s %q must be 1 to %d characters", what, name, maxLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%s %q may hold only letters, digits, '-', '_' and '.'", what, name)
		}
	}
	return nil
}

// ErrBatchConflict is returned when a batch ID is reused for different
// content.
var ErrBatchConflict = records.ErrBatchConflict

// ErrBadCursor is returned for a listing cursor this package did not write.
var ErrBadCursor = records.ErrBadCursor

// validBatchID limits user-given batch IDs to what is safe in keys and URLs.
func validBatchID(id string) error { return checkName("batch ID", id, 128) }

// maxLine is the longest line accepted in the file of one SubmitBatch.
func (c *Client) maxLine(opts BatchOptions) int {
	if opts.MaxLineBytes > 0 {
		return opts.MaxLineBytes
	}
	return c.cfg.MaxLineBytes
}

// Chunks of lines go to Redis one script each: at most enqueueChunk lines,
// and at most chunkBytes of request bodies (lines may be 16 MiB each).
const (
	enqueueChunk = 1000
	chunkBytes   = 8 << 20
)

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
	if err := checkQueue(opts.Queue); err != nil {
		return nil, err
	}
	if opts.ID == "" {
		opts.ID = NewID()
	} else if err := validBatchID(opts.ID); err != nil {
		return nil, &InvalidRequestError{Err: err}
	}
	if opts.Webhook != "" {
		if err := c.CheckWebhook(ctx, opts.Webhook); err != nil {
			return nil, err
		}
	}
	if opts.Source == "" {
		opts.Source = "batch"
	}
	if opts.Weight < 0 || opts.Weight > MaxWeight {
		return nil, &InvalidRequestError{Err: fmt.Errorf("weight %d must be from 1 to %d", opts.Weight, MaxWeight)}
	}
	if opts.Tenant != "" {
		if err := CheckTenant(opts.Tenant); err != nil {
			return nil, &InvalidRequestError{Err: err}
		}
	}
	if !(opts.MaxCostUSD >= 0) || opts.MaxCostUSD > 1e6 {
		return nil, &InvalidRequestError{Err: fmt.Errorf("max cost %v USD must be between 0 and 1,000,000", opts.MaxCostUSD)}
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
	sc := newBatchScanner(counter, c.models(ctx), c.maxLine(opts))
	ferr := &BatchFileError{Name: opts.Source}
	seen := make(map[string]int)
	total := 0
	// Each line's model, by its index in models, for the second pass.
	var models []string
	modelIndex := map[string]uint16{}
	var lineModels []uint16
	keep := opts.MaxLineErrors
	if keep <= 0 {
		keep = MaxLineErrors
	}
	err = sc.each(func(bl *BatchLine, f lineFault) error {
		if f.Reason == "" {
			if first, dup := seen[bl.CustomID]; dup {
				f = lineFault{Code: CodeDuplicateCustomID, Param: "custom_id",
					Reason: fmt.Sprintf("custom_id %q is already used on line %d", truncate(bl.CustomID, 80), first)}
			} else {
				seen[bl.CustomID] = bl.Line
			}
		}
		if f.Reason != "" {
			ferr.add(bl.Line, f, keep)
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
		return nil, &BatchFileError{Name: opts.Source, Errors: []LineError{{Code: CodeEmptyFile, Reason: "the file holds no requests"}}}
	}
	seen = nil
	sum := hex.EncodeToString(sc.sum.Sum(nil))

	// The batch record: new, or the one a previous submit of this file left.
	cb, err := c.records.CreateBatch(ctx, records.BatchSpec{ID: opts.ID, Queue: opts.Queue, Source: opts.Source,
		SHA256: sum, Total: total, ExpiresAt: opts.ExpiresAt, Webhook: opts.Webhook, Weight: opts.Weight,
		Tenant: opts.Tenant}, time.Now())
	if err != nil {
		return nil, err
	}
	if cb.State != BatchSubmitting {
		return c.GetBatch(ctx, opts.ID) // complete (or canceled) already: enqueue nothing
	}
	// Before any job is enqueued: the first answer may already count.
	if opts.MaxCostUSD > 0 {
		if err := c.records.SetMaxCost(ctx, opts.ID, int64(math.Round(opts.MaxCostUSD*1e12))); err != nil {
			return nil, err
		}
	}

	// Pass 2: enqueue, a chunk per round trip, a few round trips in flight.
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	if err := c.enqueueBatch(ctx, r, opts, cb.CreatedMs, lineModels, models, sum, progress); err != nil {
		return nil, err
	}
	if _, err := c.records.Seal(ctx, opts.ID, time.Now()); err != nil {
		return nil, err
	}
	return c.GetBatch(ctx, opts.ID)
}

func (c *Client) enqueueBatch(ctx context.Context, r io.Reader, opts BatchOptions, createdMs int64, lineModels []uint16, models []string, sum string, progress func(string, int, int)) error {
	total := len(lineModels)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []records.Line, 4)
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
	submitted := time.Now()
	for range 4 {
		wg.Go(func() {
			for chunk := range chunks {
				if err := c.records.EnqueueLines(ctx, opts.ID, opts.Queue, createdMs, chunk, submitted); err != nil {
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
	chunk := make([]records.Line, 0, enqueueChunk)
	bytes, index := 0, 0
	var readErr error
	if err := sc.each(func(bl *BatchLine, f lineFault) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		reason := f.Reason
		if reason == "" && index >= total {
			reason = "a line was added"
		}
		if reason != "" {
			return fmt.Errorf("line %d changed while it was submitted: %s", bl.Line, reason)
		}
		chunk = append(chunk, records.Line{Index: index, CustomID: bl.CustomID, Model: models[lineModels[index]], Body: bl.Body})
		index++
		bytes += len(bl.Body)
		if len(chunk) == enqueueChunk || bytes >= chunkBytes {
			chunks <- chunk
			chunk, bytes = make([]records.Line, 0, enqueueChunk), 0
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

// GetBatch returns a batch's record and counts.
func (c *Client) GetBatch(ctx context.Context, id string) (*Batch, error) {
	b, err := c.records.GetBatch(ctx, id)
	if err != nil {
		return b, err
	}
	if err := c.fillShare(ctx, b); err != nil {
		return b, err
	}
	return b, c.records.FillCost(ctx, b)
}

// fillShare sets, while jobs of b wait for their turn, its share of its
// lanes and its ETA at the pace they gave it over the last minute: a batch
// sharing a lane finishes at its share of the rate, not at the rate it had
// alone.
func (c *Client) fillShare(ctx context.Context, b *Batch) error {
	if b.Over() || b.Backlog == 0 {
		return nil
	}
	models, err := c.records.BacklogModels(ctx, b.ID)
	if err != nil {
		return err
	}
	lanes := make([]fair.Lane, len(models))
	for i, m := range models {
		lanes[i] = fair.Lane{Queue: b.Queue, Model: m}
	}
	shares, err := fair.ReadShares(ctx, c.cfg.Redis, c.records, lanes)
	if err != nil {
		return err
	}
	released, err := fair.BatchReleased(ctx, c.cfg.Redis, lanes, b.ID)
	if err != nil {
		return err
	}
	var total int64
	for _, ls := range shares {
		total += ls.Released
	}
	if total > 0 {
		b.Share = float64(released) / float64(total)
	}
	if released > 0 {
		window := min(time.Minute, time.Since(b.CreatedAt))
		perSecond := float64(released) / max(window.Seconds(), 1)
		b.ETA = time.Now().Add(time.Duration(float64(b.Pending) / perSecond * float64(time.Second))).UTC()
	}
	return nil
}

// ListBatches returns batches, newest first, page by page (cursor "" starts;
// next "" ends).
func (c *Client) ListBatches(ctx context.Context, cursor string, limit int) ([]*Batch, string, error) {
	bs, next, err := c.records.ListBatches(ctx, cursor, limit)
	if err != nil {
		return bs, next, err
	}
	for _, b := range bs {
		if err := c.records.FillCost(ctx, b); err != nil {
			return bs, next, err
		}
	}
	return bs, next, nil
}

// CancelBatch cancels a batch: jobs not started become canceled (lines an
// interrupted submit never enqueued too), running ones finish; the batch is
// over once they have. It returns how many jobs it canceled. Canceling
// again completes an interrupted cancel.
func (c *Client) CancelBatch(ctx context.Context, id string) (int, error) {
	return c.records.CancelBatch(ctx, id, time.Now())
}

// Results streams one ResultLine per request, in input order, to fn: the
// final ones (all of them once the batch is over), or with errorsOnly only
// those that did not succeed.
func (c *Client) Results(ctx context.Context, id string, errorsOnly bool, fn func(*ResultLine) error) error {
	return c.records.Results(ctx, id, errorsOnly, fn)
}

// WaitBatch blocks until every job of the batch is final, or ctx ends; it
// listens for the completion notice and polls as a fallback.
func (c *Client) WaitBatch(ctx context.Context, id string) (*Batch, error) {
	b, err := c.records.WaitBatch(ctx, id)
	if err != nil || b == nil {
		return b, err
	}
	return b, c.records.FillCost(ctx, b)
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
