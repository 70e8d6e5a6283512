package apiclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("job 7: %w", err) }
	cases := []struct {
		name  string
		err   error
		want  Class
		why   Reason
		pause bool
	}{
		{"nil", nil, ClassNone, "", false},
		{"canceled", context.Canceled, ClassNone, ReasonCanceled, false},
		{"deadline", wrap(context.DeadlineExceeded), ClassNone, ReasonCanceled, false},
		{"caller canceled in transport", &TransportError{Op: "send request", Err: context.Canceled}, ClassNone, ReasonCanceled, false},
		{"attempt timeout", &TransportError{Op: "send request", Err: fmt.Errorf("%w after 5m0s", ErrAttemptTimeout)}, ClassRetryable, ReasonTimeout, false},
		{"os deadline", &TransportError{Op: "read response body", Err: os.ErrDeadlineExceeded}, ClassRetryable, ReasonTimeout, false},
		{"dns", &TransportError{Op: "send request", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}}, ClassRetryable, ReasonDNS, false},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", IsTimeout: true}, ClassRetryable, ReasonTimeout, false},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ClassRetryable, ReasonConnection, false},
		{"reset", wrap(syscall.ECONNRESET), ClassRetryable, ReasonConnection, false},
		{"eof", &TransportError{Op: "send request", Err: io.EOF}, ClassRetryable, ReasonConnection, false},
		{"bare eof", io.ErrUnexpectedEOF, ClassRetryable, ReasonConnection, false},
		{"unknown authority", &TransportError{Op: "send request", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, ClassTerminal, ReasonTLS, false},
		{"hostname", x509.HostnameError{Host: "api.example"}, ClassTerminal, ReasonTLS, false},
		{"expired", wrap(x509.CertificateInvalidError{Reason: x509.Expired}), ClassTerminal, ReasonTLS, false},
		{"not tls", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ClassTerminal, ReasonTLS, false},
		{"validation", wrap(&ValidationError{Field: "model", Reason: "is required"}), ClassTerminal, ReasonValidation, false},
		{"malformed", &MalformedResponseError{StatusCode: 200, Reason: "empty body"}, ClassRetryable, ReasonMalformedResponse, false},
		{"too large", &ResponseTooLargeError{StatusCode: 200, Limit: 10}, ClassTerminal, ReasonResponseTooLarge, false},
		{"unknown", errors.New("redis: connection pool timeout"), ClassRetryable, ReasonUnknown, false},
		// An API error wins over a context error joined to it: the server answered.
		{"api error and cancel", errors.Join(&APIError{StatusCode: 401}, context.Canceled), ClassTerminal, ReasonAuthentication, true},
	}
	for _, tc := range cases {
		c := Classify(tc.err)
		if c.Class != tc.want || c.Reason != tc.why || c.PauseLane != tc.pause {
			t.Errorf("%s: Classify(%v) = %s/%s/pause=%v, want %s/%s/pause=%v", tc.name, tc.err, c.Class, c.Reason, c.PauseLane, tc.want, tc.why, tc.pause)
		}
		if c.Retryable() != (tc.want == ClassRetryable) || c.Terminal() != (tc.want == ClassTerminal) {
			t.Errorf("%s: Retryable/Terminal disagree with Class", tc.name)
		}
	}
}

func TestClassifyStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		want   Class
		why    Reason
		pause  bool
	}{
		{301, ClassTerminal, ReasonRedirect, false},
		{400, ClassTerminal, ReasonBadRequest, false},
		{401, ClassTerminal, ReasonAuthentication, true},
		{402, ClassTerminal, ReasonPaymentRequired, true},
		{403, ClassTerminal, ReasonPermissionDenied, true},
		{404, ClassTerminal, ReasonNotFound, false},
		{405, ClassTerminal, ReasonClientError, false},
		{408, ClassRetryable, ReasonRequestTimeout, false},
		{409, ClassRetryable, ReasonConflict, false},
		{413, ClassTerminal, ReasonTooLarge, false},
		{422, ClassTerminal, ReasonUnprocessable, false},
		{429, ClassRetryable, ReasonRateLimited, false},
		{451, ClassTerminal, ReasonClientError, false},
		{500, ClassRetryable, ReasonServerError, false},
		{501, ClassRetryable, ReasonServerError, false},
		{529, ClassRetryable, ReasonServerError, false},
	}
	for _, tc := range cases {
		err := &APIError{StatusCode: tc.status, Code: DefaultErrorCode(tc.status), RetryAfter: time.Second}
		c := Classify(fmt.Errorf("wrapped: %w", err))
		if c.Class != tc.want || c.Reason != tc.why || c.PauseLane != tc.pause || c.StatusCode != tc.status ||
			c.Code != err.Code || c.RetryAfter != time.Second {
			t.Errorf("Classify(%d) = %+v, want %s/%s/pause=%v", tc.status, c, tc.want, tc.why, tc.pause)
		}
	}
}

func TestDefaultErrorCode(t *testing.T) {
	t.Parallel()
	want := map[int]string{
		400: "invalid_request", 401: "authentication_failed", 402: "insufficient_balance", 403: "permission_denied",
		404: "not_found", 408: "request_timeout", 409: "conflict", 413: "request_too_large", 422: "unprocessable_entity",
		429: "rate_limit_exceeded", 500: "internal_error", 502: "bad_gateway", 503: "service_unavailable",
		504: "gateway_timeout", 418: "http_418", 599: "http_599",
	}
	for status, code := range want {
		if got := DefaultErrorCode(status); got != code {
			t.Errorf("DefaultErrorCode(%d) = %q, want %q", status, got, code)
		}
	}
}
