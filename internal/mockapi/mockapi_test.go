package mockapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/mockapi"
)

const testKey = "test-key"

// clock is a settable Config.Clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// bundle is what most tests need: a mock, its clock, and a way to call it.
type bundle struct {
	t     *testing.T
	mock  *mockapi.Server
	clock *clock
}

// setup builds a mock on a test clock; cfg.Key defaults to testKey.
func setup(t *testing.T, cfg mockapi.Config) *bundle {
	t.Helper()
	if cfg.Key == "" {
		cfg.Key = testKey
	}
	c := newClock()
	if cfg.Clock == nil {
		cfg.Clock = c.Now
	}
	m, err := mockapi.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return &bundle{t: t, mock: m, clock: c}
}

// response is a recorded answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// errorCode returns error.code and error.param of a wrapped error body.
func (r response) errorCode(t *testing.T) (code, param, typ string) {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	if e == nil {
		t.Fatalf("no error object in %s", r.body)
	}
	code, _ = e["code"].(string)
	param, _ = e["param"].(string)
	typ, _ = e["type"].(string)
	return code, param, typ
}

// do serves one request in process.
func (b *bundle) do(method, path, body string, header map[string]string) response {
	b.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	b.mock.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func bearer(key string) map[string]string { return map[string]string{"Authorization": "Bearer " + key} }

// chat posts a chat request with the test key and extra headers.
func (b *bundle) chat(body string, extra ...string) response {
	b.t.Helper()
	h := bearer(testKey)
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return b.do(http.MethodPost, "/v1/chat/completions", body, h)
}

func (b *bundle) stats() mockapi.Stats {
	b.t.Helper()
	r := b.do(http.MethodGet, "/mock/stats", "", nil)
	if r.status != 200 {
		b.t.Fatalf("GET /mock/stats: %d %s", r.status, r.body)
	}
	var s mockapi.Stats
	if err := json.Unmarshal(r.body, &s); err != nil {
		b.t.Fatal(err)
	}
	return s
}

// withSpeech is the default models and the speech ones.
func withSpeech() map[string]int {
	m := mockapi.DefaultModels()
	for k, v := range mockapi.SpeechModels() {
		m[k] = v
	}
	return m
}

func jsonDecode(b []byte, v any) error { return json.Unmarshal(b, v) }

func jsonDecodeReader(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func simple(model, prompt string) string {
	b, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}})
	return string(b)
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestValidation(t *testing.T) {
	t.Parallel()
	ok := simple("mimo-v2.6-flash", "Hello")
	big := `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"` + strings.Repeat("x", 2000) + `"}]}`
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		body       string
		wantStatus int
		wantCode   string
		wantParam  string
	}{
		{name: "ok bearer", body: ok, wantStatus: 200},
		{name: "ok api-key header", header: map[string]string{"api-key": testKey}, body: ok, wantStatus: 200},
		{name: "ok bearer lower case scheme", header: map[string]string{"Authorization": "bearer " + testKey}, body: ok, wantStatus: 200},
		{name: "ok without v1", path: "/chat/completions", body: ok, wantStatus: 200},
		{name: "no key", header: map[string]string{}, body: ok, wantStatus: 401, wantCode: "authentication_failed"},
		{name: "wrong bearer", header: bearer("nope"), body: ok, wantStatus: 401, wantCode: "authentication_failed"},
		{name: "wrong api-key", header: map[string]string{"api-key": "nope"}, body: ok, wantStatus: 401, wantCode: "authentication_failed"},
		{name: "auth before validation", header: bearer("nope"), body: "{", wantStatus: 401, wantCode: "authentication_failed"},
		{name: "GET", method: http.MethodGet, body: "", wantStatus: 405, wantCode: "invalid_request"},
		{name: "empty body", body: "", wantStatus: 400, wantCode: "invalid_request"},
		{name: "malformed JSON", body: `{"model":`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "array body", body: `[1]`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "missing model", body: `{"messages":[{"role":"user","content":"hi"}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "model"},
		{name: "null model", body: `{"model":null,"messages":[{"role":"user","content":"hi"}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "model"},
		{name: "model not string", body: `{"model":7,"messages":[{"role":"user","content":"hi"}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "model"},
		{name: "missing messages", body: `{"model":"mimo-v2.6-flash"}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages"},
		{name: "messages not array", body: `{"model":"mimo-v2.6-flash","messages":"hi"}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages"},
		{name: "empty messages", body: `{"model":"mimo-v2.6-flash","messages":[]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages"},
		{name: "message not object", body: `{"model":"mimo-v2.6-flash","messages":["hi"]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages[0]"},
		{name: "missing role", body: `{"model":"mimo-v2.6-flash","messages":[{"content":"hi"}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages[0].role"},
		{name: "bad role", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"a"},{"role":"robot","content":"hi"}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages[1].role"},
		{name: "missing content", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user"}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages[0].content"},
		{name: "content not string", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":5}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages[0].content"},
		{name: "content parts", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"http://x"}}]}]}`, wantStatus: 200},
		{name: "assistant with tool calls", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"a"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"42"}]}`, wantStatus: 200},
		{name: "tool without tool_call_id", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"tool","content":"42"}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "messages[0].tool_call_id"},
		{name: "unknown model", body: simple("gpt-4o", "hi"), wantStatus: 404, wantCode: "not_found", wantParam: "model"},
		{name: "unknown model before parameters", body: `{"model":"nope","messages":[{"role":"user","content":"hi"}],"temperature":9}`, wantStatus: 404, wantCode: "not_found"},
		{name: "temperature too high", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"temperature":2.5}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "temperature"},
		{name: "temperature negative", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"temperature":-0.1}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "temperature"},
		{name: "temperature string", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "temperature"},
		{name: "temperature 2 ok", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"temperature":2,"top_p":1}`, wantStatus: 200},
		{name: "top_p too high", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"top_p":1.01}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "top_p"},
		{name: "max_tokens zero", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "max_tokens"},
		{name: "max_tokens fraction", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":1.5}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "max_tokens"},
		{name: "max_tokens above limit", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":131073}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "max_tokens"},
		{name: "max_tokens at limit", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"max_tokens":131072}`, wantStatus: 200},
		{name: "max_completion_tokens above limit", body: `{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":131073}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "max_completion_tokens"},
		{name: "max_completion_tokens negative", body: `{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":-1}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "max_completion_tokens"},
		{name: "tts at limit", body: `{"model":"mimo-v2.5-tts","messages":[{"role":"assistant","content":"hi"}],"max_tokens":8192}`, wantStatus: 200},
		{name: "tts above limit", body: `{"model":"mimo-v2.5-tts","messages":[{"role":"assistant","content":"hi"}],"max_tokens":8193}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "max_tokens"},
		{name: "stream not bool", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"stream":"yes"}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "stream"},
		{name: "stream_options without stream", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "stream_options"},
		{name: "bad thinking type", body: `{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"thinking":{"type":"maybe"}}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "thinking.type"},
		{name: "thinking not object", body: `{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"thinking":true}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "thinking"},
		{name: "bad response_format", body: `{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"xml"}}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "response_format.type"},
		{name: "tool without name", body: `{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{}}]}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "tools[0].function.name"},
		{name: "tool_choice unknown tool", body: `{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "tool_choice"},
		{name: "tts bad audio format", body: `{"model":"mimo-v2.5-tts","messages":[{"role":"assistant","content":"hi"}],"audio":{"format":"ogg"}}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "audio.format"},
		{name: "tts stream", body: `{"model":"mimo-v2.5-tts","messages":[{"role":"assistant","content":"hi"}],"stream":true}`, wantStatus: 400, wantCode: "invalid_request", wantParam: "stream"},
		{name: "unknown fields pass", body: `{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"hi"}],"frequency_penalty":0.5,"user":"u","seed":3}`, wantStatus: 200},
		{name: "body too large", body: big, wantStatus: 413, wantCode: "invalid_request"},
		{name: "unknown path", path: "/v1/completions", body: ok, wantStatus: 404, wantCode: "not_found"},
	}
	b := setup(t, mockapi.Config{MaxBodyBytes: 1000, Models: withSpeech()})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path, header := tt.method, tt.path, tt.header
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/v1/chat/completions"
			}
			if header == nil {
				header = bearer(testKey)
			}
			r := b.do(method, path, tt.body, header)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.status, tt.wantStatus, r.body)
			}
			if id := r.header.Get("X-Request-Id"); !hex32.MatchString(id) {
				t.Errorf("x-request-id = %q, want 32 hex digits", id)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type = %q", ct)
			}
			if tt.wantStatus == 200 {
				if obj := r.json(t)["object"]; obj != "chat.completion" {
					t.Errorf("object = %v", obj)
				}
				return
			}
			code, param, typ := r.errorCode(t)
			if code != tt.wantCode || typ != "error" {
				t.Errorf("code, type = %q, %q; want %q, error", code, typ, tt.wantCode)
			}
			if tt.wantParam != "" && param != tt.wantParam {
				t.Errorf("param = %q, want %q", param, tt.wantParam)
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	r := b.do(http.MethodPost, "/v1/chat/completions", simple("mimo-v2.6-pro", "hi"), nil)
	if string(r.body) != `{"error":{"code":"authentication_failed","message":"Invalid API Key provided.","type":"error"}}` {
		t.Errorf("401 body = %s", r.body)
	}
	r = b.chat(`{"messages":[{"role":"user","content":"hi"}]}`)
	if _, _, _ = r.errorCode(t); !strings.Contains(string(r.body), "'model'") {
		t.Errorf("400 message does not name the field: %s", r.body)
	}
}

func TestMiMoShape(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{ErrorShape: mockapi.ShapeMiMo, RPM: 1})
	r := b.do(http.MethodPost, "/v1/chat/completions", simple("mimo-v2.6-pro", "hi"), bearer("bad"))
	if r.status != 401 || string(r.body) != `{"error":{"code":"401","message":"Invalid API Key provided.","type":"authentication_error"}}` {
		t.Errorf("401 = %d %s", r.status, r.body)
	}
	if r := b.chat(simple("mimo-v2.6-pro", "hi")); r.status != 200 {
		t.Fatalf("first = %d", r.status)
	}
	r = b.chat(simple("mimo-v2.6-pro", "hi"))
	if r.status != 429 || string(r.body) != `{"error":{"code":"429","message":"Too many requests","type":"limitation"}}` {
		t.Errorf("429 = %d %s", r.status, r.body)
	}
	if r.header.Get("Retry-After") == "" || r.header.Get("Retry-After-Ms") == "" {
		t.Errorf("429 without Retry-After: %v", r.header)
	}
}

func TestMixedShape(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{ErrorShape: mockapi.ShapeMixed, Rate503: 1, Seed: 7, RPM: mockapi.Unlimited})
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		r := b.chat(simple("mimo-v2.6-flash", "hi"))
		if r.status != 503 {
			t.Fatalf("status = %d", r.status)
		}
		ct := r.header.Get("Content-Type")
		switch {
		case strings.HasPrefix(ct, "text/html"):
			if !bytes.Contains(r.body, []byte("<h1>503 Service Unavailable</h1>")) {
				t.Errorf("html body = %s", r.body)
			}
			seen["html"]++
		case len(r.body) == 0:
			seen["empty"]++
		case ct == "application/json":
			m := r.json(t)
			switch e, _ := m["error"].(map[string]any); {
			case e == nil && m["type"] == "server_error" && m["message"] != "":
				seen["unwrapped"]++
			case e != nil && e["code"] == "503" && e["type"] == "server_error":
				seen["mimo"]++
			case e != nil && e["code"] == "service_unavailable" && e["type"] == "error":
				seen["seed"]++
			default:
				t.Errorf("unexpected body %s", r.body)
			}
		default:
			t.Errorf("content-type %q", ct)
		}
	}
	for _, s := range []string{"html", "empty", "unwrapped", "mimo", "seed"} {
		if seen[s] == 0 {
			t.Errorf("mixed shape never gave %s: %v", s, seen)
		}
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{RPM: 2, Limits: map[string]mockapi.Limit{"mimo-v2.6-flash": {RPM: mockapi.Unlimited}}})
	for i := 0; i < 2; i++ {
		if r := b.chat(simple("mimo-v2.6-pro", "hi")); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		b.clock.Advance(10 * time.Second)
	}
	r := b.chat(simple("mimo-v2.6-pro", "hi"))
	if r.status != 429 {
		t.Fatalf("third request = %d, want 429", r.status)
	}
	if code, _, _ := r.errorCode(t); code != "rate_limit_exceeded" {
		t.Errorf("code = %q", code)
	}
	// The first request leaves the window 60 s after it came, 40 s from now.
	if got := r.header.Get("Retry-After"); got != "40" {
		t.Errorf("Retry-After = %q, want 40", got)
	}
	if got := r.header.Get("Retry-After-Ms"); got != "40000" {
		t.Errorf("retry-after-ms = %q, want 40000", got)
	}
	// Another model has its own (here unlimited) budget.
	for i := 0; i < 5; i++ {
		if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 200 {
			t.Fatalf("flash: %d", r.status)
		}
	}
	b.clock.Advance(40*time.Second - time.Millisecond)
	r = b.chat(simple("mimo-v2.6-pro", "hi"))
	if r.status != 429 || r.header.Get("Retry-After") != "1" || r.header.Get("Retry-After-Ms") != "1" {
		t.Errorf("just before the window moves: %d, Retry-After %q, ms %q", r.status, r.header.Get("Retry-After"), r.header.Get("Retry-After-Ms"))
	}
	b.clock.Advance(time.Millisecond)
	if r := b.chat(simple("mimo-v2.6-pro", "hi")); r.status != 200 {
		t.Errorf("after the window moved: %d %s", r.status, r.body)
	}
	st := b.stats()
	pro := st.Models["mimo-v2.6-pro"]
	if pro.LimitExceeded != 2 || pro.ByStatus["429"] != 2 || pro.ByStatus["200"] != 3 {
		t.Errorf("pro stats = %+v", pro)
	}
	if pro.MaxRPMWindow.OK != 2 || pro.MaxRPMWindow.Received != 4 {
		t.Errorf("pro windows = %+v", pro.MaxRPMWindow)
	}
	if st.Models["mimo-v2.6-flash"].RPM != 0 || pro.RPM != 2 {
		t.Errorf("limits shown: flash %d, pro %d", st.Models["mimo-v2.6-flash"].RPM, pro.RPM)
	}
}

func TestTokenLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{RPM: mockapi.Unlimited, TPM: 200})
	// A reply to "hi" from flash costs about 40 tokens.
	n := 0
	for ; n < 20; n++ {
		r := b.chat(simple("mimo-v2.6-flash", "hi"))
		if r.status == 429 {
			if !strings.Contains(string(r.body), "TPM") {
				t.Errorf("message does not name the token limit: %s", r.body)
			}
			if s, _ := strconv.Atoi(r.header.Get("Retry-After")); s != 60 {
				t.Errorf("Retry-After = %q, want 60", r.header.Get("Retry-After"))
			}
			break
		}
	}
	if n == 0 || n == 20 {
		t.Fatalf("token limit hit after %d requests", n)
	}
	r := b.chat(simple("mimo-v2.6-flash", strings.Repeat("long prompt ", 100)))
	if r.status != 429 || !strings.Contains(string(r.body), "Request too large") {
		t.Errorf("request above TPM: %d %s", r.status, r.body)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{Key: "old"})
	if r := b.do(http.MethodPost, "/v1/chat/completions", simple("mimo-v2.6-pro", "hi"), bearer("new")); r.status != 401 {
		t.Fatalf("before: %d", r.status)
	}
	r := b.do(http.MethodPut, "/mock/config", `{"key":"new","rpm":1,"rate_500":0.5,"latency":"1ms","error_shape":"mimo"}`, nil)
	if r.status != 200 {
		t.Fatalf("PUT /mock/config: %d %s", r.status, r.body)
	}
	var set mockapi.Settings
	if err := json.Unmarshal(r.body, &set); err != nil {
		t.Fatal(err)
	}
	if !set.KeySet || set.Models["mimo-v2.6-pro"].RPM != 1 || set.Rates["500"] != 0.5 || set.ErrorShape != mockapi.ShapeMiMo ||
		time.Duration(set.Latency) != time.Millisecond {
		t.Errorf("settings = %+v", set)
	}
	if bytes.Contains(r.body, []byte(`"new"`)) {
		t.Errorf("settings show the key: %s", r.body)
	}
	if r := b.do(http.MethodPost, "/v1/chat/completions", simple("mimo-v2.6-pro", "hi"), bearer("new")); r.status == 401 {
		t.Errorf("after: still 401")
	}
	for _, bad := range []string{`{"rate_429":0.6}`, `{"rate_503":-1}`, `{"error_shape":"x"}`, `{"key":""}`, `{"latency":"fast"}`, `{"limits":{"nope":{"rpm":1}}}`, `{"bogus":1}`} {
		if r := b.do(http.MethodPut, "/mock/config", bad, nil); r.status != 400 {
			t.Errorf("PUT %s = %d, want 400", bad, r.status)
		}
	}
	if got := b.mock.Settings().Rates["500"]; got != 0.5 {
		t.Errorf("a rejected update changed the settings: rate 500 = %v", got)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]mockapi.Config{
		"no key":        {},
		"rate above 1":  {Key: "k", Rate429: 1.5},
		"rates above 1": {Key: "k", Rate500: 0.6, Rate503: 0.6},
		"bad shape":     {Key: "k", ErrorShape: "json"},
		"bad limit":     {Key: "k", Limits: map[string]mockapi.Limit{"gpt": {RPM: 1}}},
		"neg latency":   {Key: "k", Latency: -time.Second},
		"neg model":     {Key: "k", Models: map[string]int{"m": -1}},
	} {
		if _, err := mockapi.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestMixedRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{ErrorShape: mockapi.ShapeMixed, RPM: 1, Seed: 9})
	b.clock.Advance(250 * time.Millisecond)
	if r := b.chat(simple("mimo-v2.6-pro", "hi")); r.status != 200 {
		t.Fatalf("first: %d", r.status)
	}
	seconds, dates := 0, 0
	for i := 0; i < 100; i++ {
		r := b.chat(simple("mimo-v2.6-pro", "hi"))
		if r.status != 429 || r.header.Get("Retry-After-Ms") != "60000" {
			t.Fatalf("status %d, retry-after-ms %q", r.status, r.header.Get("Retry-After-Ms"))
		}
		ra := r.header.Get("Retry-After")
		if n, err := strconv.Atoi(ra); err == nil {
			if n != 60 {
				t.Errorf("Retry-After = %d", n)
			}
			seconds++
			continue
		}
		at, err := http.ParseTime(ra)
		if err != nil {
			t.Fatalf("Retry-After %q is neither seconds nor a date", ra)
		}
		// The date is never earlier than the exact time, and at most a second later.
		if exact := b.clock.Now().Add(time.Minute); at.Before(exact) || at.Sub(exact) >= time.Second {
			t.Errorf("Retry-After date %s for %s", at, exact)
		}
		dates++
	}
	if seconds == 0 || dates == 0 {
		t.Errorf("seconds %d, dates %d: want both forms", seconds, dates)
	}
}
