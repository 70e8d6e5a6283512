package openaiapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/files"
	"github.com/mimoq/mimoq/internal/job"
)

// The endpoint batches run: the only one mimoq fronts.
const chatEndpoint = "/v1/chat/completions"

// OpenAI's limits on a batch's metadata.
const (
	maxMetadataPairs = 16
	maxMetadataKey   = 64
	maxMetadataValue = 512
)

// createBatchRequest is the body of POST /batches.
type createBatchRequest struct {
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata"`
	// OutputExpiresAfter is accepted for the SDKs' sake: output files live
	// as long as the batch's results (MIMOQ_RESULT_TTL).
	OutputExpiresAfter json.RawMessage `json:"output_expires_after"`
	// Webhook is mimoq's own: a URL told when the batch ends (the SDKs
	// send it as an extra body field, e.g. extra_body in Python).
	Webhook string `json:"webhook"`
	// Weight and Tenant are mimoq's own too (extra body fields): the
	// batch's share of its lanes, as `batch submit --weight --tenant`.
	Weight *int   `json:"weight"`
	Tenant string `json:"tenant"`
}

// parseCreateBatch reads and checks the body of POST /batches; on failure it
// returns the error's code, message and param.
func parseCreateBatch(raw []byte) (req createBatchRequest, window time.Duration, code, msg, param string) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name = strings.Trim(name, `"`)
			return req, 0, "unknown_parameter", fmt.Sprintf("Unrecognized request argument supplied: %s.", name), name
		}
		return req, 0, "invalid_request", "The request body must be a JSON object: " + strings.TrimPrefix(err.Error(), "json: ") + ".", ""
	}
	switch {
	case req.InputFileID == "":
		return req, 0, "missing_required_parameter", "input_file_id is required: the ID of an uploaded file (purpose batch).", "input_file_id"
	case req.Endpoint == "":
		return req, 0, "missing_required_parameter", "endpoint is required: " + chatEndpoint + ".", "endpoint"
	case req.Endpoint != chatEndpoint:
		return req, 0, "unsupported_endpoint", fmt.Sprintf("endpoint %q is not supported: mimoq runs %s.", truncate(req.Endpoint, 80), chatEndpoint), "endpoint"
	}
	window = DefaultCompletionWindow
	if req.CompletionWindow != "" {
		d, err := enqueue.ParseCompletionWindow(req.CompletionWindow)
		if err != nil {
			return req, 0, "invalid_completion_window", "completion_window: " + err.Error() + ".", "completion_window"
		}
		window = d
	}
	if len(req.Metadata) > maxMetadataPairs {
		return req, 0, "invalid_metadata", fmt.Sprintf("metadata has %d pairs; at most %d are allowed.", len(req.Metadata), maxMetadataPairs), "metadata"
	}
	for k, v := range req.Metadata {
		if utf8.RuneCountInString(k) > maxMetadataKey || utf8.RuneCountInString(v) > maxMetadataValue {
			return req, 0, "invalid_metadata", fmt.Sprintf("metadata keys may be %d characters long and values %d.", maxMetadataKey, maxMetadataValue), "metadata"
		}
	}
	if req.Weight != nil && (*req.Weight < 1 || *req.Weight > enqueue.MaxWeight) {
		return req, 0, "invalid_request", fmt.Sprintf("weight %d must be from 1 to %d.", *req.Weight, enqueue.MaxWeight), "weight"
	}
	if req.Tenant != "" {
		if err := enqueue.CheckTenant(req.Tenant); err != nil {
			return req, 0, "invalid_request", err.Error() + ".", "tenant"
		}
	}
	return req, window, "", "", ""
}

// createBatch is POST /batches: the input file is validated, every line, and
// only when all are valid enqueued, before the answer. An invalid file gives
// a batch in status failed whose errors name each bad line; nothing is
// enqueued.
func (a *API) createBatch(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		badRequest(w, "invalid_request", "The request body cannot be read: "+err.Error()+".", "")
		return
	}
	req, window, code, msg, param := parseCreateBatch(raw)
	if code != "" {
		badRequest(w, code, msg, param)
		return
	}
	f, err := a.cfg.Files.Get(r.Context(), req.InputFileID)
	if errors.Is(err, files.ErrNotFound) {
		writeError(w, http.StatusNotFound, "file_not_found", "No such File object: "+quote(req.InputFileID)+".", "input_file_id")
		return
	}
	if err != nil {
		a.internalError(w, r, "create batch", err)
		return
	}
	if f.Purpose != PurposeBatch {
		badRequest(w, "invalid_purpose", fmt.Sprintf("File %s has purpose %q; a batch needs one with purpose batch.", f.ID, f.Purpose), "input_file_id")
		return
	}
	if req.Webhook != "" {
		if err := a.cfg.Client.CheckWebhook(r.Context(), req.Webhook); err != nil {
			var inv *enqueue.InvalidRequestError
			if errors.As(err, &inv) {
				badRequest(w, "invalid_webhook", "Invalid "+inv.Err.Error()+".", "webhook")
				return
			}
			a.internalError(w, r, "create batch", err)
			return
		}
	}

	now := time.Now().UTC()
	rec := &batchRecord{ID: "batch_" + enqueue.NewID(), InputFileID: f.ID, Filename: f.Filename, Endpoint: req.Endpoint,
		CompletionWindow: req.CompletionWindow, Metadata: req.Metadata, CreatedAt: now, ExpiresAt: now.Add(window),
		Webhook: req.Webhook, Tenant: req.Tenant}
	if req.Weight != nil {
		rec.Weight = *req.Weight
	}
	if rec.CompletionWindow == "" {
		rec.CompletionWindow = "24h"
	}
	// The submit finishes even if the client leaves, rather than stop
	// half-way (a replica that dies mid-way leaves it to be resumed).
	ctx := context.WithoutCancel(r.Context())
	if err := a.batches.create(ctx, rec); err != nil {
		a.internalError(w, r, "create batch", err)
		return
	}
	release, _, err := a.batches.hold(ctx, rec.ID)
	if err != nil {
		a.internalError(w, r, "create batch", err)
		return
	}
	b, err := a.submit(ctx, rec)
	release()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout))
	if err != nil {
		a.internalError(w, r, "create batch", err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("batch_id", rec.ID).Str("input_file_id", f.ID).
		Bool("failed", !rec.FailedAt.IsZero()).Msg("openai batch created")
	writeJSON(w, http.StatusOK, batchObjectOf(rec, b))
}

// submit validates and enqueues the batch's file. An invalid file fails the
// batch (rec is updated) and gives no mimoq batch; submitting again, after
// an interruption, completes the batch and enqueues nothing twice.
func (a *API) submit(ctx context.Context, rec *batchRecord) (*job.Batch, error) {
	rd, err := a.cfg.Files.Open(ctx, rec.InputFileID)
	if errors.Is(err, files.ErrNotFound) {
		return nil, a.fail(ctx, rec, []batchError{{Code: "file_not_found",
			Message: "The input file " + rec.InputFileID + " was deleted before the batch was validated."}}, 1)
	}
	if err != nil {
		return nil, err
	}
	b, err := a.cfg.Client.SubmitBatch(ctx, rd, enqueue.BatchOptions{ID: rec.ID, Source: rec.Filename,
		MaxLineErrors: maxLineErrors, ExpiresAt: rec.ExpiresAt, Webhook: rec.Webhook, Weight: rec.Weight, Tenant: rec.Tenant})
	var bfe *enqueue.BatchFileError
	if errors.As(err, &bfe) {
		errs := make([]batchError, 0, len(bfe.Errors))
		for _, le := range bfe.Errors {
			e := batchError{Code: le.Code, Message: le.Reason, Param: nullable(le.Param)}
			if le.Line > 0 {
				e.Line = &le.Line
			}
			errs = append(errs, e)
		}
		return nil, a.fail(ctx, rec, errs, max(bfe.Count, len(errs)))
	}
	return b, err
}

func (a *API) fail(ctx context.Context, rec *batchRecord, errs []batchError, count int) error {
	rec.FailedAt, rec.Errors, rec.ErrorCount = time.Now().UTC(), errs, count
	return a.batches.fail(ctx, rec.ID, errs, count, rec.FailedAt)
}

// load reads batch id's OpenAI record and mimoq record (nil while the file
// is validated, and for a failed batch). A batch left validating by a
// replica that died mid-submit is resumed here, in the background.
func (a *API) load(ctx context.Context, id string) (*batchRecord, *job.Batch, error) {
	rec, err := a.batches.get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return a.loadMimoq(ctx, rec)
}

func (a *API) loadMimoq(ctx context.Context, rec *batchRecord) (*batchRecord, *job.Batch, error) {
	if !rec.FailedAt.IsZero() {
		return rec, nil, nil
	}
	b, err := a.cfg.Client.GetBatch(ctx, rec.ID)
	switch {
	case errors.Is(err, enqueue.ErrNotFound):
		b = nil
	case err != nil:
		return nil, nil, err
	}
	if b == nil || b.State == job.BatchSubmitting {
		a.resume(rec)
	}
	return rec, b, nil
}

// resume completes the submit of a batch no replica is submitting.
func (a *API) resume(rec *batchRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	release, ok, err := a.batches.hold(ctx, rec.ID)
	if err != nil || !ok {
		cancel()
		return
	}
	go func() {
		defer cancel()
		defer release()
		_, _ = a.submit(ctx, rec)
	}()
}

// getBatch is GET /batches/{id}.
func (a *API) getBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, b, err := a.load(r.Context(), id)
	if err != nil {
		a.batchError(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, batchObjectOf(rec, b))
}

func (a *API) batchError(w http.ResponseWriter, r *http.Request, id string, err error) {
	if errors.Is(err, errNoSuchBatch) || errors.Is(err, enqueue.ErrNotFound) {
		writeError(w, http.StatusNotFound, "batch_not_found", "No such Batch object: "+quote(id)+".", "id")
		return
	}
	a.internalError(w, r, "batch", err)
}

// listBatches is GET /batches[?after=][&limit=], newest first: the batches
// created through this API.
func (a *API) listBatches(w http.ResponseWriter, r *http.Request) {
	limit, ok := pageLimit(w, r, 20, 100)
	if !ok {
		return
	}
	recs, more, err := a.batches.list(r.Context(), r.URL.Query().Get("after"), limit)
	if err != nil {
		a.internalError(w, r, "list batches", err)
		return
	}
	out := make([]*batchObject, 0, len(recs))
	for _, rec := range recs {
		rec, b, err := a.loadMimoq(r.Context(), rec)
		if err != nil {
			a.internalError(w, r, "list batches", err)
			return
		}
		out = append(out, batchObjectOf(rec, b))
	}
	writeJSON(w, http.StatusOK, newList(out, func(o *batchObject) string { return o.ID }, more))
}

// cancelBatch is POST /batches/{id}/cancel: jobs not started are canceled,
// running ones finish; the batch is cancelling until they have.
func (a *API) cancelBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, b, err := a.load(r.Context(), id)
	if err != nil {
		a.batchError(w, r, id, err)
		return
	}
	status := batchObjectOf(rec, b).Status
	switch status {
	case "failed", "completed", "expired":
		writeError(w, http.StatusConflict, "batch_not_cancellable", fmt.Sprintf("Batch %s is %s; only a batch still running can be cancelled.", id, status), "id")
		return
	case "validating":
		if b == nil {
			// The mimoq batch does not exist yet (its record is the first
			// thing the submit writes): the SDKs retry a 409.
			writeError(w, http.StatusConflict, "batch_validating", "Batch "+id+" is being validated; cancel it again in a moment.", "id")
			return
		}
	}
	if _, err := a.cfg.Client.CancelBatch(r.Context(), id); err != nil {
		a.batchError(w, r, id, err)
		return
	}
	if rec, b, err = a.load(r.Context(), id); err != nil {
		a.batchError(w, r, id, err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Str("batch_id", id).Msg("openai batch cancelled")
	writeJSON(w, http.StatusOK, batchObjectOf(rec, b))
}

// batchObject is OpenAI's Batch object.
type batchObject struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Endpoint         string            `json:"endpoint"`
	Errors           *batchErrors      `json:"errors"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           string            `json:"status"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at"`
	CompletedAt      *int64            `json:"completed_at"`
	FailedAt         *int64            `json:"failed_at"`
	ExpiredAt        *int64            `json:"expired_at"`
	CancellingAt     *int64            `json:"cancelling_at"`
	CancelledAt      *int64            `json:"cancelled_at"`
	RequestCounts    requestCounts     `json:"request_counts"`
	Metadata         map[string]string `json:"metadata"`
	Usage            batchUsage        `json:"usage"`
}

type batchErrors struct {
	Object string       `json:"object"` // "list"
	Data   []batchError `json:"data"`
}

type requestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

type batchUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int64 `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int64 `json:"total_tokens"`
}

func unix(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	s := t.Unix()
	return &s
}

// batchObjectOf is the Batch object of rec and its mimoq batch b (nil while
// validating, and for a failed batch). The status:
//
//	validating   the file is being validated and enqueued
//	failed       the file was invalid; errors names each bad line
//	in_progress  every line enqueued; jobs are running
//	finalizing   the window passed: jobs not started expired, running ones finish
//	completed    every job final
//	expired      the window passed and every job is final
//	cancelling   cancelled: jobs not started are canceled, running ones finish
//	cancelled    cancelled, and every job is final
func batchObjectOf(rec *batchRecord, b *job.Batch) *batchObject {
	o := &batchObject{ID: rec.ID, Object: "batch", Endpoint: rec.Endpoint, InputFileID: rec.InputFileID,
		CompletionWindow: rec.CompletionWindow, CreatedAt: rec.CreatedAt.Unix(), ExpiresAt: unix(rec.ExpiresAt),
		Metadata: rec.Metadata}
	if !rec.FailedAt.IsZero() {
		o.Status = "failed"
		o.FailedAt = unix(rec.FailedAt)
		o.Errors = &batchErrors{Object: "list", Data: rec.Errors}
		if o.Errors.Data == nil {
			o.Errors.Data = []batchError{}
		}
		return o
	}
	if b == nil {
		o.Status = "validating"
		return o
	}
	o.RequestCounts = requestCounts{Total: b.Total, Completed: b.Succeeded, Failed: b.Dead + b.Canceled + b.Expired}
	o.Usage.InputTokens = b.Usage.PromptTokens
	o.Usage.InputTokensDetails.CachedTokens = b.Usage.CachedTokens
	o.Usage.OutputTokens = b.Usage.CompletionTokens
	o.Usage.OutputTokensDetails.ReasoningTokens = b.Usage.ReasoningTokens
	o.Usage.TotalTokens = b.Usage.TotalTokens
	o.InProgressAt = unix(b.SubmittedAt)
	over := b.Over()
	switch b.State {
	case job.BatchSubmitting:
		o.Status = "validating"
	case job.BatchRunning:
		o.Status = "in_progress"
	case job.BatchDone:
		o.Status = "completed"
		o.FinalizingAt, o.CompletedAt = unix(b.FinishedAt), unix(b.FinishedAt)
	case job.BatchCanceled:
		o.Status = "cancelling"
		o.CancellingAt = unix(b.CanceledAt)
		if over {
			o.Status = "cancelled"
			o.CancelledAt = unix(b.FinishedAt)
		}
	case job.BatchExpired:
		o.Status = "finalizing"
		o.FinalizingAt = unix(b.ExpiredAt)
		if over {
			o.Status = "expired"
			o.ExpiredAt = unix(b.FinishedAt)
		}
	}
	if over {
		if b.Succeeded > 0 {
			o.OutputFileID = nullable(resultFileID(b.ID, outputFile))
		}
		if b.Dead+b.Canceled+b.Expired > 0 {
			o.ErrorFileID = nullable(resultFileID(b.ID, errorFile))
		}
	}
	return o
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
