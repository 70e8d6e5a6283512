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

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/jsonscan"
)

// JobIDHeader names the job behind a chat completion, in every answer: a
// client that went away fetches the result with GET /v1/jobs/{id}.
const JobIDHeader = "X-Mimoq-Job-Id"

// keepAliveEvery is how long a streaming request waits before its answer
// starts, with a comment line this often, so that proxies keep the
// connection open.
const keepAliveEvery = 10 * time.Second

// chatRequest is the body of POST /chat/completions without stream and
// stream_options, which mimoq answers itself.
type chatRequest struct {
	body         []byte
	stream       bool
	includeUsage bool
}

// parseChatRequest takes stream and stream_options out of a chat request;
// the rest goes to the queue byte for byte.
func parseChatRequest(raw []byte) (chatRequest, string, string) {
	var req chatRequest
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) || len(raw) == 0 || raw[0] != '{' {
		return req, "The request body must be a JSON object: a chat-completions request.", ""
	}
	out := make([]byte, 0, len(raw))
	out = append(out, '{')
	var msg, param string
	err := jsonscan.Members(raw, func(key string, val []byte) error {
		switch key {
		case "stream":
			switch string(val) {
			case "true":
				req.stream = true
			case "false", "null":
			default:
				msg, param = "stream must be true or false.", "stream"
				return errors.New(msg)
			}
			return nil
		case "stream_options":
			if string(val) == "null" {
				return nil
			}
			var so struct {
				IncludeUsage *bool `json:"include_usage"`
			}
			if err := json.Unmarshal(val, &so); err != nil {
				msg, param = "stream_options must be an object such as {\"include_usage\": true}.", "stream_options"
				return err
			}
			req.includeUsage = so.IncludeUsage != nil && *so.IncludeUsage
			return nil
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		k, _ := json.Marshal(key)
		out = append(out, k...)
		out = append(out, ':')
		out = append(out, val...)
		return nil
	})
	if err != nil {
		if msg == "" {
			msg = "The request body must be a JSON object: a chat-completions request."
		}
		return req, msg, param
	}
	req.body = append(out, '}')
	return req, "", ""
}

// chatCompletions is POST /chat/completions: one interactive job, enqueued,
// retried inside mimoq, and answered when it ends (or after SyncTimeout)
// with the API's own status and body. A client that goes away does not
// cancel the job.
func (a *API) chatCompletions(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, job.DefaultMaxJobBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large",
				fmt.Sprintf("The request body exceeds the limit of %d bytes.", job.DefaultMaxJobBytes), "")
			return
		}
		badRequest(w, "invalid_request", "The request body cannot be read: "+err.Error()+".", "")
		return
	}
	req, msg, param := parseChatRequest(raw)
	if msg != "" {
		badRequest(w, "invalid_request", msg, param)
		return
	}
	opts := []enqueue.SubmitOption{enqueue.WithQueue(enqueue.QueueInteractive)}
	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		opts = append(opts, enqueue.WithIdempotencyKey(key))
	}
	id, err := a.cfg.Client.Submit(r.Context(), req.body, opts...)
	if err != nil {
		a.submitError(w, r, err)
		return
	}
	w.Header().Set(JobIDHeader, id)

	// The answer may come long after the request: its write deadline runs
	// from when it is ready.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(a.cfg.SyncTimeout + a.cfg.WriteTimeout))
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.SyncTimeout)
	defer cancel()
	stop := context.AfterFunc(a.draining, cancel)
	defer stop()
	sse := &sseWriter{w: w, rc: rc}
	j, err := a.waitJob(ctx, id, req.stream, sse)
	_ = rc.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout))
	if err != nil {
		a.waitError(w, r, sse, id, key, err)
		return
	}
	switch {
	case j.State == job.StateSucceeded && req.stream:
		if err := sse.completion(j.Result, req.includeUsage); err != nil {
			panic(http.ErrAbortHandler)
		}
	case j.State == job.StateSucceeded:
		writeRaw(w, http.StatusOK, j.Result)
	default:
		status, body := failureAnswer(j)
		// mimoq has retried already: an SDK's own retry would only repeat
		// the answer (with the same Idempotency-Key) or make a new job.
		w.Header().Set("X-Should-Retry", "false")
		if sse.started {
			_ = sse.event(body)
			return
		}
		writeRaw(w, status, body)
	}
}

// submitError answers a refused submission: the request fails validation
// (an unknown model is a 404, as the API answers it).
func (a *API) submitError(w http.ResponseWriter, r *http.Request, err error) {
	var inv *enqueue.InvalidRequestError
	if !errors.As(err, &inv) {
		a.internalError(w, r, "submit chat completion", err)
		return
	}
	var ve *apiclient.ValidationError
	if errors.As(inv, &ve) {
		if ve.Field == "model" && !strings.HasPrefix(ve.Reason, "is required") {
			writeError(w, http.StatusNotFound, "model_not_found", "The model "+ve.Error()+".", "model")
			return
		}
		badRequest(w, "invalid_request", ve.Error()+".", ve.Field)
		return
	}
	badRequest(w, "invalid_request", inv.Err.Error()+".", "")
}

// waitJob waits for job id to end. For a streaming request that waits longer
// than keepAliveEvery, it starts the event stream and keeps it alive.
func (a *API) waitJob(ctx context.Context, id string, stream bool, sse *sseWriter) (*job.Job, error) {
	if !stream {
		return a.waitFinal(ctx, id)
	}
	type result struct {
		j   *job.Job
		err error
	}
	done := make(chan result, 1)
	go func() {
		j, err := a.waitFinal(ctx, id)
		done <- result{j, err}
	}()
	t := time.NewTicker(keepAliveEvery)
	defer t.Stop()
	for {
		select {
		case res := <-done:
			return res.j, res.err
		case <-t.C:
			if err := sse.keepAlive(); err != nil {
				res := <-done // the client is gone; ctx ends with it
				return res.j, res.err
			}
		}
	}
}

// waitFinal is Client.Wait that returns an error unless the job ended.
func (a *API) waitFinal(ctx context.Context, id string) (*job.Job, error) {
	j, err := a.cfg.Client.Wait(ctx, id)
	if err == nil && !j.State.Final() {
		err = context.DeadlineExceeded
	}
	return j, err
}

// waitError answers a wait that ended before the job did: the client left
// (nothing to answer), the server is draining or SyncTimeout passed. Either
// answer names the job; with an Idempotency-Key the SDK may retry and wait
// for the same job again, without one a retry would make a second job.
func (a *API) waitError(w http.ResponseWriter, r *http.Request, sse *sseWriter, id, key string, err error) {
	if r.Context().Err() != nil {
		return
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		if sse.started {
			panic(http.ErrAbortHandler)
		}
		a.internalError(w, r, "wait for chat completion", err)
		return
	}
	status, code := http.StatusGatewayTimeout, "timeout"
	msg := fmt.Sprintf("Job %s did not finish within MIMOQ_SYNC_TIMEOUT (%s); it keeps running: GET /v1/jobs/%s has its result.",
		id, a.cfg.SyncTimeout, id)
	if a.draining.Err() != nil {
		status, code = http.StatusServiceUnavailable, "shutting_down"
		msg = fmt.Sprintf("The server is shutting down; job %s keeps running: GET /v1/jobs/%s has its result.", id, id)
	}
	if key != "" {
		msg += " Retrying with the same Idempotency-Key waits for the same job."
		w.Header().Set("X-Should-Retry", "true")
	} else {
		w.Header().Set("X-Should-Retry", "false")
	}
	b, _ := json.Marshal(errorBody{Error: errorDetail{Message: msg, Type: errorType(status), Code: nullable(code)}})
	if sse.started {
		_ = sse.event(b)
		return
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeRaw(w, status, b)
}

// failureAnswer is the status and body of a job that did not succeed: the
// API's own status and error body when it answered one, OpenAI's error
// shape otherwise.
func failureAnswer(j *job.Job) (int, []byte) {
	e := j.Error
	if e == nil {
		e = &job.Error{Code: string(j.State), Message: "the job ended " + string(j.State)}
	}
	status := e.StatusCode
	switch j.State {
	case job.StateCanceled:
		status, e = http.StatusConflict, &job.Error{Code: "canceled", Message: "The job was canceled before it ran."}
	case job.StateExpired:
		status, e = http.StatusRequestTimeout, &job.Error{Code: "expired", Message: "The job's deadline passed before it could run."}
	}
	if status >= 400 && len(e.Body) > 0 && json.Valid(e.Body) {
		return status, e.Body
	}
	if status < 400 {
		status = http.StatusBadGateway // no answer from the API: a network failure or timeout
	}
	msg := e.Message
	if msg == "" {
		msg = "The request failed: " + e.Code + "."
	}
	b, _ := json.Marshal(errorBody{Error: errorDetail{Message: msg, Type: errorType(status), Code: nullable(e.Code)}})
	return status, b
}

// sseWriter writes a chat completion as server-sent events.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func (s *sseWriter) start() {
	if s.started {
		return
	}
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	s.started = true
}

func (s *sseWriter) keepAlive() error {
	s.start()
	if _, err := io.WriteString(s.w, ": waiting for the job\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// event writes one data event.
func (s *sseWriter) event(data []byte) error {
	s.start()
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", data); err != nil {
		return err
	}
	return s.rc.Flush()
}

// completion streams a finished chat completion as the API would have:
// per choice a first chunk with the role, its text in pieces, a last chunk
// with the finish reason; then usage (with include_usage, as OpenAI sends
// it), then [DONE].
func (s *sseWriter) completion(result []byte, includeUsage bool) error {
	var c struct {
		ID                string          `json:"id"`
		Created           int64           `json:"created"`
		Model             string          `json:"model"`
		SystemFingerprint json.RawMessage `json:"system_fingerprint,omitempty"`
		Choices           []struct {
			Index        int             `json:"index"`
			Message      chatMessage     `json:"message"`
			FinishReason json.RawMessage `json:"finish_reason"`
			Logprobs     json.RawMessage `json:"logprobs,omitempty"`
		} `json:"choices"`
		Usage json.RawMessage `json:"usage,omitempty"`
	}
	if err := json.Unmarshal(result, &c); err != nil {
		return fmt.Errorf("the result is not a chat completion: %w", err)
	}
	chunk := func(choices any, usage json.RawMessage) error {
		b, err := json.Marshal(struct {
			ID                string          `json:"id"`
			Object            string          `json:"object"`
			Created           int64           `json:"created"`
			Model             string          `json:"model"`
			SystemFingerprint json.RawMessage `json:"system_fingerprint,omitempty"`
			Choices           any             `json:"choices"`
			Usage             json.RawMessage `json:"usage,omitempty"`
		}{c.ID, "chat.completion.chunk", c.Created, c.Model, c.SystemFingerprint, choices, usage})
		if err != nil {
			return err
		}
		return s.event(b)
	}
	type choiceDelta struct {
		Index        int             `json:"index"`
		Delta        any             `json:"delta"`
		FinishReason json.RawMessage `json:"finish_reason"`
		Logprobs     json.RawMessage `json:"logprobs,omitempty"`
	}
	null := json.RawMessage("null")
	for _, ch := range c.Choices {
		one := func(delta any, finish json.RawMessage) error {
			return chunk([]choiceDelta{{Index: ch.Index, Delta: delta, FinishReason: finish}}, nil)
		}
		role := ch.Message.Role
		if role == "" {
			role = "assistant"
		}
		if err := one(map[string]any{"role": role, "content": ""}, null); err != nil {
			return err
		}
		for _, piece := range pieces(ch.Message.ReasoningContent) {
			if err := one(map[string]string{"reasoning_content": piece}, null); err != nil {
				return err
			}
		}
		for _, piece := range pieces(ch.Message.Content) {
			if err := one(map[string]string{"content": piece}, null); err != nil {
				return err
			}
		}
		if ch.Message.Refusal != "" {
			if err := one(map[string]string{"refusal": ch.Message.Refusal}, null); err != nil {
				return err
			}
		}
		if len(ch.Message.ToolCalls) > 0 {
			calls := make([]map[string]any, len(ch.Message.ToolCalls))
			for i, tc := range ch.Message.ToolCalls {
				calls[i] = map[string]any{"index": i, "id": tc.ID, "type": tc.Type, "function": tc.Function}
			}
			if err := one(map[string]any{"tool_calls": calls}, null); err != nil {
				return err
			}
		}
		finish := ch.FinishReason
		if len(finish) == 0 {
			finish = json.RawMessage(`"stop"`)
		}
		if err := one(struct{}{}, finish); err != nil {
			return err
		}
	}
	if includeUsage && len(c.Usage) > 0 {
		if err := chunk([]choiceDelta{}, c.Usage); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(s.w, "data: [DONE]\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// chatMessage is the assistant message of a finished choice.
type chatMessage struct {
	Role             string `json:"role"`
	Content          string `json:"content"`
	ReasoningContent string `json:"reasoning_content"`
	Refusal          string `json:"refusal"`
	ToolCalls        []struct {
		ID       string          `json:"id"`
		Type     string          `json:"type"`
		Function json.RawMessage `json:"function"`
	} `json:"tool_calls"`
}

// pieceBytes is about how much text one content chunk carries.
const pieceBytes = 48

// pieces cuts s into runs of about pieceBytes, at spaces where it can and
// never inside a character.
func pieces(s string) []string {
	var out []string
	for len(s) > pieceBytes {
		n := strings.LastIndexByte(s[:pieceBytes], ' ') + 1
		if n <= 0 {
			n = pieceBytes
			for n > 0 && s[n]&0xC0 == 0x80 {
				n--
			}
			if n == 0 {
				n = pieceBytes
			}
		}
		out = append(out, s[:n])
		s = s[n:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}
