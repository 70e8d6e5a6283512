package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
)

// jobEnvelope is the body of POST /v1/jobs.
type jobEnvelope struct {
	Body           json.RawMessage // the chat-completions request, byte-for-byte
	Queue          string
	IdempotencyKey string
	// Deadline, when positive, expires the job if it has not started
	// that long after its submit.
	Deadline time.Duration
	// Webhook is told when the job ends, with its result when
	// WebhookIncludeResult.
	Webhook              string
	WebhookIncludeResult bool
}

var envelopeFields = []string{"body", "queue", "idempotency_key", "deadline", "webhook", "webhook_include_result"}

// fieldError is a 400 naming the field at fault.
type fieldError struct{ param, message string }

// parseEnvelope reads {"body": {…}, "queue"?, "idempotency_key"?,
// "deadline"? (a duration such as "30s")}. Unknown
// fields are refused: a misspelt "idempotency_key" must not silently submit
// twice.
func parseEnvelope(raw []byte) (jobEnvelope, *fieldError) {
	var env jobEnvelope
	members, ferr := parseObject(raw, "request body")
	if ferr != nil {
		return env, ferr
	}
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(envelopeFields, k) {
			continue
		}
		if _, hasBody := members["body"]; !hasBody && (k == "messages" || k == "model") {
			return env, &fieldError{param: k, message: `unknown field "` + k +
				`": the chat request goes inside "body", as in {"body": {"model": …, "messages": […]}}`}
		}
		return env, &fieldError{param: k, message: fmt.Sprintf("unknown field %q: the request takes body, queue, idempotency_key, deadline, webhook and webhook_include_result", k)}
	}
	body, ok := members["body"]
	if !ok || string(body) == "null" {
		return env, &fieldError{param: "body", message: "body is required: the chat-completions request to enqueue"}
	}
	if body[0] != '{' {
		return env, &fieldError{param: "body", message: "body must be a JSON object: the chat-completions request"}
	}
	env.Body = body
	var err *fieldError
	if env.Queue, err = stringMember(members, "queue"); err != nil {
		return env, err
	}
	if env.IdempotencyKey, err = stringMember(members, "idempotency_key"); err != nil {
		return env, err
	}
	deadline, err := stringMember(members, "deadline")
	if err != nil {
		return env, err
	}
	if deadline != "" {
		d, perr := enqueue.ParseDeadline(deadline)
		if perr != nil {
			return env, &fieldError{param: "deadline", message: perr.Error()}
		}
		env.Deadline = d
	}
	if env.Webhook, err = stringMember(members, "webhook"); err != nil {
		return env, err
	}
	if v, ok := members["webhook_include_result"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &env.WebhookIncludeResult); err != nil {
			return env, &fieldError{param: "webhook_include_result", message: "webhook_include_result must be true or false"}
		}
		if env.Webhook == "" && env.WebhookIncludeResult {
			return env, &fieldError{param: "webhook_include_result", message: "webhook_include_result needs a webhook URL"}
		}
	}
	return env, nil
}

// parseObject splits a JSON object into its members, naming what is wrong
// with raw when it is not one. what is e.g. "request body".
func parseObject(raw []byte, what string) (map[string]json.RawMessage, *fieldError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, &fieldError{message: what + " is empty: send a JSON object"}
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &fieldError{message: fmt.Sprintf("%s is not valid JSON: %s at byte %d", what, strings.TrimPrefix(se.Error(), "json: "), se.Offset)}
		}
		return nil, &fieldError{message: what + " must be a JSON object"}
	}
	if members == nil {
		return nil, &fieldError{message: what + " must be a JSON object, not null"}
	}
	return members, nil
}

// stringMember reads an optional string member; null counts as absent.
func stringMember(m map[string]json.RawMessage, name string) (string, *fieldError) {
	v, ok := m[name]
	if !ok || string(v) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", &fieldError{param: name, message: name + " must be a string"}
	}
	return s, nil
}

// readBody reads a request body of at most limit bytes. On failure it has
// answered (413 beyond the limit, 400 for a broken upload) and returns false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		tooLarge(w, r, "The request body ("+itoa(r.ContentLength)+" bytes)", limit)
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(w, r, "The request body", limit)
			return nil, false
		}
		badRequest(w, r, "", "Could not read the request body: "+err.Error()+".")
		return nil, false
	}
	return b, true
}

// submitJob is POST /v1/jobs.
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	raw, ok := readBody(w, r, s.cfg.MaxJobBytes)
	if !ok {
		return
	}
	env, ferr := parseEnvelope(raw)
	if ferr != nil {
		badRequest(w, r, ferr.param, ferr.message)
		return
	}
	var opts []enqueue.SubmitOption
	if env.Queue != "" {
		opts = append(opts, enqueue.WithQueue(env.Queue))
	}
	if env.IdempotencyKey != "" {
		opts = append(opts, enqueue.WithIdempotencyKey(env.IdempotencyKey))
	}
	if env.Deadline > 0 {
		opts = append(opts, enqueue.WithDeadline(time.Now().Add(env.Deadline)))
	}
	if env.Webhook != "" {
		opts = append(opts, enqueue.WithWebhook(env.Webhook))
		if env.WebhookIncludeResult {
			opts = append(opts, enqueue.WithWebhookResult())
		}
	}
	id, err := s.cfg.Client.Submit(r.Context(), env.Body, opts...)
	if err != nil {
		var inv *enqueue.InvalidRequestError
		if errors.As(err, &inv) {
			param, msg := invalidRequestParam(inv, env.Queue)
			badRequest(w, r, param, msg)
			return
		}
		s.internalError(w, r, "submit job", err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
}

// invalidRequestParam names the field of a refused submission. Validation
// of the chat request names a field inside "body"; the only other refusal
// is the queue. An unknown model is refused here with 400 (not the 404 the
// API itself gives): at this endpoint 404 means no such job.
func invalidRequestParam(inv *enqueue.InvalidRequestError, queue string) (param, message string) {
	if errors.Is(inv, enqueue.ErrInvalidWebhook) {
		return "webhook", inv.Err.Error()
	}
	var ve *apiclient.ValidationError
	if errors.As(inv, &ve) {
		if ve.Field != "" {
			return "body." + ve.Field, "body." + ve.Error()
		}
		return "body", ve.Error()
	}
	if queue != "" {
		return "queue", inv.Err.Error()
	}
	return "", inv.Err.Error()
}

// getJob is GET /v1/jobs/{id}[?wait=30s]: the job record, after waiting up
// to min(wait, MaxWait) for it to end. Either way the answer is 200 and
// the state says whether it ended.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		badRequest(w, r, "wait", err.Error())
		return
	}
	wait = min(wait, s.cfg.MaxWait)
	var j *enqueue.Job
	if wait > 0 && s.draining.Err() == nil {
		j, err = s.waitJob(r, id, wait)
	} else {
		j, err = s.cfg.Client.Get(r.Context(), id)
	}
	switch {
	case errors.Is(err, enqueue.ErrNotFound):
		notFound(w, r, "No job "+quoteID(id)+" (never submitted, or its record expired).")
	case err != nil:
		s.internalError(w, r, "get job", err)
	default:
		writeJSON(w, http.StatusOK, j)
	}
}

// waitJob long-polls one job. With MaxWaiters polls running already it does
// not wait: the caller gets the current state and polls again.
func (s *Server) waitJob(r *http.Request, id string, wait time.Duration) (*enqueue.Job, error) {
	select {
	case s.waiters <- struct{}{}:
		defer func() { <-s.waiters }()
	default:
		return s.cfg.Client.Get(r.Context(), id)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	stop := context.AfterFunc(s.draining, cancel)
	defer stop()
	j, err := s.cfg.Client.Wait(ctx, id)
	if err == nil || r.Context().Err() != nil || ctx.Err() == nil {
		return j, err
	}
	// The wait ran out (or the server is draining): answer the state now.
	if j != nil {
		return j, nil
	}
	return s.cfg.Client.Get(r.Context(), id)
}

// parseWait reads ?wait=: a Go duration ("30s", "1m") or a number of
// seconds ("30", "1.5").
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != f {
			return 0, fmt.Errorf("wait %q is not a duration: use e.g. 30s or 30", v)
		}
		d = time.Duration(min(f, 1e6) * float64(time.Second))
	}
	if d < 0 {
		return 0, fmt.Errorf("wait %q must not be negative", v)
	}
	return d, nil
}

// quoteID quotes an ID from a URL for a message, cut short when long.
func quoteID(id string) string {
	if len(id) > 64 {
		id = id[:64] + "…"
	}
	return strconv.Quote(id)
}
