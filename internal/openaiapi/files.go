package openaiapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/files"
)

// PurposeBatch is the only purpose of an uploaded file mimoq accepts; the
// files it generates have PurposeBatchOutput.
const (
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"
)

// multipartSlack is what a multipart upload may hold besides the file: its
// boundaries, headers and the purpose field.
const multipartSlack = 64 << 10

// errNotJSONL refuses an upload that does not start like a JSONL file.
var errNotJSONL = errors.New("not JSONL")

// createFile is POST /files: multipart with "file" and "purpose". The file
// is streamed into Redis as it arrives; an upload that is refused (too
// large, not JSONL, a purpose other than batch) leaves nothing stored.
func (a *API) createFile(w http.ResponseWriter, r *http.Request) {
	limit := a.cfg.Files.MaxBytes()
	if r.ContentLength > limit+multipartSlack {
		tooLarge(w, limit)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		badRequest(w, "invalid_request", "Send the file as multipart/form-data with the fields file and purpose.", "")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit+multipartSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		badRequest(w, "invalid_request", "The multipart body cannot be read: "+err.Error()+".", "")
		return
	}
	// The write deadline ran from the end of the headers, before a possibly
	// long upload: the answer gets a fresh one.
	defer func() { _ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout)) }()

	ctx := context.WithoutCancel(r.Context())
	var f *files.File
	purpose := ""
	discard := func() {
		if f != nil {
			_, _ = a.cfg.Files.Delete(ctx, f.ID)
		}
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			discard()
			a.uploadError(w, r, err, limit, true)
			return
		}
		switch name := part.FormName(); name {
		case "purpose":
			b, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				discard()
				a.uploadError(w, r, err, limit, true)
				return
			}
			purpose = strings.TrimSpace(string(b))
			if purpose != PurposeBatch {
				discard()
				badPurpose(w, purpose)
				return
			}
		case "file":
			if f != nil {
				discard()
				badRequest(w, "invalid_request", "The upload holds more than one file; send one per request.", "file")
				return
			}
			filename := part.FileName()
			if !strings.HasSuffix(strings.ToLower(filename), ".jsonl") {
				badRequest(w, "invalid_file_format",
					fmt.Sprintf("Invalid file format for Batch API: %q must be a .jsonl file.", filename), "file")
				return
			}
			sn := &jsonlSniffer{r: part}
			f, err = a.cfg.Files.Put(ctx, filename, PurposeBatch, sn, time.Now())
			if err != nil {
				// Put stored nothing. A failed read is the upload's fault;
				// anything else is the store's.
				a.uploadError(w, r, err, limit, sn.err != nil)
				return
			}
		case "expires_after[anchor]", "expires_after[seconds]":
			// Accepted for the SDKs' sake: files are kept for
			// MIMOQ_RESULT_TTL, as the batches made from them.
			_, _ = io.Copy(io.Discard, io.LimitReader(part, 256))
		default:
			discard()
			badRequest(w, "unknown_parameter", fmt.Sprintf("Unknown field %q; the upload takes file and purpose.", name), name)
			return
		}
	}
	switch {
	case f == nil:
		badRequest(w, "missing_required_parameter", "The upload holds no file field.", "file")
	case purpose == "":
		discard()
		badRequest(w, "missing_required_parameter", "purpose is required: batch.", "purpose")
	case f.Bytes == 0:
		discard()
		badRequest(w, "invalid_file_format", "The file is empty: send JSONL, one request per line.", "file")
	default:
		zerolog.Ctx(r.Context()).Info().Str("file_id", f.ID).Int64("bytes", f.Bytes).Msg("file uploaded")
		writeJSON(w, http.StatusOK, f)
	}
}

func badPurpose(w http.ResponseWriter, purpose string) {
	badRequest(w, "invalid_purpose",
		fmt.Sprintf("purpose %q is not supported: mimoq keeps files for the Batch API only (purpose batch).", purpose), "purpose")
}

// uploadError answers a failed upload; readFailed says reading the upload
// failed (the client's fault), not storing it.
func (a *API) uploadError(w http.ResponseWriter, r *http.Request, err error, limit int64, readFailed bool) {
	var tle *files.TooLargeError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &tle), errors.As(err, &mbe):
		tooLarge(w, limit)
	case errors.Is(err, errNotJSONL):
		badRequest(w, "invalid_file_format",
			"Invalid file format for Batch API: the file must be JSONL, one JSON object per line.", "file")
	case readFailed:
		badRequest(w, "invalid_request", "The upload could not be read: "+err.Error()+".", "file")
	default:
		a.internalError(w, r, "store file", err)
	}
}

func tooLarge(w http.ResponseWriter, limit int64) {
	writeError(w, http.StatusRequestEntityTooLarge, "file_too_large",
		fmt.Sprintf("The file exceeds the limit of %d bytes; nothing was stored.", limit), "file")
}

// jsonlSniffer passes an upload through, failing with errNotJSONL when its
// first non-blank byte does not open a JSON object. err is the first read
// error other than the end of the upload.
type jsonlSniffer struct {
	r    io.Reader
	seen bool
	err  error
}

func (s *jsonlSniffer) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	for i := 0; i < n && !s.seen; i++ {
		switch p[i] {
		case ' ', '\t', '\r', '\n':
		case '{':
			s.seen = true
		default:
			s.err = errNotJSONL
			return 0, errNotJSONL
		}
	}
	return n, err
}

// listFiles is GET /files[?purpose=][&limit=][&order=][&after=].
func (a *API) listFiles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := pageLimit(w, r, 10000, 10000)
	if !ok {
		return
	}
	oldestFirst := false
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		oldestFirst = true
	default:
		badRequest(w, "invalid_order", "order must be asc or desc.", "order")
		return
	}
	var out []*files.File
	more := false
	if p := q.Get("purpose"); p == "" || p == PurposeBatch {
		var err error
		if out, more, err = a.cfg.Files.List(r.Context(), q.Get("after"), limit, oldestFirst); err != nil {
			a.internalError(w, r, "list files", err)
			return
		}
	}
	writeJSON(w, http.StatusOK, newList(out, func(f *files.File) string { return f.ID }, more))
}

// getFile is GET /files/{id}: an uploaded file, or a batch's output or error
// file.
func (a *API) getFile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if batchID, kind, ok := parseResultFileID(id); ok {
		f, err := a.resultFile(r.Context(), batchID, kind, id)
		if err != nil {
			a.fileError(w, r, id, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
		return
	}
	f, err := a.cfg.Files.Get(r.Context(), id)
	if err != nil {
		a.fileError(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (a *API) fileError(w http.ResponseWriter, r *http.Request, id string, err error) {
	if errors.Is(err, files.ErrNotFound) || errors.Is(err, errNoSuchBatch) {
		writeError(w, http.StatusNotFound, "file_not_found", "No such File object: "+quote(id)+".", "id")
		return
	}
	a.internalError(w, r, "read file", err)
}

// fileContent is GET /files/{id}/content, streamed.
func (a *API) fileContent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if batchID, kind, ok := parseResultFileID(id); ok {
		a.resultContent(w, r, batchID, kind, id)
		return
	}
	rd, err := a.cfg.Files.Open(r.Context(), id)
	if err != nil {
		a.fileError(w, r, id, err)
		return
	}
	f := rd.File()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(f.Bytes, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, 64<<10)
	n, err := io.Copy(deadlineWriter{w: bw, rc: rc, timeout: a.cfg.WriteTimeout}, rd)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil && n == 0 && r.Context().Err() == nil {
		a.internalError(w, r, "read file", err)
		return
	}
	if err != nil {
		// Headers are sent: break the connection so that the client sees
		// a truncated file, not a complete-looking one.
		panic(http.ErrAbortHandler)
	}
}

// deadlineWriter pushes the write deadline on before each write, so that a
// large file is never cut off while the client reads.
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

// deleteFile is DELETE /files/{id}.
func (a *API) deleteFile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, _, ok := parseResultFileID(id); ok {
		badRequest(w, "invalid_request", "An output or error file is generated from its batch's results and "+
			"goes when they expire (MIMOQ_RESULT_TTL); it cannot be deleted on its own.", "id")
		return
	}
	ok, err := a.cfg.Files.Delete(r.Context(), id)
	switch {
	case err != nil:
		a.internalError(w, r, "delete file", err)
	case !ok:
		a.fileError(w, r, id, files.ErrNotFound)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "file", "deleted": true})
	}
}

// quote quotes an ID from a URL for a message, cut short when long.
func quote(id string) string {
	if len(id) > 80 {
		id = id[:80] + "…"
	}
	return strconv.Quote(id)
}
