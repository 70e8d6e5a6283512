package apiclient

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNewAPIErrorShapes(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name                  string
		status                int
		body                  string
		code, raw, msg, param string
		requestID             string
	}{
		{"detail array", 422, `{"detail":[{"loc":["body","model"],"msg":"field required"}]}`,
			"unprocessable_entity", "", `[{"loc":["body","model"],"msg":"field required"}]`, "", ""},
		{"top-level string", 500, `"upstream exploded"`, "internal_error", "", "upstream exploded", "", ""},
		{"json without message", 503, `{"ok":false}`, "service_unavailable", "", "Service Unavailable", "", ""},
		{"json array", 599, `[1,2]`, "http_599", "", "[1,2]", "", ""},
		{"numeric code negative", 400, `{"error":{"code":-1,"message":"bad"}}`, "invalid_request", "-1", "bad", "", ""},
		{"param and request id in body", 400, `{"error":{"code":"invalid_value","message":"bad","param":"temperature","request_id":"body-req"}}`,
			"invalid_value", "invalid_value", "bad", "temperature", "body-req"},
		{"error object null", 502, `{"error":null,"message":"gateway"}`, "bad_gateway", "", "gateway", "", ""},
		{"control characters", 400, `{"error":{"message":"line1\r\n\tline2\u0000\u202eevil"}}`, "invalid_request", "", "line1 line2 evil", "", ""},
		{"long message", 400, `{"error":{"message":"` + strings.Repeat("é", 400) + `"}}`, "invalid_request", "", strings.Repeat("é", 250) + "…", "", ""},
		{"whitespace body", 500, " \n ", "internal_error", "", "empty error body", "", ""},
	}
	for _, tc := range cases {
		e := newAPIError(tc.status, http.Header{}, []byte(tc.body), testKey, now)
		if e.Code != tc.code || e.RawCode != tc.raw || e.Message != tc.msg || e.Param != tc.param || e.RequestID != tc.requestID {
			t.Errorf("%s: got code %q raw %q msg %q param %q id %q", tc.name, e.Code, e.RawCode, e.Message, e.Param, e.RequestID)
		}
	}
}

func TestNewAPIErrorRedactsKey(t *testing.T) {
	t.Parallel()
	// The key spelt with JSON escapes is still the key once decoded.
	escaped := strings.Replace(testKey, "s", `\u0073`, 1)
	bodies := []string{
		`{"error":{"code":"invalid_api_key","message":"Incorrect API key provided: ` + testKey + `."}}`,
		`{"error":{"code":"invalid_api_key","message":"Incorrect API key provided: ` + escaped + `."}}`,
		`{"error":"` + escaped + `","` + escaped + `":1}`,
		`<html>` + testKey + `</html>`,
	}
	for _, body := range bodies {
		h := http.Header{"X-Request-Id": {testKey}, "Content-Type": {"text/" + testKey}}
		e := newAPIError(401, h, []byte(body), testKey, time.Now())
		if strings.Contains(e.Error(), testKey) || strings.Contains(e.Type+e.Param+e.Code+e.RawCode, testKey) {
			t.Errorf("Error() leaks the key: %s", e.Error())
		}
		if e.Body != nil {
			if !json.Valid(e.Body) {
				t.Errorf("Body is not JSON after redaction: %s", e.Body)
			}
			if leaksKey(e.Body, testKey) {
				t.Errorf("Body leaks the key: %s", e.Body)
			}
		}
	}
}

// leaksKey reports whether key appears in the JSON b, raw or once decoded.
func leaksKey(b []byte, key string) bool {
	if bytes.Contains(b, []byte(key)) {
		return true
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return false
	}
	var walk func(any) bool
	walk = func(v any) bool {
		switch t := v.(type) {
		case string:
			return strings.Contains(t, key)
		case []any:
			for _, e := range t {
				if walk(e) {
					return true
				}
			}
		case map[string]any:
			for k, e := range t {
				if strings.Contains(k, key) || walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}

func TestRedactOddKeys(t *testing.T) {
	t.Parallel()
	cases := []struct{ s, key, want string }{
		{"a sk-1 b sk-1", "sk-1", "a [redacted] b [redacted]"},
		{"]]xx", "]x", ""},
		{"redacted act", "act", "reded "},
		{"nothing", "", "nothing"},
	}
	for _, tc := range cases {
		got := redact(tc.s, tc.key)
		if got != tc.want || (tc.key != "" && strings.Contains(got, tc.key)) {
			t.Errorf("redact(%q, %q) = %q, want %q", tc.s, tc.key, got, tc.want)
		}
	}
}

func TestErrorStrings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want string
	}{
		{&APIError{StatusCode: 429, Code: "rate_limit_exceeded", Message: "Too many requests", RequestID: "abc"},
			"mimo api: 429 rate_limit_exceeded: Too many requests (request_id abc)"},
		{&APIError{StatusCode: 500}, "mimo api: 500"},
		{&TransportError{Op: "send request", Err: ErrAttemptTimeout}, "mimo api: send request: attempt timed out"},
		{&TransportError{Op: "send request"}, "mimo api: send request: failed"},
		{&MalformedResponseError{StatusCode: 200, Reason: "missing choices", Size: 57, RequestID: "r1"},
			"mimo api: 200 malformed response: missing choices (57 bytes) (request_id r1)"},
		{&ResponseTooLargeError{StatusCode: 200, Limit: 1024}, "mimo api: 200 response body exceeds 1024 bytes"},
		{&ValidationError{Reason: "request is missing"}, "request is missing"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
