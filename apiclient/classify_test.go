package apiclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
		{421, ClassTerminal, ReasonContentFiltered, false},
		{451, ClassTerminal, ReasonRegionBlocked, true},
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
		504: "gateway_timeout", 418: "http_418", 599: "http_599", 421: "content_filter", 451: "unavailable_for_legal_reasons",
	}
	for status, code := range want {
		if got := DefaultErrorCode(status); got != code {
			t.Errorf("DefaultErrorCode(%d) = %q, want %q", status, got, code)
		}
	}
}

// The bodies below are the shapes docs/mimo-api.md records, or the mock's
// stand-ins where the real one is not public.
const (
	bodyQuota429   = `{"error":{"code":"429","message":"The quota of Token Plan has been exhausted, please upgrade the package or switch to pay-as-you-go API.","type":"limitation"}}`
	bodyRate429    = `{"error":{"code":"429","message":"Too many requests","type":"limitation"}}`
	bodyFilter421  = `{"error":{"code":"421","message":"The content you entered is high risk and has been blocked.","type":"content_filter"}}`
	bodyFunds402   = `{"type":"server_error","message":"Upstream request failed: Insufficient account funds"}`
	bodyIllegal403 = `{"error":{"code":"403","message":"Illegal access","type":"illegal_access"}}`
	bodyParam400   = `{"error":{"code":"400","message":"Param Incorrect","param":"The reasoning_content in the thinking mode must be passed back to the API.","type":""}}`
	bodyModel400   = `{"error":{"code":"400","message":"Unsupported model mimo-v2-pro","type":""}}`
	html451        = "<html>\r\n<head><title>451 Unavailable For Legal Reasons</title></head>\r\n<body>\r\n<center><h1>451 Unavailable For Legal Reasons</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

func TestClassifyBody(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        Class
		why         Reason
		pause       bool
	}{
		{"rate limit", 429, "application/json", bodyRate429, ClassRetryable, ReasonRateLimited, false},
		{"quota by message", 429, "application/json", bodyQuota429, ClassRetryable, ReasonQuotaExhausted, false},
		{"quota in Chinese", 429, "application/json", `{"error":{"code":"429","message":"Token Plan 额度已用完","type":"limitation"}}`, ClassRetryable, ReasonQuotaExhausted, false},
		{"quota by code", 429, "application/json", `{"error":{"code":"insufficient_quota","message":"You exceeded your current limit.","type":"insufficient_quota"}}`, ClassRetryable, ReasonQuotaExhausted, false},
		{"quota by type", 429, "application/json", `{"error":{"code":"429","message":"Try later.","type":"quota_exceeded"}}`, ClassRetryable, ReasonQuotaExhausted, false},
		{"rate limit page", 429, "text/html", "<html><body>Too Many Requests</body></html>", ClassRetryable, ReasonRateLimited, false},
		{"content filter", 421, "application/json", bodyFilter421, ClassTerminal, ReasonContentFiltered, false},
		{"content filter without body", 421, "", "", ClassTerminal, ReasonContentFiltered, false},
		{"funds without wrapper", 402, "application/json", bodyFunds402, ClassTerminal, ReasonPaymentRequired, true},
		{"illegal access", 403, "application/json", bodyIllegal403, ClassTerminal, ReasonPermissionDenied, true},
		{"param incorrect", 400, "application/json", bodyParam400, ClassTerminal, ReasonBadRequest, false},
		{"unsupported model", 400, "application/json", bodyModel400, ClassTerminal, ReasonBadRequest, false},
		{"html 451", 451, "text/html", html451, ClassTerminal, ReasonRegionBlocked, true},
		{"json 451", 451, "application/json", `{"error":{"message":"blocked"}}`, ClassTerminal, ReasonRegionBlocked, true},
		{"html 404 from a proxy", 404, "text/html", "<html><body>404 Not Found</body></html>", ClassTerminal, ReasonProxyError, true},
		{"waf 403 page", 403, "text/html", "<html>Forbidden: request blocked</html>", ClassTerminal, ReasonProxyError, true},
		{"plain text 400", 400, "text/plain", "Bad Request", ClassTerminal, ReasonProxyError, true},
		{"html 413 is this request's size", 413, "text/html", "<html>413 Request Entity Too Large</html>", ClassTerminal, ReasonTooLarge, false},
		{"html 431 is this request's headers", 431, "text/html", "<html>431</html>", ClassTerminal, ReasonClientError, false},
		{"truncated json is not a proxy", 400, "application/json", `{"error":{"code":"400","mess`, ClassTerminal, ReasonBadRequest, false},
		{"empty body is not a proxy", 400, "", "", ClassTerminal, ReasonBadRequest, false},
		{"html 503", 503, "text/html", "<html>503</html>", ClassRetryable, ReasonServerError, false},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.contentType != "" {
			h.Set("Content-Type", tc.contentType)
		}
		e := newAPIError(tc.status, h, []byte(tc.body), testKey, time.Now())
		c := Classify(fmt.Errorf("job 1: %w", e))
		if c.Class != tc.want || c.Reason != tc.why || c.PauseLane != tc.pause || c.StatusCode != tc.status {
			t.Errorf("%s: Classify = %s/%s/pause=%v, want %s/%s/pause=%v", tc.name, c.Class, c.Reason, c.PauseLane, tc.want, tc.why, tc.pause)
		}
	}
}

func TestParamInErrorString(t *testing.T) {
	t.Parallel()
	e := newAPIError(400, http.Header{"X-Request-Id": {"r1"}}, []byte(bodyParam400), testKey, time.Now())
	want := "mimo api: 400 invalid_request: Param Incorrect (param: The reasoning_content in the thinking mode must be passed back to the API.) (request_id r1)"
	if e.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", e.Error(), want)
	}
}
