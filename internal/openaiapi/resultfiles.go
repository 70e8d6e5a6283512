package openaiapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/files"
	"github.com/mimoq/mimoq/internal/job"
)

// A batch's output and error files are not stored: they are its results,
// generated when read, under IDs made from the batch ID.
type resultKind string

const (
	outputFile resultKind = "output" // the lines that succeeded
	errorFile  resultKind = "errors" // the lines that did not
)

const resultFilePrefix = "file-"

func resultFileID(batchID string, kind resultKind) string {
	return resultFilePrefix + batchID + "-" + string(kind)
}

// parseResultFileID reads an ID resultFileID made.
func parseResultFileID(id string) (batchID string, kind resultKind, ok bool) {
	rest, ok := strings.CutPrefix(id, resultFilePrefix+"batch_")
	if !ok {
		return "", "", false
	}
	for _, k := range []resultKind{outputFile, errorFile} {
		if b, found := strings.CutSuffix(rest, "-"+string(k)); found && b != "" {
			return "batch_" + b, k, true
		}
	}
	return "", "", false
}

// eachResultLine calls fn with every line of the batch's output or error
// file, in input order.
func (a *API) eachResultLine(ctx context.Context, batchID string, kind resultKind, fn func(*job.ResultLine) error) error {
	return a.cfg.Client.Results(ctx, batchID, kind == errorFile, func(l *job.ResultLine) error {
		if kind == outputFile && l.Error != nil {
			return nil
		}
		return fn(l)
	})
}

// resultFile describes a batch's output or error file; its size is that of
// the lines it holds now.
func (a *API) resultFile(ctx context.Context, batchID string, kind resultKind, id string) (*files.File, error) {
	b, err := a.cfg.Client.GetBatch(ctx, batchID)
	if errors.Is(err, enqueue.ErrNotFound) {
		return nil, errNoSuchBatch
	}
	if err != nil {
		return nil, err
	}
	var n countingWriter
	enc := json.NewEncoder(&n)
	enc.SetEscapeHTML(false)
	if err := a.eachResultLine(ctx, batchID, kind, func(l *job.ResultLine) error { return enc.Encode(l) }); err != nil {
		return nil, err
	}
	created := b.FinishedAt
	if created.IsZero() {
		created = b.CreatedAt
	}
	return &files.File{ID: id, Object: "file", Bytes: int64(n), CreatedAt: created.Unix(),
		ExpiresAt: created.Add(a.cfg.ResultTTL).Unix(), Filename: batchID + "_" + string(kind) + ".jsonl",
		Purpose: PurposeBatchOutput}, nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// resultContent streams a batch's output or error file.
func (a *API) resultContent(w http.ResponseWriter, r *http.Request, batchID string, kind resultKind, id string) {
	if _, err := a.cfg.Client.GetBatch(r.Context(), batchID); err != nil {
		if errors.Is(err, enqueue.ErrNotFound) {
			err = errNoSuchBatch
		}
		a.fileError(w, r, id, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": batchID + "_" + string(kind) + ".jsonl"}))
	h.Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: a.cfg.WriteTimeout}, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	started := false
	err := a.eachResultLine(r.Context(), batchID, kind, func(l *job.ResultLine) error {
		started = true
		return enc.Encode(l)
	})
	if err == nil {
		err = bw.Flush()
	}
	switch {
	case err == nil:
	case !started:
		a.internalError(w, r, "read results", err)
	default:
		// The status is sent: break the connection so that the client
		// sees a truncated file, not a complete-looking one.
		panic(http.ErrAbortHandler)
	}
}
