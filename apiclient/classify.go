package apiclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// Class says what a failure means for the caller.
type Class string

const (
	// ClassNone is no failure: a nil error, or the caller's own context ending
	// (cancellation or deadline), which says nothing about the request.
	ClassNone Class = ""
	// ClassRetryable failures may succeed on another attempt.
	ClassRetryable Class = "retryable"
	// ClassTerminal failures will fail again the same way; do not retry.
	ClassTerminal Class = "terminal"
)

// Reason is the machine-readable cause of a classified failure.
type Reason string

// Reasons returned by [Classify].
const (
	// Retryable.
	ReasonRateLimited       Reason = "rate_limited"       // 429
	ReasonQuotaExhausted    Reason = "quota_exhausted"    // 429 saying the Token Plan quota is used up
	ReasonRequestTimeout    Reason = "request_timeout"    // 408
	ReasonConflict          Reason = "conflict"           // 409
	ReasonServerError       Reason = "server_error"       // 5xx
	ReasonTimeout           Reason = "timeout"            // attempt or network timeout
	ReasonConnection        Reason = "connection"         // refused, reset, EOF, body cut short
	ReasonDNS               Reason = "dns"                // name resolution
	ReasonMalformedResponse Reason = "malformed_response" // unusable 2xx body
	ReasonUnknown           Reason = "unknown"            // an error this package does not know

	// Terminal.
	ReasonBadRequest       Reason = "bad_request"        // 400
	ReasonNotFound         Reason = "not_found"          // 404
	ReasonTooLarge         Reason = "too_large"          // 413
	ReasonUnprocessable    Reason = "unprocessable"      // 422
	ReasonClientError      Reason = "client_error"       // other 4xx
	ReasonRedirect         Reason = "redirect"           // 3xx, and any other non-2xx below 400
	ReasonAuthentication   Reason = "authentication"     // 401, pauses the lane
	ReasonPaymentRequired  Reason = "payment_required"   // 402, pauses the lane
	ReasonPermissionDenied Reason = "permission_denied"  // 403, pauses the lane
	ReasonContentFiltered  Reason = "content_filtered"   // 421, the content filter refused this request only
	ReasonRegionBlocked    Reason = "region_blocked"     // 451, pauses the lane
	ReasonProxyError       Reason = "proxy_error"        // a 4xx whose body is not JSON (a proxy's page), pauses the lane
	ReasonValidation       Reason = "validation"         // failed local validation, never sent
	ReasonResponseTooLarge Reason = "response_too_large" // 2xx body over MaxResponseBytes
	ReasonTLS              Reason = "tls"                // certificate not trusted, wrong host, not TLS

	// No failure.
	ReasonCanceled Reason = "canceled" // the caller's context ended
)

// Classification is what [Classify] makes of an error.
type Classification struct {
	// Class is retryable, terminal, or none (no failure).
	Class Class
	// Reason is the machine-readable cause; empty for a nil error.
	Reason Reason
	// PauseLane is true when every other request on the same model would fail the
	// same way (401, 402, 403, 451, a proxy's page): stop calling until the lane
	// is resumed.
	PauseLane bool
	// StatusCode is the HTTP status, or 0 when there was no response.
	StatusCode int
	// Code is the [APIError] code; empty for failures without an error body.
	Code string
	// RetryAfter is the wait the server asked for, or 0.
	RetryAfter time.Duration
}

// Retryable reports whether another attempt may succeed.
func (c Classification) Retryable() bool { return c.Class == ClassRetryable }

// Terminal reports whether the request will fail again the same way.
func (c Classification) Terminal() bool { return c.Class == ClassTerminal }

// Classify maps an error from [Client.Do] — or any error, wrapped or not — to
// the failure table of the mimoq contract. It branches on the HTTP status
// first, then on the body's documented code or type; message text is read in
// one place only, as a last resort: a 429 whose body gives no code telling a
// used-up Token Plan quota from a rate limit (see [ReasonQuotaExhausted]). context.Canceled and context.DeadlineExceeded anywhere
// in the chain are taken as the caller's own and give [ClassNone]; Do wraps its
// own attempt timeout in [ErrAttemptTimeout] instead, which is retryable. An
// error this package does not recognise is retryable with [ReasonUnknown]: the
// caller's attempt budget bounds it.
func Classify(err error) Classification {
	if err == nil {
		return Classification{}
	}
	var (
		ve  *ValidationError
		ae  *APIError
		tle *ResponseTooLargeError
		me  *MalformedResponseError
	)
	switch {
	case errors.As(err, &ve):
		return Classification{Class: ClassTerminal, Reason: ReasonValidation}
	case errors.As(err, &ae):
		return classifyAPIError(ae)
	case errors.As(err, &tle):
		return Classification{Class: ClassTerminal, Reason: ReasonResponseTooLarge, StatusCode: tle.StatusCode}
	case errors.As(err, &me):
		return Classification{Class: ClassRetryable, Reason: ReasonMalformedResponse, StatusCode: me.StatusCode}
	case errors.Is(err, ErrAttemptTimeout):
		return retryable(ReasonTimeout)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Classification{Class: ClassNone, Reason: ReasonCanceled}
	case isTLSConfigError(err):
		return Classification{Class: ClassTerminal, Reason: ReasonTLS}
	case isTimeout(err):
		return retryable(ReasonTimeout)
	}
	var (
		dnsErr *net.DNSError
		te     *TransportError
		opErr  *net.OpError
		errno  syscall.Errno
	)
	switch {
	case errors.As(err, &dnsErr):
		return retryable(ReasonDNS)
	case errors.As(err, &te), errors.As(err, &opErr), errors.As(err, &errno),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return retryable(ReasonConnection)
	}
	return retryable(ReasonUnknown)
}

func retryable(r Reason) Classification { return Classification{Class: ClassRetryable, Reason: r} }

// classifyAPIError refines the status table with what the body says.
func classifyAPIError(ae *APIError) Classification {
	c := classifyStatus(ae.StatusCode)
	c.Code = ae.Code
	c.RetryAfter = ae.RetryAfter
	switch {
	case ae.StatusCode == 429:
		if quotaExhausted(ae) {
			c.Reason = ReasonQuotaExhausted
		}
	case ae.NonJSON && c.Class == ClassTerminal && proxyPageMeansLane(ae.StatusCode):
		// The API answers in JSON; a page in its place comes from a proxy or
		// gateway in between (a captive portal, a WAF, a wrong base URL), and
		// it would answer every other call the same way.
		c.Reason, c.PauseLane = ReasonProxyError, true
	}
	return c
}

// proxyPageMeansLane reports whether a proxy's page with this 4xx status
// stands for the whole lane. 451 keeps its own reason; a proxy refusing one
// request for its size (413, 431) says nothing of the others.
func proxyPageMeansLane(status int) bool {
	switch status {
	case 413, 431, 451:
		return false
	}
	return status >= 400 && status < 500
}

// quotaCodes are the codes and types that say a quota is used up:
// OpenAI-compatible APIs send "insufficient_quota"; the others are spellings
// seen from gateways. MiMo documents no code of its own for it.
var quotaCodes = map[string]bool{
	"insufficient_quota": true,
	"quota_exceeded":     true,
	"quota_exhausted":    true,
}

// quotaExhausted reports whether a 429 says a quota is used up rather than
// that requests come too fast. MiMo documents both meanings under 429 (its
// error-code page: "Requests are too frequent, or the quota of Token Plan
// has been exhausted") with one body shape, code "429" and type "limitation",
// so after the code and type the message text is the last resort.
func quotaExhausted(ae *APIError) bool {
	if quotaCodes[strings.ToLower(ae.RawCode)] || quotaCodes[strings.ToLower(ae.Type)] {
		return true
	}
	msg := strings.ToLower(ae.Message)
	return strings.Contains(msg, "quota") || strings.Contains(msg, "额度")
}

// classifyStatus is the contract's table for a non-2xx status.
func classifyStatus(status int) Classification {
	c := Classification{Class: ClassTerminal, StatusCode: status}
	switch {
	case status == 429:
		c.Class, c.Reason = ClassRetryable, ReasonRateLimited
	case status == 408:
		c.Class, c.Reason = ClassRetryable, ReasonRequestTimeout
	case status == 409:
		c.Class, c.Reason = ClassRetryable, ReasonConflict
	case status >= 500:
		c.Class, c.Reason = ClassRetryable, ReasonServerError
	case status == 401:
		c.Reason, c.PauseLane = ReasonAuthentication, true
	case status == 402:
		c.Reason, c.PauseLane = ReasonPaymentRequired, true
	case status == 403:
		c.Reason, c.PauseLane = ReasonPermissionDenied, true
	case status == 421:
		c.Reason = ReasonContentFiltered
	case status == 451:
		c.Reason, c.PauseLane = ReasonRegionBlocked, true
	case status == 400:
		c.Reason = ReasonBadRequest
	case status == 404:
		c.Reason = ReasonNotFound
	case status == 413:
		c.Reason = ReasonTooLarge
	case status == 422:
		c.Reason = ReasonUnprocessable
	case status >= 400:
		c.Reason = ReasonClientError
	default:
		c.Reason = ReasonRedirect
	}
	return c
}

// isTLSConfigError reports a TLS failure that retrying cannot fix: an
// untrusted or invalid certificate, a host-name mismatch, or a server that does
// not speak TLS at all.
func isTLSConfigError(err error) bool {
	var (
		cve *tls.CertificateVerificationError
		uae x509.UnknownAuthorityError
		he  x509.HostnameError
		cie x509.CertificateInvalidError
		sre x509.SystemRootsError
		rhe tls.RecordHeaderError
	)
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &he) ||
		errors.As(err, &cie) || errors.As(err, &sre) || errors.As(err, &rhe) {
		return true
	}
	// net/http turns the tls.RecordHeaderError of an https:// URL pointing at a
	// plain-HTTP server into an untyped error; this is its fixed text.
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
