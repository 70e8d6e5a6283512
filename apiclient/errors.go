package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrAttemptTimeout is wrapped by the [*TransportError] that [Client.Do] returns
// when its own per-attempt deadline (Options.RequestTimeout) fires. It does not
// match context.DeadlineExceeded: that is reserved for the caller's context.
var ErrAttemptTimeout = errors.New("attempt timed out")

// Length caps for text taken from a response, so that a hostile or broken
// server cannot flood logs and dead letters.
const (
	maxMessageLen = 500
	maxShortLen   = 200
)

// redacted replaces the API key wherever a server echoes it.
const redacted = "[redacted]"

// APIError is a non-2xx response. Read it with errors.As; branch on StatusCode
// (through [Classify]), never on Message.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the machine-readable error code: the body's code when it gives a
	// word like "rate_limit_exceeded", otherwise (no code, or a numeric one like
	// "429") a code derived from StatusCode — see [DefaultErrorCode].
	Code string
	// RawCode is the code exactly as the body gave it (a JSON string or number,
	// e.g. "429"), or "" when it gave none.
	RawCode string
	// Message is the human-readable message from the body, or a short
	// description of a body that had none, such as
	// "non-JSON error body (text/html, 1532 bytes)". At most about 500 bytes,
	// single-line, with the API key redacted.
	Message string
	// Type is the body's error type ("error", "limitation", "server_error", …).
	Type string
	// Param is the body's param, when it names one.
	Param string
	// RequestID is the x-request-id response header (or a request_id in the body).
	RequestID string
	// RetryAfter is the wait the server asked for (see [ParseRetryAfter]), or 0.
	RetryAfter time.Duration
	// Body is the error body when it is valid JSON, for results files and dead
	// letters, with the API key redacted; nil otherwise.
	Body json.RawMessage
	// NonJSON is true when the body was neither empty nor JSON, not even cut
	// short: an HTML page or plain text, which the API itself never sends but a
	// proxy or gateway in front of it does.
	NonJSON bool
	// Hint is a suggestion of ours, not the server's, e.g. that the key does
	// not belong to the host it was sent to; empty when there is none.
	Hint string
}

// Error returns e.g. "mimo api: 429 rate_limit_exceeded: Too many requests
// (request_id abc)", with the body's param and the hint when there are any
// (MiMo's "Param Incorrect" says what is wrong in param alone). It never
// contains the API key or the request body.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("mimo api: ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Code != "" {
		b.WriteByte(' ')
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Param != "" {
		b.WriteString(" (param: ")
		b.WriteString(e.Param)
		b.WriteByte(')')
	}
	if e.Hint != "" {
		b.WriteString("; hint: ")
		b.WriteString(e.Hint)
	}
	if e.RequestID != "" {
		b.WriteString(" (request_id ")
		b.WriteString(e.RequestID)
		b.WriteByte(')')
	}
	return b.String()
}

// TransportError is a failure that left no usable response: connecting, TLS,
// writing the request, or reading the body. Op says which step.
type TransportError struct {
	// Op is the step that failed: "send request", "read response body", ….
	Op string
	// Err is the cause: a net error, io.ErrUnexpectedEOF, a TLS error, the
	// caller's ctx.Err(), or one wrapping [ErrAttemptTimeout].
	Err error
}

// Error returns e.g. "mimo api: send request: dial tcp 127.0.0.1:1: connect:
// connection refused". It never contains the API key.
func (e *TransportError) Error() string {
	if e.Err == nil {
		return "mimo api: " + e.Op + ": failed"
	}
	return "mimo api: " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *TransportError) Unwrap() error { return e.Err }

// MalformedResponseError is a 2xx response whose body cannot be used: empty,
// not JSON, not an object, or without choices (a completion) or data (a
// model list). The call may well succeed next
// time, so [Classify] calls it retryable.
type MalformedResponseError struct {
	// StatusCode is the (2xx) HTTP status.
	StatusCode int
	// RequestID is the x-request-id response header.
	RequestID string
	// Reason says what was wrong, e.g. "empty body" or "missing choices".
	Reason string
	// Size is the body length in bytes.
	Size int
}

// Error returns e.g. "mimo api: 200 malformed response: missing choices (57 bytes)".
func (e *MalformedResponseError) Error() string {
	s := fmt.Sprintf("mimo api: %d malformed response: %s (%d bytes)", e.StatusCode, e.Reason, e.Size)
	if e.RequestID != "" {
		s += " (request_id " + e.RequestID + ")"
	}
	return s
}

// ResponseTooLargeError is a 2xx response whose body exceeds
// Options.MaxResponseBytes. [Classify] calls it terminal: the same request would
// produce a response as large again, and every retry would be billed.
type ResponseTooLargeError struct {
	// StatusCode is the (2xx) HTTP status.
	StatusCode int
	// RequestID is the x-request-id response header.
	RequestID string
	// Limit is the cap that was exceeded, in bytes.
	Limit int64
}

// Error returns e.g. "mimo api: 200 response body exceeds 67108864 bytes".
func (e *ResponseTooLargeError) Error() string {
	s := fmt.Sprintf("mimo api: %d response body exceeds %d bytes", e.StatusCode, e.Limit)
	if e.RequestID != "" {
		s += " (request_id " + e.RequestID + ")"
	}
	return s
}

// DefaultErrorCode is the code an [APIError] gets when its body gives none (or a
// numeric one): the MiMo error-code page's names where it has them.
func DefaultErrorCode(status int) string {
	switch status {
	case 400:
		return "invalid_request"
	case 401:
		return "authentication_failed"
	case 402:
		return "insufficient_balance"
	case 403:
		return "permission_denied"
	case 404:
		return "not_found"
	case 408:
		return "request_timeout"
	case 409:
		return "conflict"
	case 413:
		return "request_too_large"
	case 421:
		return "content_filter"
	case 422:
		return "unprocessable_entity"
	case 429:
		return "rate_limit_exceeded"
	case 451:
		return "unavailable_for_legal_reasons"
	case 500:
		return "internal_error"
	case 502:
		return "bad_gateway"
	case 503:
		return "service_unavailable"
	case 504:
		return "gateway_timeout"
	}
	return "http_" + strconv.Itoa(status)
}

// newAPIError builds the error for a non-2xx response from whatever body shape
// came back. key is redacted from everything taken from the response.
func newAPIError(status int, h http.Header, body []byte, key string, now time.Time) *APIError {
	e := &APIError{StatusCode: status}
	if d, ok := ParseRetryAfter(h, now); ok {
		e.RetryAfter = d
	}
	trimmed := bytes.TrimSpace(body)
	var f errorFields
	switch {
	case len(trimmed) == 0:
		e.Message = "empty error body"
	case json.Valid(trimmed):
		e.Body = redactJSON(trimmed, key)
		f = parseErrorFields(trimmed)
		e.Message = cleanText(f.message, key, maxMessageLen)
		if e.Message == "" {
			e.Message = statusText(status)
		}
	default:
		e.Message = describeBody(h.Get("Content-Type"), trimmed, len(body), key)
		e.NonJSON = trimmed[0] != '{' && trimmed[0] != '['
	}
	e.RawCode = cleanText(f.code, key, maxShortLen)
	e.Code = e.RawCode
	if e.Code == "" || isNumeric(e.Code) {
		e.Code = DefaultErrorCode(status)
	}
	e.Type = cleanText(f.typ, key, maxShortLen)
	e.Param = cleanText(f.param, key, maxShortLen)
	e.RequestID = cleanText(h.Get("X-Request-Id"), key, maxShortLen)
	if e.RequestID == "" {
		e.RequestID = cleanText(f.requestID, key, maxShortLen)
	}
	return e
}

// errorFields are the parts of an error body, from whichever shape it had.
type errorFields struct {
	code, message, typ, param, requestID string
}

// parseErrorFields reads b, which must be valid JSON, in every known shape:
//
//	{"error":{"code":"rate_limit_exceeded","message":"…","type":"error"}}
//	{"error":{"code":429,"message":"…","type":"limitation","param":null}}
//	{"type":"server_error","message":"…"}     (no wrapper)
//	{"error":"some string"}, {"detail":…}, "some string"
func parseErrorFields(b []byte) errorFields {
	var f errorFields
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		f.message, _ = scalarText(b)
		return f
	}
	if ev, ok := top["error"]; ok {
		var obj map[string]json.RawMessage
		if json.Unmarshal(ev, &obj) == nil && obj != nil {
			f.fill(obj)
		} else {
			f.message, _ = scalarText(ev)
		}
	}
	f.fill(top)
	return f
}

// fill sets the fields still empty from obj.
func (f *errorFields) fill(obj map[string]json.RawMessage) {
	set := func(dst *string, keys ...string) {
		for _, k := range keys {
			if *dst != "" {
				return
			}
			if v, ok := obj[k]; ok {
				*dst, _ = scalarText(v)
			}
		}
	}
	set(&f.code, "code", "error_code")
	set(&f.message, "message", "msg", "detail", "error_description", "error_message")
	set(&f.typ, "type")
	set(&f.param, "param")
	set(&f.requestID, "request_id")
}

// scalarText renders a JSON value as text: a string's contents, a number's or
// boolean's literal, an object or array compacted. null gives "", false.
func scalarText(v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return "", false
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return "", false
	}
	return buf.String(), true
}

// describeBody says what a body that is not JSON looked like, without quoting it.
func describeBody(contentType string, trimmed []byte, size int, key string) string {
	kind := "non-JSON error body"
	if trimmed[0] == '{' || trimmed[0] == '[' {
		kind = "malformed JSON error body"
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt == "" {
		return fmt.Sprintf("%s (%d bytes)", kind, size)
	}
	return fmt.Sprintf("%s (%s, %d bytes)", kind, cleanText(mt, key, 100), size)
}

func statusText(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "unexpected status"
}

// isNumeric reports whether s is a number like "429" or "-1" rather than a word.
func isNumeric(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits++
		case c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E':
		default:
			return false
		}
	}
	return digits > 0
}

// cleanText makes server-supplied text safe to log: one line, valid UTF-8,
// without key, at most max bytes (plus an ellipsis).
func cleanText(s, key string, max int) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if unicode.Is(unicode.Cf, r) {
			// Invisible format characters (bidi overrides, zero-width) only
			// serve to disguise text in a terminal.
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	// Redact after normalising, which could otherwise join a split key.
	out := redact(b.String(), key)
	if len(out) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "…"
	}
	return out
}

// redact removes every occurrence of key from s.
func redact(s, key string) string {
	if key == "" || !strings.Contains(s, key) {
		return s
	}
	// With no bracket in the key and the key not inside the marker, one pass
	// cannot create a new occurrence; otherwise delete until none is left.
	if !strings.ContainsAny(key, "[]") && !strings.Contains(redacted, key) {
		return strings.ReplaceAll(s, key, redacted)
	}
	for strings.Contains(s, key) {
		s = strings.ReplaceAll(s, key, "")
	}
	return s
}

// redactJSON returns the valid JSON b with key removed from it, still valid JSON:
// from its raw bytes and from any string that spells the key with escapes.
func redactJSON(b []byte, key string) json.RawMessage {
	if key == "" {
		return json.RawMessage(b)
	}
	out := b
	if bytes.Contains(out, []byte(key)) {
		out = []byte(redact(string(out), key))
	}
	if json.Valid(out) && !bytes.Contains(out, []byte(`\`)) {
		return json.RawMessage(out)
	}
	// Escapes could hide the key (or the redaction broke one): decode, redact
	// every string and re-encode.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	changed := false
	v = redactValue(v, key, &changed)
	if !changed && json.Valid(out) {
		return json.RawMessage(out)
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return enc
}

func redactValue(v any, key string, changed *bool) any {
	switch t := v.(type) {
	case string:
		if r := redact(t, key); r != t {
			*changed = true
			return r
		}
	case []any:
		for i := range t {
			t[i] = redactValue(t[i], key, changed)
		}
	case map[string]any:
		for k, val := range t {
			val = redactValue(val, key, changed)
			if r := redact(k, key); r != k {
				*changed = true
				delete(t, k)
				k = r
			}
			t[k] = val
		}
	}
	return v
}
