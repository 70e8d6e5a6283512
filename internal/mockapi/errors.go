package mockapi

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Error codes of the documented error shape (reference error-code page).
const (
	codeInvalidRequest     = "invalid_request"
	codeAuthFailed         = "authentication_failed"
	codeNotFound           = "not_found"
	codeRateLimitExceeded  = "rate_limit_exceeded"
	codeQuotaExhausted     = "quota_exhausted" // never sent: MiMo's shape carries the status
	codeInternalError      = "internal_error"
	codeServiceUnavailable = "service_unavailable"
)

// apiError is an error response before it takes a shape.
type apiError struct {
	status  int
	code    string
	message string
	param   string
	// retryAfter, for a 429, is when the client may try again.
	retryAfter time.Duration
	// noRetryAfter sends a 429 without Retry-After and retry-after-ms.
	noRetryAfter bool
	// fixed makes the error take shape whatever ErrorShape says: the errors
	// only MiMo (or a proxy) sends come in one shape.
	fixed bool
	shape bodyShape
	// typ, when not nil, is the "type" of the MiMo and unwrapped shapes in
	// place of the one derived from the status.
	typ *string
	// retired is the model name refused as retired, for the statistics.
	retired string
}

// The messages of the errors only MiMo sends (docs/mimo-api.md).
const (
	msgInsufficientFunds = "Upstream request failed: Insufficient account funds"
	msgQuotaExhausted    = "The quota of Token Plan has been exhausted, please upgrade the package or switch to pay-as-you-go API."
	msgContentFiltered   = "The content you entered is high risk and has been blocked by content moderation."
)

func typeOf(s string) *string { return &s }

// unsupportedModel is MiMo's answer to a retired model name.
func unsupportedModel(model string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeInvalidRequest, message: "Unsupported model " + model,
		fixed: true, shape: bodyMiMo, typ: typeOf(""), retired: model}
}

// contentFiltered is MiMo's 421. The real type is not public: the mock's is a
// guess, and nothing should branch on it.
func contentFiltered() *apiError {
	return &apiError{status: 421, code: "content_filter", message: msgContentFiltered,
		fixed: true, shape: bodyMiMo, typ: typeOf("content_filter")}
}

// insufficientFunds is the 402 a Token Plan sends in bursts, without the
// error wrapper.
func insufficientFunds() *apiError {
	return &apiError{status: http.StatusPaymentRequired, code: "insufficient_balance", message: msgInsufficientFunds,
		fixed: true, shape: bodyUnwrapped, typ: typeOf("server_error")}
}

// quotaExhausted is the 429 of a used-up Token Plan: the same code and type
// as a rate limit, and no Retry-After.
func quotaExhausted() *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: codeQuotaExhausted, message: msgQuotaExhausted,
		noRetryAfter: true, fixed: true, shape: bodyMiMo}
}

func invalid(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeInvalidRequest, message: fmt.Sprintf(format, args...), param: param}
}

// bodyShape is the shape one error response takes.
type bodyShape int

const (
	bodySeed bodyShape = iota
	bodyMiMo
	bodyUnwrapped
	bodyHTML
	bodyEmpty
)

// shapeFor picks the body shape of one error response.
func shapeFor(shape ErrorShape, status int, r *splitmix) bodyShape {
	switch shape {
	case ShapeMiMo:
		return bodyMiMo
	case ShapeMixed:
		n := 3
		if status >= 500 {
			n = 5 // a proxy's HTML page or an empty body, too
		}
		return bodyShape(r.next() % uint64(n))
	}
	return bodySeed
}

// mimoType is the "type" MiMo puts beside a status-number code.
func mimoType(status int) string {
	switch {
	case status == 401:
		return "authentication_error"
	case status == 403:
		return "permission_error"
	case status == 404:
		return "not_found_error"
	case status == 429:
		return "limitation"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

type errorObject struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
	Type    string `json:"type"`
}

type wrappedError struct {
	Error errorObject `json:"error"`
}

type unwrappedError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// writeError writes e in the given shape (or its fixed one). A 429 carries
// Retry-After (whole seconds, at least 1, or with dates, one time in four, an
// HTTP date) and retry-after-ms, unless e.noRetryAfter.
func writeError(w http.ResponseWriter, e *apiError, shape bodyShape, dates bool, now time.Time, r *splitmix) {
	h := w.Header()
	if e.fixed {
		shape = e.shape
	}
	typ := func() string {
		if e.typ != nil {
			return *e.typ
		}
		return mimoType(e.status)
	}
	if e.status == http.StatusTooManyRequests && !e.noRetryAfter {
		ms := max(int64(math.Ceil(float64(e.retryAfter)/float64(time.Millisecond))), 1)
		secs := (ms + 999) / 1000
		h.Set(HeaderRetryAfterMS, strconv.FormatInt(ms, 10))
		if dates && r.next()%4 == 0 {
			// An HTTP date has whole seconds: round up so it is never early.
			at := now.Add(time.Duration(ms) * time.Millisecond)
			if t := at.Truncate(time.Second); !t.Equal(at) {
				at = t.Add(time.Second)
			}
			h.Set("Retry-After", at.UTC().Format(http.TimeFormat))
		} else {
			h.Set("Retry-After", strconv.FormatInt(secs, 10))
		}
	}
	if e.status == http.StatusMethodNotAllowed {
		h.Set("Allow", http.MethodPost)
	}
	var body []byte
	switch shape {
	case bodyHTML:
		h.Set("Content-Type", "text/html; charset=utf-8")
		body = htmlPage(e.status)
	case bodyEmpty:
		h.Set("Content-Type", "text/plain; charset=utf-8")
	case bodyUnwrapped:
		h.Set("Content-Type", "application/json")
		body, _ = json.Marshal(unwrappedError{Type: typ(), Message: e.message})
	case bodyMiMo:
		h.Set("Content-Type", "application/json")
		msg := e.message
		if e.code == codeRateLimitExceeded {
			msg = "Too many requests"
		}
		body, _ = json.Marshal(wrappedError{Error: errorObject{
			Code: strconv.Itoa(e.status), Message: msg, Param: e.param, Type: typ(),
		}})
	default:
		h.Set("Content-Type", "application/json")
		body, _ = json.Marshal(wrappedError{Error: errorObject{
			Code: e.code, Message: e.message, Param: e.param, Type: "error",
		}})
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

// htmlPage is what a reverse proxy (nginx) answers on its own.
func htmlPage(status int) []byte {
	line := fmt.Sprintf("%d %s", status, http.StatusText(status))
	return []byte("<html>\r\n<head><title>" + line + "</title></head>\r\n<body>\r\n<center><h1>" +
		line + "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
}

// faultError is the error of an injected HTTP fault.
func faultError(k faultKind, retryAfter time.Duration) *apiError {
	switch k {
	case faultHTTP429:
		return &apiError{status: 429, code: codeRateLimitExceeded, message: "Too many requests, rate limit exceeded. Please retry later.", retryAfter: retryAfter}
	case faultHTTP500:
		return &apiError{status: 500, code: codeInternalError, message: "The server had an error while processing your request. Please retry later."}
	case faultHTTP502:
		return &apiError{status: 502, code: codeInternalError, message: "Bad gateway.", fixed: true, shape: bodyHTML}
	case faultHTTP421:
		return contentFiltered()
	case faultHTTP451:
		return &apiError{status: 451, code: "unavailable_for_legal_reasons", message: "Unavailable For Legal Reasons.", fixed: true, shape: bodyHTML}
	default:
		return &apiError{status: 503, code: codeServiceUnavailable, message: "The service is temporarily unavailable due to high load. Please retry later."}
	}
}
