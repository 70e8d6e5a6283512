package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// errorShape is one way a server may write an error body.
type errorShape struct {
	name        string
	contentType string
	body        func(status int) string
	// wantCode is the expected Code ("" means DefaultErrorCode(status));
	// wantRawCode the expected RawCode.
	wantCode    string
	wantRawCode func(status int) string
	wantMessage func(status int, body string) string
	wantType    string
	wantParam   string
	wantBody    bool // APIError.Body is set
	nonJSON     bool // APIError.NonJSON is set: a proxy's page
}

func errorShapes() []errorShape {
	none := func(int) string { return "" }
	return []errorShape{
		{
			name:        "seed",
			contentType: "application/json",
			// The server echoes the key: it must come back redacted.
			body: func(int) string {
				return `{"error":{"code":"custom_code","message":"Incorrect API key provided: ` + testKey + `","type":"error","param":"model"}}`
			},
			wantCode:    "custom_code",
			wantRawCode: func(int) string { return "custom_code" },
			wantMessage: func(int, string) string { return "Incorrect API key provided: [redacted]" },
			wantType:    "error",
			wantParam:   "model",
			wantBody:    true,
		},
		{
			name:        "mimo string code",
			contentType: "application/json; charset=utf-8",
			body: func(status int) string {
				return `{"error":{"code":"` + strconv.Itoa(status) + `","message":"Too many requests","type":"limitation","param":null}}`
			},
			wantRawCode: strconv.Itoa,
			wantMessage: func(int, string) string { return "Too many requests" },
			wantType:    "limitation",
			wantBody:    true,
		},
		{
			name:        "mimo number code",
			contentType: "application/json",
			body: func(status int) string {
				return `{"error":{"code":` + strconv.Itoa(status) + `,"message":"Too many requests","type":"limitation"}}`
			},
			wantRawCode: strconv.Itoa,
			wantMessage: func(int, string) string { return "Too many requests" },
			wantType:    "limitation",
			wantBody:    true,
		},
		{
			name:        "unwrapped",
			contentType: "application/json",
			body: func(int) string {
				return `{"type":"server_error","message":"Upstream request failed: Insufficient account funds"}`
			},
			wantRawCode: none,
			wantMessage: func(int, string) string { return "Upstream request failed: Insufficient account funds" },
			wantType:    "server_error",
			wantBody:    true,
		},
		{
			name:        "error string",
			contentType: "application/json",
			body:        func(int) string { return `{"error":"something\nbroke"}` },
			wantRawCode: none,
			wantMessage: func(int, string) string { return "something broke" },
			wantBody:    true,
		},
		{
			name:        "html",
			contentType: "text/html",
			body: func(status int) string {
				return "<html><head><title>" + strconv.Itoa(status) + " Bad Gateway</title></head><body><center>nginx</center></body></html>\n"
			},
			wantRawCode: none,
			wantMessage: func(_ int, body string) string {
				return fmt.Sprintf("non-JSON error body (text/html, %d bytes)", len(body))
			},
			nonJSON: true,
		},
		{
			name:        "empty",
			body:        func(int) string { return "" },
			wantRawCode: none,
			wantMessage: func(int, string) string { return "empty error body" },
		},
		{
			name:        "truncated json",
			contentType: "application/json",
			body:        func(int) string { return `{"error":{"code":"rate_limit_exc` },
			wantRawCode: none,
			wantMessage: func(_ int, body string) string {
				return fmt.Sprintf("malformed JSON error body (application/json, %d bytes)", len(body))
			},
		},
	}
}

// wantClass is the contract's failure table for a non-2xx status and a body
// that is, or is not, a proxy's page.
func wantClass(status int, proxyPage bool) (Class, Reason, bool) {
	if proxyPage && status >= 400 && status < 500 {
		switch status {
		case 408, 409, 429: // retryable whoever says it
		case 413, 451: // about this request, or a reason of its own
		default:
			return ClassTerminal, ReasonProxyError, true
		}
	}
	switch status {
	case 400:
		return ClassTerminal, ReasonBadRequest, false
	case 401:
		return ClassTerminal, ReasonAuthentication, true
	case 402:
		return ClassTerminal, ReasonPaymentRequired, true
	case 403:
		return ClassTerminal, ReasonPermissionDenied, true
	case 404:
		return ClassTerminal, ReasonNotFound, false
	case 408:
		return ClassRetryable, ReasonRequestTimeout, false
	case 409:
		return ClassRetryable, ReasonConflict, false
	case 413:
		return ClassTerminal, ReasonTooLarge, false
	case 418:
		return ClassTerminal, ReasonClientError, false
	case 421:
		return ClassTerminal, ReasonContentFiltered, false
	case 451:
		return ClassTerminal, ReasonRegionBlocked, true
	case 422:
		return ClassTerminal, ReasonUnprocessable, false
	case 429:
		return ClassRetryable, ReasonRateLimited, false
	case 500, 502, 503, 504, 599:
		return ClassRetryable, ReasonServerError, false
	}
	panic("no expectation for status " + strconv.Itoa(status))
}

func TestDoStatusTimesBodyShape(t *testing.T) {
	t.Parallel()
	statuses := []int{200, 400, 401, 402, 403, 404, 408, 409, 413, 418, 421, 422, 429, 451, 500, 502, 503, 504, 599}
	for _, status := range statuses {
		for _, shape := range errorShapes() {
			t.Run(fmt.Sprintf("%d/%s", status, shape.name), func(t *testing.T) {
				t.Parallel()
				body := shape.body(status)
				requestID := fmt.Sprintf("req-%d-%s", status, strings.ReplaceAll(shape.name, " ", "-"))
				b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
					if shape.contentType != "" {
						w.Header().Set("Content-Type", shape.contentType)
					}
					w.Header().Set("X-Request-Id", requestID)
					w.Header().Set("Retry-After", "7")
					w.WriteHeader(status)
					_, _ = io.WriteString(w, body)
				})
				resp, err := b.client.Do(ctxT(t), testRequest())
				if resp != nil {
					t.Fatalf("Do returned a response with error %v", err)
				}
				checkSecretFree(t, err)
				c := Classify(err)
				if c.StatusCode != status {
					t.Errorf("StatusCode = %d, want %d", c.StatusCode, status)
				}

				if status == 200 {
					// None of these shapes is a usable completion.
					var me *MalformedResponseError
					if !errors.As(err, &me) {
						t.Fatalf("err = %T %v, want *MalformedResponseError", err, err)
					}
					if me.RequestID != requestID {
						t.Errorf("RequestID = %q, want %q", me.RequestID, requestID)
					}
					if c.Class != ClassRetryable || c.Reason != ReasonMalformedResponse || c.PauseLane {
						t.Errorf("Classify = %+v, want retryable malformed_response", c)
					}
					return
				}

				var ae *APIError
				if !errors.As(err, &ae) {
					t.Fatalf("err = %T %v, want *APIError", err, err)
				}
				class, reason, pause := wantClass(status, shape.nonJSON)
				if c.Class != class || c.Reason != reason || c.PauseLane != pause {
					t.Errorf("Classify = %s/%s/pause=%v, want %s/%s/pause=%v", c.Class, c.Reason, c.PauseLane, class, reason, pause)
				}
				wantCode := shape.wantCode
				if wantCode == "" {
					wantCode = DefaultErrorCode(status)
				}
				if ae.Code != wantCode || c.Code != wantCode {
					t.Errorf("Code = %q (classified %q), want %q", ae.Code, c.Code, wantCode)
				}
				if want := shape.wantRawCode(status); ae.RawCode != want {
					t.Errorf("RawCode = %q, want %q", ae.RawCode, want)
				}
				if want := shape.wantMessage(status, body); ae.Message != want {
					t.Errorf("Message = %q, want %q", ae.Message, want)
				}
				if ae.Type != shape.wantType || ae.Param != shape.wantParam || ae.NonJSON != shape.nonJSON {
					t.Errorf("Type, Param, NonJSON = %q, %q, %v; want %q, %q, %v", ae.Type, ae.Param, ae.NonJSON, shape.wantType, shape.wantParam, shape.nonJSON)
				}
				if ae.RequestID != requestID {
					t.Errorf("RequestID = %q, want %q", ae.RequestID, requestID)
				}
				if ae.RetryAfter != 7*time.Second || c.RetryAfter != 7*time.Second {
					t.Errorf("RetryAfter = %s (classified %s), want 7s", ae.RetryAfter, c.RetryAfter)
				}
				if shape.wantBody {
					if !json.Valid(ae.Body) {
						t.Errorf("Body = %q, want valid JSON", ae.Body)
					}
					if bytes.Contains(ae.Body, []byte(testKey)) {
						t.Errorf("Body contains the API key: %s", ae.Body)
					}
				} else if ae.Body != nil {
					t.Errorf("Body = %q, want nil for a non-JSON body", ae.Body)
				}
				param := ""
				if shape.wantParam != "" {
					param = " (param: " + shape.wantParam + ")"
				}
				wantErr := fmt.Sprintf("mimo api: %d %s: %s%s (request_id %s)", status, wantCode, ae.Message, param, requestID)
				if err.Error() != wantErr {
					t.Errorf("Error() = %q, want %q", err.Error(), wantErr)
				}
			})
		}
	}
}

func TestDoSuccess(t *testing.T) {
	t.Parallel()
	body := `{"id":"chatcmpl-42","object":"chat.completion","created":1712345678,"model":"mimo-v2.6-flash",
"choices":[{"index":0,"message":{"role":"assistant","content":"It is 42.",
 "reasoning_content":"Let me think about it.",
 "tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":\"answer\"}"}}],
 "audio":{"id":"audio_1","data":"UklGRiQAAABXQVZF","expires_at":1712349278,"transcript":"It is 42."}},
 "finish_reason":"tool_calls"}],
"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,
 "completion_tokens_details":{"reasoning_tokens":20},"prompt_tokens_details":{"cached_tokens":8}}}`
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Request-Id", "req-abc")
		_, _ = io.WriteString(w, body)
	})
	resp, err := b.client.Do(ctxT(t), testRequest())
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if Classify(err).Class != ClassNone {
		t.Errorf("Classify(nil) = %+v", Classify(err))
	}
	if string(resp.Raw) != body {
		t.Errorf("Raw differs from the body sent")
	}
	if resp.StatusCode != 200 || resp.RequestID != "req-abc" || resp.ID != "chatcmpl-42" || resp.Model != "mimo-v2.6-flash" || resp.Created != 1712345678 {
		t.Errorf("resp = %+v", resp)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("len(Choices) = %d", len(resp.Choices))
	}
	ch := resp.Choices[0]
	m := ch.Message
	if ch.FinishReason != "tool_calls" || m.Content != "It is 42." || m.ReasoningContent != "Let me think about it." {
		t.Errorf("choice = %+v", ch)
	}
	if len(m.ToolCalls) != 1 || m.ToolCalls[0].ID != "call_1" || m.ToolCalls[0].Function.Name != "lookup" || m.ToolCalls[0].Function.Arguments != `{"q":"answer"}` {
		t.Errorf("ToolCalls = %+v", m.ToolCalls)
	}
	if m.Audio == nil || m.Audio.Data != "UklGRiQAAABXQVZF" || m.Audio.ExpiresAt != 1712349278 || m.Audio.Transcript != "It is 42." {
		t.Errorf("Audio = %+v", m.Audio)
	}
	u := resp.Usage
	if u.PromptTokens != 12 || u.CompletionTokens != 30 || u.TotalTokens != 42 ||
		u.CompletionTokensDetails == nil || u.CompletionTokensDetails.ReasoningTokens != 20 ||
		u.PromptTokensDetails == nil || u.PromptTokensDetails.CachedTokens != 8 {
		t.Errorf("Usage = %+v", u)
	}
}

func TestDoRequestIDFallsBackToBodyID(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	resp, err := b.client.Do(ctxT(t), testRequest())
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if resp.RequestID != "chatcmpl-1" {
		t.Errorf("RequestID = %q, want the body id", resp.RequestID)
	}
}

func TestDoMalformedSuccessBodies(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ body, reason string }{
		"empty":            {"", "empty body"},
		"not json":         {"OK", "not JSON"},
		"truncated":        {`{"id":"x","choices":[{"index":0`, "invalid or truncated JSON"},
		"array":            {`[1,2]`, "not a JSON object"},
		"null":             {`null`, "not a JSON object"},
		"no choices":       {`{"id":"x"}`, "missing choices"},
		"error object":     {`{"error":{"code":"overloaded","message":"try later"}}`, "missing choices (error: overloaded: try later)"},
		"null choices":     {`{"id":"x","choices":null}`, "missing choices"},
		"string choices":   {`{"id":"x","choices":"nope"}`, "missing choices"},
		"wrong-type field": {`{"id":"x","created":"yesterday","choices":[]}`, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, tc.body) })
			resp, err := b.client.Do(ctxT(t), testRequest())
			if tc.reason == "" {
				// A stray field type does not throw away a paid-for answer.
				if err != nil || resp == nil || string(resp.Raw) != tc.body {
					t.Fatalf("Do = %v, %v; want the response", resp, err)
				}
				return
			}
			var me *MalformedResponseError
			if !errors.As(err, &me) || me.Reason != tc.reason || me.Size != len(tc.body) {
				t.Fatalf("err = %v, want malformed response %q", err, tc.reason)
			}
			if c := Classify(err); c.Class != ClassRetryable || c.Reason != ReasonMalformedResponse {
				t.Errorf("Classify = %+v", c)
			}
		})
	}
}

func TestDoResponseTooLarge(t *testing.T) {
	t.Parallel()
	big := `{"choices":[],"pad":"` + strings.Repeat("x", 5000) + `"}`
	for _, status := range []int{200, 500} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(status)
				_, _ = io.WriteString(w, big)
			}, func(o *Options) { o.MaxResponseBytes = 1000 })
			_, err := b.client.Do(ctxT(t), testRequest())
			c := Classify(err)
			if status == 200 {
				var tl *ResponseTooLargeError
				if !errors.As(err, &tl) || tl.Limit != 1000 {
					t.Fatalf("err = %v, want *ResponseTooLargeError", err)
				}
				if c.Class != ClassTerminal || c.Reason != ReasonResponseTooLarge {
					t.Errorf("Classify = %+v", c)
				}
				return
			}
			// An oversized error body still reports its status.
			var ae *APIError
			if !errors.As(err, &ae) || ae.StatusCode != 500 || c.Class != ClassRetryable {
				t.Fatalf("err = %v (%+v), want a retryable 500 APIError", err, c)
			}
			if ae.Message != "malformed JSON error body (text/plain, 1000 bytes)" {
				t.Errorf("Message = %q", ae.Message)
			}
		})
	}
}

func TestDoRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/v1/chat/completions", http.StatusFound)
	})
	_, err := b.client.Do(ctxT(t), testRequest())
	c := Classify(err)
	if c.Class != ClassTerminal || c.Reason != ReasonRedirect || c.StatusCode != 302 || c.Code != "http_302" {
		t.Errorf("Classify = %+v, want terminal redirect 302", c)
	}
	if b.count() != 1 {
		t.Errorf("server saw %d requests, want 1", b.count())
	}
}

func TestDoSendsHeaders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		style            AuthStyle
		wantAuth, wantAK string
	}{
		{"", "Bearer " + testKey, ""},
		{AuthBearer, "Bearer " + testKey, ""},
		{AuthAPIKey, "", testKey},
	}
	for _, tc := range cases {
		t.Run(string(tc.style), func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil, func(o *Options) { o.AuthStyle = tc.style })
			_, err := b.client.Do(ctxT(t), testRequest(),
				WithHeader("X-Mimoq-Job-Id", "job-1"),
				WithHeader("X-Mimoq-Attempt", "3"),
				WithHeader("Authorization", "Bearer stolen"),
				WithHeader("Content-Type", "text/plain"),
				nil,
			)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			h := b.last(t).header
			if got := h.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tc.wantAuth)
			}
			if got := h.Get("Api-Key"); got != tc.wantAK {
				t.Errorf("api-key = %q, want %q", got, tc.wantAK)
			}
			want := map[string]string{
				"X-Mimoq-Job-Id":  "job-1",
				"X-Mimoq-Attempt": "3",
				"Content-Type":    "application/json",
				"Accept":          "application/json",
				"User-Agent":      "mimoq/" + moduleVersion(),
			}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestDoPostsToChatCompletions(t *testing.T) {
	t.Parallel()
	var path, method string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, method = r.URL.Path, r.Method
		_, _ = io.WriteString(w, okBody)
	}))
	t.Cleanup(srv.Close)
	for _, base := range []string{srv.URL + "/v1", srv.URL + "/v1/", srv.URL + "/v1//"} {
		c, err := New(Options{BaseURL: base, APIKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Do(ctxT(t), testRequest()); err != nil {
			t.Fatalf("Do: %v", err)
		}
		if path != "/v1/chat/completions" || method != http.MethodPost {
			t.Errorf("base %q: %s %s, want POST /v1/chat/completions", base, method, path)
		}
	}
}

func TestDoRejectsBadHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, opt := range []CallOption{WithHeader("Bad Header", "x"), WithHeader("X-Ok", "line\r\nInjected: 1"), WithHeader("", "x")} {
		_, err := b.client.Do(ctxT(t), testRequest(), opt)
		var ve *ValidationError
		if !errors.As(err, &ve) || Classify(err).Reason != ReasonValidation {
			t.Errorf("err = %v, want a validation error", err)
		}
	}
	if b.count() != 0 {
		t.Errorf("server saw %d requests, want none", b.count())
	}
}

func TestDoValidatesBeforeSending(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	req := NewRequest("gpt-4", NewMessage("user", bodyMarker))
	_, err := b.client.Do(ctxT(t), req)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "model" {
		t.Fatalf("err = %v, want a model validation error", err)
	}
	if c := Classify(err); c.Class != ClassTerminal || c.Reason != ReasonValidation || c.PauseLane {
		t.Errorf("Classify = %+v, want terminal validation", c)
	}
	if _, err := b.client.Do(ctxT(t), nil); Classify(err).Reason != ReasonValidation {
		t.Errorf("nil request: err = %v", err)
	}
	if b.count() != 0 {
		t.Errorf("server saw %d requests, want none", b.count())
	}
	checkSecretFree(t, err)
}

// TestDoWithModels: a call may validate against another catalogue than the
// client's (the live one): a model only it lists is sent, and a limit it
// sets is checked.
func TestDoWithModels(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"new-model","choices":[]}`)
	})
	live := Models{{Name: "new-model", MaxOutputTokens: 10}}
	req := NewRequest("new-model", NewMessage("user", "hi"))
	if _, err := b.client.Do(ctxT(t), req); Classify(err).Reason != ReasonValidation {
		t.Fatalf("without WithModels: err = %v, want a validation error", err)
	}
	if _, err := b.client.Do(ctxT(t), req, WithModels(live)); err != nil {
		t.Fatalf("WithModels: %v", err)
	}
	n := 11
	req.MaxTokens = &n
	if _, err := b.client.Do(ctxT(t), req, WithModels(live)); Classify(err).Reason != ReasonValidation {
		t.Errorf("max_tokens above the call's catalogue: err = %v", err)
	}
	if b.count() != 1 {
		t.Errorf("server saw %d requests, want 1", b.count())
	}
}

// Transport failures, with real sockets.

func TestDoConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c, err := New(Options{BaseURL: "http://" + addr + "/v1", APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(ctxT(t), testRequest())
	var te *TransportError
	if !errors.As(err, &te) || te.Op != "send request" {
		t.Fatalf("err = %T %v, want *TransportError", err, err)
	}
	if cl := Classify(err); cl.Class != ClassRetryable || cl.Reason != ReasonConnection || cl.StatusCode != 0 {
		t.Errorf("Classify = %+v, want retryable connection", cl)
	}
	checkSecretFree(t, err)
}

// hijack returns a handler that takes over the connection and runs fn on it.
func hijack(t *testing.T, fn func(net.Conn)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		fn(conn)
	}
}

func TestDoConnectionDropped(t *testing.T) {
	t.Parallel()
	cases := map[string]func(net.Conn){
		"closed before response": func(c net.Conn) { _ = c.Close() },
		"reset before response": func(c net.Conn) {
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		},
		"closed mid-headers": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Ty")
			_ = c.Close()
		},
		"closed mid-body": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":\"chatcmpl-1\",\"choi")
			_ = c.Close()
		},
		"reset mid-body": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"id\":")
			time.Sleep(20 * time.Millisecond)
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		},
		"chunked body cut": func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"id\":\"chatcmp")
			_ = c.Close()
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, hijack(t, fn))
			_, err := b.client.Do(ctxT(t), testRequest())
			var te *TransportError
			if !errors.As(err, &te) {
				t.Fatalf("err = %T %v, want *TransportError", err, err)
			}
			if c := Classify(err); c.Class != ClassRetryable || c.Reason != ReasonConnection {
				t.Errorf("Classify(%v) = %+v, want retryable connection", err, c)
			}
			checkSecretFree(t, err)
		})
	}
}

func TestDoTruncatedSuccessBody(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, okBody[:40])
	})
	_, err := b.client.Do(ctxT(t), testRequest())
	var te *TransportError
	if !errors.As(err, &te) || te.Op != "read response body" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want a body read error wrapping io.ErrUnexpectedEOF", err)
	}
	if c := Classify(err); c.Class != ClassRetryable || c.Reason != ReasonConnection {
		t.Errorf("Classify = %+v, want retryable connection", c)
	}
}

func TestDoAttemptTimeout(t *testing.T) {
	t.Parallel()
	cases := map[string]http.HandlerFunc{
		"no headers": func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		"body stalls": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, `{"id":`)
			_ = http.NewResponseController(w).Flush()
			<-r.Context().Done()
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, h, func(o *Options) { o.RequestTimeout = 100 * time.Millisecond })
			_, err := b.client.Do(ctxT(t), testRequest())
			if !errors.Is(err, ErrAttemptTimeout) {
				t.Fatalf("err = %v, want ErrAttemptTimeout", err)
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				t.Errorf("err = %v matches a context error: it would read as the caller's own", err)
			}
			if c := Classify(err); c.Class != ClassRetryable || c.Reason != ReasonTimeout {
				t.Errorf("Classify = %+v, want retryable timeout", c)
			}
			checkSecretFree(t, err)
		})
	}
}

func TestDoCustomHTTPClientTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		func(o *Options) { o.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond} })
	_, err := b.client.Do(ctxT(t), testRequest())
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v matches context.DeadlineExceeded", err)
	}
	if c := Classify(err); c.Class != ClassRetryable || c.Reason != ReasonTimeout {
		t.Errorf("Classify(%v) = %+v, want retryable timeout", err, c)
	}
}

func TestDoResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		func(o *Options) { o.ResponseHeaderTimeout = 100 * time.Millisecond })
	_, err := b.client.Do(ctxT(t), testRequest())
	if c := Classify(err); c.Class != ClassRetryable || c.Reason != ReasonTimeout {
		t.Errorf("Classify(%v) = %+v, want retryable timeout", err, c)
	}
}

func TestDoCallerContextEnds(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		ctx  func(context.Context) (context.Context, context.CancelFunc)
		want error
	}{
		"canceled": {func(p context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(p)
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		"deadline": {func(p context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(p, 100*time.Millisecond)
		}, context.DeadlineExceeded},
		"canceled with cause": {func(p context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancelCause(p)
			time.AfterFunc(100*time.Millisecond, func() { cancel(errors.New("shutting down")) })
			return ctx, func() { cancel(nil) }
		}, context.Canceled},
		"canceled before": {func(p context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(p)
			cancel()
			return ctx, cancel
		}, context.Canceled},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
			ctx, cancel := tc.ctx(ctxT(t))
			defer cancel()
			_, err := b.client.Do(ctx, testRequest())
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if errors.Is(err, ErrAttemptTimeout) {
				t.Errorf("err = %v reads as an attempt timeout", err)
			}
			if c := Classify(err); c.Class != ClassNone || c.Reason != ReasonCanceled {
				t.Errorf("Classify = %+v, want none/canceled", c)
			}
		})
	}
}

func TestDoTLS(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, okBody)
	}))
	// The failed handshakes are the point of the test: keep them out of its output.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plainSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, okBody)
	}))
	t.Cleanup(plainSrv.Close)
	_, port, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())

	cases := map[string]struct {
		opts       Options
		wantReason Reason
	}{
		"self-signed, default client": {Options{BaseURL: tlsSrv.URL}, ReasonTLS},
		"host name mismatch":          {Options{BaseURL: "https://localhost:" + port, HTTPClient: tlsSrv.Client()}, ReasonTLS},
		"plain HTTP server":           {Options{BaseURL: strings.Replace(plainSrv.URL, "http:", "https:", 1)}, ReasonTLS},
		"trusted":                     {Options{BaseURL: tlsSrv.URL, HTTPClient: tlsSrv.Client()}, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.opts.APIKey = testKey
			c, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Do(ctxT(t), testRequest())
			cl := Classify(err)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				return
			}
			if cl.Class != ClassTerminal || cl.Reason != tc.wantReason || cl.PauseLane {
				t.Errorf("Classify(%v) = %+v, want terminal %s", err, cl, tc.wantReason)
			}
			checkSecretFree(t, err)
		})
	}
}

// TestDoReusesConnections checks that bodies are drained and closed: every
// call after the first reuses the one connection.
func TestDoReusesConnections(t *testing.T) {
	t.Parallel()
	var conns, statusFlip int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		statusFlip++
		if statusFlip%2 == 0 {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, `{"error":{"code":"service_unavailable","message":"busy"}}`)
			return
		}
		_, _ = io.WriteString(w, okBody)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns++
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		_, _ = c.Do(ctxT(t), testRequest())
	}
	if conns != 1 {
		t.Errorf("the client opened %d connections for 6 sequential calls, want 1", conns)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		opts Options
		want string
	}{
		"no key":          {Options{}, "apiclient: api key is required"},
		"key with space":  {Options{APIKey: testKey + " \n"}, "apiclient: api key must be printable ASCII without spaces"},
		"bad scheme":      {Options{APIKey: testKey, BaseURL: "ftp://x"}, `apiclient: base url "ftp://x" must start with http:// or https://`},
		"no host":         {Options{APIKey: testKey, BaseURL: "http://"}, `apiclient: base url "http:" has no host`},
		"bad url":         {Options{APIKey: testKey, BaseURL: "http://a b\x00"}, "apiclient: base url is not a valid URL"},
		"auth style":      {Options{APIKey: testKey, AuthStyle: "basic"}, `apiclient: auth style "basic" is not one of bearer, api-key`},
		"empty models":    {Options{APIKey: testKey, Models: Models{}}, "apiclient: models must not be empty"},
		"negative":        {Options{APIKey: testKey, RequestTimeout: -time.Second}, "apiclient: request timeout -1s must not be negative"},
		"negative bytes":  {Options{APIKey: testKey, MaxResponseBytes: -1}, "apiclient: max response bytes -1 must not be negative"},
		"password in url": {Options{APIKey: testKey, BaseURL: "ftp://u:hunter2@x"}, `apiclient: base url "ftp://u:xxxxx@x" must start with http:// or https://`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := New(tc.opts)
			if err == nil || c != nil {
				t.Fatalf("New = %v, %v; want an error", c, err)
			}
			if err.Error() != tc.want {
				t.Errorf("err = %q, want %q", err, tc.want)
			}
			checkSecretFree(t, err)
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	o := Options{APIKey: testKey}.withDefaults()
	if o.BaseURL != DefaultBaseURL || o.AuthStyle != AuthBearer || o.DialTimeout != 10*time.Second ||
		o.TLSHandshakeTimeout != 10*time.Second || o.RequestTimeout != 5*time.Minute ||
		o.ResponseHeaderTimeout != 5*time.Minute || o.MaxResponseBytes != 64<<20 ||
		o.UserAgent != "mimoq/"+moduleVersion() || o.Models.String() != DefaultModels().String() {
		t.Errorf("defaults = %+v", o)
	}
	if o := (Options{APIKey: testKey, RequestTimeout: time.Minute}).withDefaults(); o.ResponseHeaderTimeout != time.Minute {
		t.Errorf("ResponseHeaderTimeout = %s, want RequestTimeout", o.ResponseHeaderTimeout)
	}
}

func TestReadCapped(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body          string
		contentLength int64
		limit         int64
		want          string
		tooLarge      bool
	}{
		{"abc", 3, 3, "abc", false},
		{"abcd", 4, 3, "abc", true},
		{"abc", -1, 10, "abc", false},
		// A lying Content-Length must not size the buffer.
		{"abc", 1 << 50, math.MaxInt64, "abc", false},
	}
	for _, tc := range cases {
		data, tooLarge, err := readCapped(strings.NewReader(tc.body), tc.contentLength, tc.limit)
		if err != nil || string(data) != tc.want || tooLarge != tc.tooLarge {
			t.Errorf("readCapped(%q, %d, %d) = %q, %v, %v", tc.body, tc.contentLength, tc.limit, data, tooLarge, err)
		}
	}
}
