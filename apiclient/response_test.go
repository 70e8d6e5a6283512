package apiclient

import (
	"strings"
	"testing"
)

// mimoResponse is the shape MiMo answers with (docs/mimo-api.md): null where
// a field has nothing, reasoning inside completion_tokens.
const mimoResponse = `{"id":"72c2d792ca96489abd0b287184dac960","choices":[{"finish_reason":"stop","index":0,
"message":{"content":"Hello!","role":"assistant","tool_calls":null,"reasoning_content":null}}],
"created":1790000000,"model":"mimo-v2.6-flash","object":"chat.completion",
"usage":{"completion_tokens":120,"prompt_tokens":60,"total_tokens":180,
"completion_tokens_details":{"reasoning_tokens":32},"prompt_tokens_details":{"cached_tokens":48}}}`

func TestParseResponseUsageAndModel(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                    string
		body                    string
		cached, reasoning       int
		model, requested, serve string
	}{
		{"details", mimoResponse, 48, 32, "mimo-v2.6-flash", "mimo-v2.6-flash", ""},
		{"forwarded", mimoResponse, 48, 32, "mimo-v2.6-flash", "mimo-v2.5", "mimo-v2.6-flash"},
		{"null details", strings.Replace(mimoResponse, `"prompt_tokens_details":{"cached_tokens":48}`, `"prompt_tokens_details":null`, 1), 0, 32, "mimo-v2.6-flash", "mimo-v2.6-flash", ""},
		{"no details", `{"model":"","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, 0, 0, "", "mimo-v2.6-pro", ""},
		{"details of the wrong type", `{"model":"m","choices":[],"usage":{"prompt_tokens_details":{"cached_tokens":"many"},"completion_tokens_details":7}}`, 0, 0, "m", "m", ""},
	}
	for _, tc := range cases {
		resp, err := parseResponse(200, "", []byte(tc.body), testKey)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		u := resp.Usage
		if u.CachedTokens() != tc.cached || u.ReasoningTokens() != tc.reasoning || resp.Model != tc.model || resp.ServedModel(tc.requested) != tc.serve {
			t.Errorf("%s: cached %d reasoning %d model %q served %q", tc.name, u.CachedTokens(), u.ReasoningTokens(), resp.Model, resp.ServedModel(tc.requested))
		}
	}
	var nilResp *Response
	if nilResp.ServedModel("x") != "" {
		t.Error("ServedModel of nil is not empty")
	}
}

func BenchmarkParseResponse(b *testing.B) {
	body := []byte(mimoResponse)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		resp, err := parseResponse(200, "r", body, testKey)
		if err != nil || resp.Usage.CachedTokens() != 48 {
			b.Fatal(err)
		}
	}
}
