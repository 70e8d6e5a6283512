package mockapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mimoq/mimoq/internal/mockapi"
)

// FuzzChat feeds arbitrary bodies to the endpoint: it must answer 200, 400,
// 404 or 413, always with a JSON body of the right kind.
func FuzzChat(f *testing.F) {
	for _, seed := range []string{
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_tokens":3,"thinking":{"type":"enabled"}}`,
		`{"model":"mimo-v2.5-tts","messages":[{"role":"assistant","content":"speak"}],"audio":{"format":"pcm16"}}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"f"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`,
		`{"model":"x","messages":[]}`, `[]`, `{`, ``, `{"messages":null}`, `{"model":"mimo-v2.6-flash","messages":[{"role":"tool"}]}`,
		`{"model":"mimo-v2-flash","messages":[{"role":"user","content":"a retired name"}]}`,
		`{"model":"mimo-v2.5","messages":[{"role":"user","content":"forwarded"}]}`,
		`{"model":"mimo-v2.6-pro","messages":[{"role":"system","content":"same"},{"role":"user","content":"prefix"}]}`,
	} {
		f.Add(seed)
	}
	m, err := mockapi.New(mockapi.Config{Key: testKey, RPM: mockapi.Unlimited, TPM: mockapi.Unlimited, MaxBodyBytes: 1 << 16,
		Forward: map[string]string{"mimo-v2.5": "mimo-v2.6-flash"}, PromptCacheEntries: 64})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, req)
		ct := rec.Header().Get("Content-Type")
		switch rec.Code {
		case 200:
			if strings.HasPrefix(ct, "text/event-stream") {
				if !strings.HasSuffix(rec.Body.String(), "data: [DONE]\n\n") {
					t.Fatalf("stream without [DONE]: %q", rec.Body.String())
				}
				return
			}
			var c struct {
				Object  string `json:"object"`
				Choices []any  `json:"choices"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil || c.Object != "chat.completion" || len(c.Choices) != 1 {
				t.Fatalf("bad 200 body for %q: %s", body, rec.Body.String())
			}
		case 400, 404, 413:
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("bad %d body for %q: %s", rec.Code, body, rec.Body.String())
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if ct == "" {
			t.Fatal("no content-type")
		}
	})
}
