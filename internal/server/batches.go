package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/enqueue"
)

// maxListLimit caps ?limit= of the list routes.
const maxListLimit = 1000

// checkQuery refuses query parameters other than allowed: a misspelt
// filter must not silently widen a selection, nor a misspelt ?id= make a
// resubmission enqueue twice.
func checkQuery(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			msg := fmt.Sprintf("unknown query parameter %q", k)
			if len(allowed) > 0 {
				msg += "; this route takes " + strings.Join(allowed, ", ")
			}
			badRequest(w, r, k, msg)
			return nil, false
		}
		if len(q[k]) > 1 {
			badRequest(w, r, k, fmt.Sprintf("query parameter %q is given %d times", k, len(q[k])))
			return nil, false
		}
	}
	return q, true
}

// validBatchID reports whether id can name a batch: 1 to 128 letters,
// digits and . _ - (IDs end up in Redis key names and URLs), as
// enqueue.SubmitBatch requires.
func validBatchID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// submitBatch is POST /v1/batches[?id=ID][&queue=Q][&weight=N][&tenant=T]: a JSONL body in the
// OpenAI Batch input format. The body is spooled to a temporary file
// (SubmitBatch reads it twice: validation, then enqueueing); every line is
// validated before anything is enqueued.
func (s *Server) submitBatch(w http.ResponseWriter, r *http.Request) {
	q, ok := checkQuery(w, r, "id", "queue", "completion_window", "webhook", "max_cost", "weight", "tenant")
	if !ok {
		return
	}
	weight := 0
	if q.Has("weight") {
		n, err := enqueue.ParseWeight(q.Get("weight"))
		if err != nil {
			badRequest(w, r, "weight", err.Error())
			return
		}
		weight = n
	}
	if q.Has("tenant") {
		if err := enqueue.CheckTenant(q.Get("tenant")); err != nil {
			badRequest(w, r, "tenant", err.Error())
			return
		}
	}
	var maxCost float64
	if q.Has("max_cost") {
		v, err := strconv.ParseFloat(q.Get("max_cost"), 64)
		if err != nil || !(v >= 0) || v > 1e6 {
			badRequest(w, r, "max_cost", "max_cost must be an amount of USD from 0 (none) to 1000000")
			return
		}
		maxCost = v
	}
	id := q.Get("id")
	if q.Has("id") && !validBatchID(id) {
		badRequest(w, r, "id", "id must be 1 to 128 letters, digits, '.', '_' or '-'")
		return
	}
	var expiresAt time.Time
	if q.Has("completion_window") {
		d, err := enqueue.ParseCompletionWindow(q.Get("completion_window"))
		if err != nil {
			badRequest(w, r, "completion_window", "Invalid completion_window: "+err.Error()+".")
			return
		}
		expiresAt = time.Now().Add(d)
	}
	if r.ContentLength > s.cfg.MaxBatchBytes {
		tooLarge(w, r, "The batch file ("+itoa(r.ContentLength)+" bytes)", s.cfg.MaxBatchBytes)
		return
	}
	f, err := os.CreateTemp(s.cfg.SpoolDir, "mimoq-upload-*.jsonl")
	if err != nil {
		s.internalError(w, r, "spool batch upload", err)
		return
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	// The write deadline ran from the end of the headers, before a possibly
	// long upload (and enqueue): each answer gets a fresh one.
	rc := http.NewResponseController(w)
	n, err := io.Copy(f, http.MaxBytesReader(w, r.Body, s.cfg.MaxBatchBytes))
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			tooLarge(w, r, "The batch file", s.cfg.MaxBatchBytes)
		case isWriteErr(err):
			s.internalError(w, r, "spool batch upload", err)
		default:
			badRequest(w, r, "", "Could not read the batch file: "+err.Error()+".")
		}
		return
	}
	if n == 0 {
		badRequest(w, r, "", "The batch file is empty: send JSONL, one request per line.")
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		s.internalError(w, r, "spool batch upload", err)
		return
	}
	// The submit finishes even if the client leaves, rather than stop
	// half-way.
	b, err := s.cfg.Client.SubmitBatch(context.WithoutCancel(r.Context()), f,
		enqueue.BatchOptions{ID: id, Queue: q.Get("queue"), ExpiresAt: expiresAt, Webhook: q.Get("webhook"), MaxCostUSD: maxCost,
			Weight: weight, Tenant: q.Get("tenant")})
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if err != nil {
		var bfe *enqueue.BatchFileError
		var inv *enqueue.InvalidRequestError
		switch {
		case errors.As(err, &bfe):
			badRequest(w, r, "", batchFileMessage(bfe))
		case errors.Is(err, enqueue.ErrBatchConflict):
			writeError(w, r, http.StatusConflict, "conflict",
				"Batch "+quoteID(id)+" was submitted already with a different file; give a new id to submit this one.", "id")
		case errors.As(err, &inv):
			param := ""
			switch {
			case errors.Is(inv, enqueue.ErrInvalidWebhook):
				param = "webhook"
			case q.Get("queue") != "":
				param = "queue"
			}
			badRequest(w, r, param, inv.Err.Error())
		default:
			s.internalError(w, r, "submit batch", err)
		}
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("batch_id", b.ID).Int("total", b.Total).Int64("bytes", n).Msg("batch submitted")
	w.Header().Set("Location", "/v1/batches/"+b.ID)
	writeJSON(w, http.StatusAccepted, b)
}

// isWriteErr reports whether err came from writing the spool file (disk
// full, …) rather than reading the upload.
func isWriteErr(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Op == "write"
}

// batchFileMessage lists the first invalid lines as "LINE: reason" and how
// many there are in all.
func batchFileMessage(e *enqueue.BatchFileError) string {
	var b strings.Builder
	count := max(e.Count, len(e.Errors))
	switch {
	case len(e.Errors) == 1 && e.Errors[0].Line == 0:
		b.WriteString("The batch file is invalid; nothing was enqueued: ")
	case count == 1:
		b.WriteString("The batch file has 1 invalid line; nothing was enqueued: ")
	default:
		fmt.Fprintf(&b, "The batch file has %d invalid lines; nothing was enqueued", count)
		if count > len(e.Errors) {
			fmt.Fprintf(&b, "; the first %d", len(e.Errors))
		}
		b.WriteString(": ")
	}
	for i, le := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		if le.Line > 0 {
			fmt.Fprintf(&b, "%d: ", le.Line)
		}
		b.WriteString(le.Reason)
	}
	b.WriteString(".")
	return b.String()
}

// getBatch is GET /v1/batches/{id}.
func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, err := s.cfg.Client.GetBatch(r.Context(), id)
	switch {
	case errors.Is(err, enqueue.ErrNotFound):
		s.batchNotFound(w, r, id)
	case err != nil:
		s.internalError(w, r, "get batch", err)
	default:
		writeJSON(w, http.StatusOK, b)
	}
}

func (s *Server) batchNotFound(w http.ResponseWriter, r *http.Request, id string) {
	notFound(w, r, "No batch "+quoteID(id)+" (never submitted, or its record expired).")
}

// listPage is the answer of the list routes.
type listPage[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"` // null on the last page
}

func newPage[T any](data []T, next string) listPage[T] {
	p := listPage[T]{Data: data}
	if p.Data == nil {
		p.Data = []T{}
	}
	if next != "" {
		p.NextCursor = &next
	}
	return p
}

// parseLimit reads ?limit= (1 to maxListLimit; def when absent).
func parseLimit(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxListLimit {
		return 0, fmt.Errorf("limit %q must be a whole number from 1 to %d", v, maxListLimit)
	}
	return n, nil
}

// listBatches is GET /v1/batches[?limit=N][&cursor=C], newest first.
func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) {
	q, ok := checkQuery(w, r, "limit", "cursor")
	if !ok {
		return
	}
	limit, err := parseLimit(q.Get("limit"), 100)
	if err != nil {
		badRequest(w, r, "limit", err.Error())
		return
	}
	batches, next, err := s.cfg.Client.ListBatches(r.Context(), q.Get("cursor"), limit)
	if errors.Is(err, enqueue.ErrBadCursor) {
		badRequest(w, r, "cursor", "cursor is not one this server returned")
		return
	}
	if err != nil {
		s.internalError(w, r, "list batches", err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(batches, next))
}

// cancelBatch is POST /v1/batches/{id}/cancel: jobs not started are
// canceled, running ones finish. The answer is the batch record after it.
func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, err := s.cfg.Client.CancelBatch(r.Context(), id)
	if err == nil {
		var b *enqueue.Batch
		if b, err = s.cfg.Client.GetBatch(r.Context(), id); err == nil {
			zerolog.Ctx(r.Context()).Info().Str("batch_id", id).Int("canceled", n).Msg("batch canceled")
			writeJSON(w, http.StatusOK, b)
			return
		}
	}
	if errors.Is(err, enqueue.ErrNotFound) {
		s.batchNotFound(w, r, id)
		return
	}
	s.internalError(w, r, "cancel batch", err)
}

// parseBool reads a boolean query value; "" is false.
func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, fmt.Errorf("%s %q must be true or false", name, v)
}

// batchResults is GET /v1/batches/{id}/results[?errors=true]: one JSON
// line per finished input line, in input order (the OpenAI Batch output
// format), streamed. Lines not final yet are left out; the header
// X-Mimoq-Batch-State says whether more will come.
func (s *Server) batchResults(w http.ResponseWriter, r *http.Request) {
	q, ok := checkQuery(w, r, "errors")
	if !ok {
		return
	}
	errorsOnly, err := parseBool("errors", q.Get("errors"))
	if err != nil {
		badRequest(w, r, "errors", err.Error())
		return
	}
	id := r.PathValue("id")
	b, err := s.cfg.Client.GetBatch(r.Context(), id)
	switch {
	case errors.Is(err, enqueue.ErrNotFound):
		s.batchNotFound(w, r, id)
		return
	case err != nil:
		s.internalError(w, r, "batch results", err)
		return
	}

	rs := &resultStream{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout, state: b.State}
	err = s.cfg.Client.Results(r.Context(), id, errorsOnly, rs.write)
	if err == nil {
		err = rs.finish()
	}
	if err == nil {
		return
	}
	if !rs.started {
		if errors.Is(err, enqueue.ErrNotFound) {
			s.batchNotFound(w, r, id)
			return
		}
		s.internalError(w, r, "batch results", err)
		return
	}
	if !isClientGone(r, err) {
		zerolog.Ctx(r.Context()).Error().Err(err).Str("batch_id", id).Int("lines", rs.lines).Msg("batch results stream failed")
	}
	// The status is sent: break the connection so that the client sees a
	// truncated file, not a complete-looking one.
	panic(http.ErrAbortHandler)
}

// resultStream writes result lines through a buffer, sending the headers
// with the first line (so that an early failure can still be a proper
// error) and pushing the write deadline on as long as the client reads.
type resultStream struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	bw       *bufio.Writer
	enc      *json.Encoder
	timeout  time.Duration
	state    enqueue.BatchState
	started  bool
	lines    int
	extended time.Time
}

func (rs *resultStream) start() {
	h := rs.w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Mimoq-Batch-State", string(rs.state))
	rs.extend()
	rs.w.WriteHeader(http.StatusOK)
	rs.bw = bufio.NewWriterSize(rs.w, 64<<10)
	rs.enc = json.NewEncoder(rs.bw)
	rs.enc.SetEscapeHTML(false)
	rs.started = true
}

// extend moves the write deadline to timeout from now, at most once a
// second: a stalled client is dropped after timeout without progress, a
// reading one is never cut off.
func (rs *resultStream) extend() {
	if now := time.Now(); now.Sub(rs.extended) >= time.Second {
		_ = rs.rc.SetWriteDeadline(now.Add(rs.timeout))
		rs.extended = now
	}
}

func (rs *resultStream) write(l *enqueue.ResultLine) error {
	if !rs.started {
		rs.start()
	}
	rs.extend()
	rs.lines++
	return rs.enc.Encode(l)
}

func (rs *resultStream) finish() error {
	if !rs.started {
		rs.start()
	}
	return rs.bw.Flush()
}
