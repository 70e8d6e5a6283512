package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/records"
)

// errorBody is the error shape of the MiMo API (and OpenAI's):
// {"error":{"code","message","type","param"}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param,omitempty"`
}

// writeError answers status with the error shape. message is one sentence
// for the caller; param names the offending field, when there is one.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, message, param string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message, Type: "error", Param: param}})
}

// badRequest answers 400 invalid_request.
func badRequest(w http.ResponseWriter, r *http.Request, param, message string) {
	writeError(w, r, http.StatusBadRequest, "invalid_request", message, param)
}

func notFound(w http.ResponseWriter, r *http.Request, message string) {
	writeError(w, r, http.StatusNotFound, "not_found", message, "")
}

func tooLarge(w http.ResponseWriter, r *http.Request, what string, limit int64) {
	writeError(w, r, http.StatusRequestEntityTooLarge, "request_too_large",
		what+" exceeds the limit of "+formatBytes(limit)+".", "")
}

// writeJSON answers status with v as JSON. API answers are never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	b, err := json.Marshal(v)
	if err != nil {
		// Every value written here is a plain struct; this cannot happen.
		b = []byte(`{"error":{"code":"internal_error","message":"could not encode the answer","type":"error"}}`)
		status = http.StatusInternalServerError
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// internalError answers a failure that is not the caller's: 503
// service_unavailable when Redis cannot be reached (the caller may retry),
// 500 internal_error otherwise. The error is logged here, with the request
// ID the answer names, and never shown to the caller.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	rid := w.Header().Get("X-Request-Id")
	lg := zerolog.Ctx(r.Context())
	if r.Context().Err() != nil {
		// The client is gone; nobody reads the answer.
		lg.Debug().Err(err).Str("op", what).Msg("request canceled by client")
		writeError(w, r, 499, "canceled", "Request canceled.", "")
		return
	}
	if s.redisDown(r.Context(), err) {
		lg.Error().Err(err).Str("op", what).Msg("redis unavailable")
		w.Header().Set("Retry-After", "5")
		writeError(w, r, http.StatusServiceUnavailable, "service_unavailable",
			"The queue store (Redis) is unavailable; retry later (request_id "+rid+").", "")
		return
	}
	lg.Error().Err(err).Str("op", what).Msg("request failed")
	writeError(w, r, http.StatusInternalServerError, "internal_error", internalMessage(rid), "")
}

// redisDown reports whether err comes from an unreachable Redis.
func (s *Server) redisDown(ctx context.Context, err error) bool {
	return records.Unreachable(ctx, s.cfg.Redis, err)
}

// formatBytes writes n for people: 8 MiB, 256 MiB, 1500 bytes.
func formatBytes(n int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
		gib = 1 << 30
	)
	switch {
	case n >= gib && n%gib == 0:
		return itoa(n/gib) + " GiB"
	case n >= mib && n%mib == 0:
		return itoa(n/mib) + " MiB"
	case n >= kib && n%kib == 0:
		return itoa(n/kib) + " KiB"
	}
	return itoa(n) + " bytes"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
