package server

import (
	"errors"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/auth"
)

// serveHTTP is the outermost handler: request ID, logging, metrics, panic
// recovery, and bearer auth plus JSON errors for requests no route matches.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := enqueue.NewID()
	w.Header().Set("X-Request-Id", rid)
	sw := &statusWriter{ResponseWriter: w}
	_, pattern := s.mux.Handler(r)
	lg := s.log.With().Str("request_id", rid).Logger()
	r = r.WithContext(lg.WithContext(r.Context()))

	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				s.logRequest(r, pattern, sw, start)
				panic(v)
			}
			lg.Error().Str("panic", panicText(v)).Bytes("stack", debug.Stack()).Msg("handler panicked")
			if !sw.wroteHeader {
				writeError(sw, r, http.StatusInternalServerError, "internal_error", internalMessage(rid), "")
			} else {
				// A half-written answer must not look complete.
				s.logRequest(r, pattern, sw, start)
				panic(http.ErrAbortHandler)
			}
		}
		s.logRequest(r, pattern, sw, start)
	}()

	if pattern == "" {
		// No route: a 404 or 405 from the mux, which would answer in plain
		// text. A request without a valid token learns nothing of the routes.
		if !s.authorized(r) {
			unauthorized(sw, r)
			return
		}
		s.mux.ServeHTTP(&fallbackWriter{statusWriter: sw, r: r}, r)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

func panicText(v any) string {
	switch v := v.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	return "non-error panic value"
}

func (s *Server) logRequest(r *http.Request, pattern string, sw *statusWriter, start time.Time) {
	d := time.Since(start)
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	if s.metrics != nil {
		s.metrics.observe(pattern, status, d)
	}
	lvl := zerolog.InfoLevel
	switch {
	case status >= 500:
		lvl = zerolog.ErrorLevel
	case pattern == "GET /healthz" || pattern == "GET /readyz":
		lvl = zerolog.DebugLevel // probes every few seconds would drown the log
	}
	// The path only: queries are not logged, and tokens never travel in
	// URLs nor appear here.
	zerolog.Ctx(r.Context()).WithLevel(lvl).
		Str("method", r.Method).Str("path", r.URL.Path).Str("route", pattern).
		Int("status", status).Int64("bytes", sw.bytes).Float64("duration_ms", float64(d.Microseconds())/1000).
		Str("remote", r.RemoteAddr).Msg("http request")
}

// authorized reports whether r carries one of the tokens. auth.Tokens
// compares against every token in constant time.
func (s *Server) authorized(r *http.Request) bool {
	return s.cfg.Tokens.Valid(auth.Bearer(r))
}

// requireToken answers 401 unless the request carries a valid bearer token.
func (s *Server) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			unauthorized(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeError(w, r, http.StatusUnauthorized, "authentication_failed", "Invalid or missing bearer token.", "")
}

// statusWriter records the status and size of a response. Unwrap lets
// http.ResponseController reach the connection (Flush, write deadlines).
type statusWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// fallbackWriter turns the mux's plain-text 404 and 405 into the JSON error
// shape (keeping the Allow header of a 405).
type fallbackWriter struct {
	*statusWriter
	r       *http.Request
	swallow bool
}

func (w *fallbackWriter) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		w.swallow = true
		writeError(w.statusWriter, w.r, code, "not_found", "No route "+w.r.Method+" "+w.r.URL.Path+".", "")
	case http.StatusMethodNotAllowed:
		w.swallow = true
		allow := w.Header().Get("Allow")
		writeError(w.statusWriter, w.r, code, "method_not_allowed",
			"Method "+w.r.Method+" is not allowed on "+w.r.URL.Path+"; allowed: "+allow+".", "")
	default:
		w.statusWriter.WriteHeader(code)
	}
}

func (w *fallbackWriter) Write(p []byte) (int, error) {
	if w.swallow {
		return len(p), nil
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.statusWriter.Write(p)
}

func internalMessage(rid string) string {
	return "Internal error; the server log has the details under request_id " + rid + "."
}

// isClientGone reports whether err only says that the client went away.
func isClientGone(r *http.Request, err error) bool {
	return r.Context().Err() != nil || errors.Is(err, http.ErrHandlerTimeout) ||
		strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "connection reset")
}
