package openaiapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/records"
)

// errorBody is OpenAI's error shape. param and code are null when there is
// none, as OpenAI sends them.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// errorType is OpenAI's error type for an HTTP status.
func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// writeError answers status in OpenAI's error shape. code is a short
// machine-readable word, message one sentence for people, param the field
// at fault (or "").
func writeError(w http.ResponseWriter, status int, code, message, param string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Message: message, Type: errorType(status),
		Param: nullable(param), Code: nullable(code)}})
}

func badRequest(w http.ResponseWriter, code, message, param string) {
	writeError(w, http.StatusBadRequest, code, message, param)
}

// writeJSON answers status with v as JSON; answers are never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Every value written here is a plain struct; this cannot happen.
		b = []byte(`{"error":{"message":"could not encode the answer","type":"server_error","param":null,"code":null}}`)
		status = http.StatusInternalServerError
	}
	writeRaw(w, status, b)
}

// writeRaw answers status with a JSON body written as given.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// internalError answers a failure that is not the caller's: 503 when Redis
// cannot be reached (the SDKs retry it), 500 otherwise. The error is logged
// with the request ID the answer names, and never shown to the caller.
func (a *API) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	rid := w.Header().Get("X-Request-Id")
	lg := zerolog.Ctx(r.Context())
	if r.Context().Err() != nil {
		lg.Debug().Err(err).Str("op", what).Msg("request canceled by client")
		return
	}
	if records.Unreachable(r.Context(), a.cfg.Redis, err) {
		lg.Error().Err(err).Str("op", what).Msg("redis unavailable")
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "service_unavailable",
			"The queue store (Redis) is unavailable; retry later (request_id "+rid+").", "")
		return
	}
	lg.Error().Err(err).Str("op", what).Msg("request failed")
	writeError(w, http.StatusInternalServerError, "internal_error",
		"Internal error; the server log has the details under request_id "+rid+".", "")
}

// list is OpenAI's page of a listing.
type list[T any] struct {
	Object  string  `json:"object"` // "list"
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func newList[T any](data []T, id func(T) string, more bool) list[T] {
	l := list[T]{Object: "list", Data: data, HasMore: more}
	if l.Data == nil {
		l.Data = []T{}
	}
	if len(data) > 0 {
		l.FirstID, l.LastID = nullable(id(data[0])), nullable(id(data[len(data)-1]))
	}
	return l
}

// pageLimit reads ?limit= from 1 to most; def when absent.
func pageLimit(w http.ResponseWriter, r *http.Request, def, most int) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		badRequest(w, "invalid_limit", "limit "+strconv.Quote(v)+" must be a whole number from 1 to "+strconv.Itoa(most)+".", "limit")
		return 0, false
	}
	return n, true
}
