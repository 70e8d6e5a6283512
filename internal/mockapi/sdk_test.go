package mockapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/internal/nodesdk"
)

// TestOpenAINodeSDK checks that the official OpenAI SDK reads the mock's
// answers as it reads the real API's: a completion, a stream, speech, and the
// typed errors RateLimitError, AuthenticationError, NotFoundError and
// BadRequestError. It needs node and npm (and the npm registry once: the
// package is cached under the user cache directory).
func TestOpenAINodeSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Node.js and installs the openai npm package")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, url := serve(t, mockapi.Config{Models: withSpeech(), Limits: map[string]mockapi.Limit{"mimo-v2.6-flash": {RPM: 1}}})
	stdout := nodesdk.Run(ctx, t, filepath.Join("testdata", "sdk.mjs"), "MOCK_BASE_URL="+url+"/v1", "MOCK_KEY="+testKey)
	t.Logf("SDK output: %s", stdout)

	type sdkError struct {
		Name                string  `json:"name"`
		APIError            bool    `json:"api_error"`
		RateLimitError      bool    `json:"rate_limit_error"`
		AuthenticationError bool    `json:"authentication_error"`
		NotFoundError       bool    `json:"not_found_error"`
		BadRequestError     bool    `json:"bad_request_error"`
		Status              int     `json:"status"`
		Code                *string `json:"code"`
		Type                *string `json:"type"`
		Param               *string `json:"param"`
		RetryAfter          *string `json:"retry_after"`
		RetryAfterMS        *string `json:"retry_after_ms"`
		RequestID           *string `json:"request_id"`
	}
	type result[T any] struct {
		OK    *T        `json:"ok"`
		Error *sdkError `json:"error"`
	}
	var out struct {
		Chat result[struct {
			ID, Object, Model, Content string
			ReasoningContent           *string `json:"reasoning_content"`
			FinishReason               string  `json:"finish_reason"`
			RequestID                  string  `json:"request_id"`
			Usage                      struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				TotalTokens      int `json:"total_tokens"`
			}
		}] `json:"chat"`
		Stream result[struct {
			Content      string
			FinishReason string `json:"finish_reason"`
			TotalTokens  int    `json:"total_tokens"`
		}] `json:"stream"`
		Speech result[struct {
			RIFF       string `json:"riff"`
			Transcript string
		}] `json:"speech"`
		RateLimitFirst result[string]   `json:"rate_limit_first"`
		RateLimit      result[any]      `json:"rate_limit"`
		Auth           result[any]      `json:"auth"`
		NotFound       result[any]      `json:"not_found"`
		BadRequest     result[any]      `json:"bad_request"`
		Models         result[[]string] `json:"models"`
	}
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("decode SDK output: %v", err)
	}
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	fail := func(what string, e *sdkError) {
		t.Helper()
		if e != nil {
			t.Errorf("%s failed in the SDK: %+v (code %s)", what, *e, str(e.Code))
		} else {
			t.Errorf("%s: no result", what)
		}
	}

	if c := out.Chat.OK; c == nil {
		fail("chat", out.Chat.Error)
	} else {
		if !hex32.MatchString(c.ID) || c.Object != "chat.completion" || c.Model != "mimo-v2.6-pro" || c.FinishReason != "stop" {
			t.Errorf("chat = %+v", *c)
		}
		if !strings.Contains(c.Content, "Hello from the SDK") || c.ReasoningContent == nil || *c.ReasoningContent == "" {
			t.Errorf("chat content %q, reasoning %v", c.Content, c.ReasoningContent)
		}
		if !hex32.MatchString(c.RequestID) || c.Usage.TotalTokens != c.Usage.PromptTokens+c.Usage.CompletionTokens || c.Usage.PromptTokens == 0 {
			t.Errorf("chat request id %q, usage %+v", c.RequestID, c.Usage)
		}
	}
	if s := out.Stream.OK; s == nil {
		fail("stream", out.Stream.Error)
	} else if !strings.Contains(s.Content, "Stream through the SDK") || s.FinishReason != "stop" || s.TotalTokens == 0 {
		t.Errorf("stream = %+v", *s)
	}
	if s := out.Speech.OK; s == nil {
		fail("speech", out.Speech.Error)
	} else if s.RIFF != "RIFF" || s.Transcript != "Hello in a voice." {
		t.Errorf("speech = %+v", *s)
	}
	if f := out.RateLimitFirst.OK; f == nil || *f != "stop" {
		fail("first flash call", out.RateLimitFirst.Error)
	}

	for _, tt := range []struct {
		name   string
		got    result[any]
		status int
		code   string
		class  func(*sdkError) bool
	}{
		{"rate limit", out.RateLimit, 429, "rate_limit_exceeded", func(e *sdkError) bool { return e.RateLimitError }},
		{"wrong key", out.Auth, 401, "authentication_failed", func(e *sdkError) bool { return e.AuthenticationError }},
		{"unknown model", out.NotFound, 404, "not_found", func(e *sdkError) bool { return e.NotFoundError }},
		{"bad temperature", out.BadRequest, 400, "invalid_request", func(e *sdkError) bool { return e.BadRequestError }},
	} {
		e := tt.got.Error
		if e == nil {
			t.Errorf("%s: the SDK returned no error", tt.name)
			continue
		}
		if !e.APIError || !tt.class(e) || e.Status != tt.status || str(e.Code) != tt.code || str(e.Type) != "error" {
			t.Errorf("%s: %+v (code %s, type %s), want %d %s as its typed error", tt.name, *e, str(e.Code), str(e.Type), tt.status, tt.code)
		}
		if e.RequestID == nil || !hex32.MatchString(*e.RequestID) {
			t.Errorf("%s: x-request-id %s", tt.name, str(e.RequestID))
		}
	}
	if e := out.RateLimit.Error; e != nil && (str(e.RetryAfter) == "<nil>" || str(e.RetryAfterMS) == "<nil>") {
		t.Errorf("rate limit: Retry-After %s, retry-after-ms %s", str(e.RetryAfter), str(e.RetryAfterMS))
	}
	if e := out.BadRequest.Error; e != nil && str(e.Param) != "temperature" {
		t.Errorf("bad request param = %s", str(e.Param))
	}
	if m := out.Models.OK; m == nil || fmt.Sprint(*m) != "[mimo-v2.5-tts mimo-v2.5-tts-voiceclone mimo-v2.5-tts-voicedesign mimo-v2.6-flash mimo-v2.6-pro mimo-v2.6-pro-ultraspeed]" {
		t.Errorf("models = %v, %v", m, out.Models.Error)
	}
}
