package mockapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/mockapi"
)

// usageOf returns the usage of a 200 answer.
func usageOf(t *testing.T, r response) (prompt, cached int) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status = %d %s", r.status, r.body)
	}
	c := decodeCompletion(t, r)
	if c.Usage.PromptTokensDetails == nil {
		t.Fatalf("no prompt_tokens_details: %s", r.body)
	}
	return c.Usage.PromptTokens, c.Usage.PromptTokensDetails.CachedTokens
}

func listed(t *testing.T, b *bundle) string {
	t.Helper()
	r := b.do("GET", "/v1/models", "", bearer(testKey))
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != 200 {
		t.Fatalf("GET /v1/models: %d %s", r.status, r.body)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	return strings.Join(ids, ",")
}

func TestRetiredModels(t *testing.T) {
	t.Parallel()
	// The seed shape is configured: MiMo's own errors keep MiMo's shape.
	b := setup(t, mockapi.Config{ErrorShape: mockapi.ShapeSeed})
	for _, tt := range []struct {
		model  string
		status int
	}{
		{"mimo-v2-flash", 400}, {"mimo-v2-pro", 400}, {"mimo-v2-tts", 400},
		{"mimo-v2.5", 400}, {"mimo-v2.5-pro", 400}, {"mimo-v2.5-pro-ultraspeed", 400},
		{"mimo-v2.5-tts", 404}, // a current speech model this mock does not serve
		{"gpt-4o", 404},
		{"mimo-v2.6-flash", 200},
	} {
		r := b.chat(simple(tt.model, "hi"))
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.model, r.status, tt.status, r.body)
			continue
		}
		if want := `{"error":{"code":"400","message":"Unsupported model ` + tt.model + `","type":""}}`; tt.status == 400 && string(r.body) != want {
			t.Errorf("%s: body %s, want %s", tt.model, r.body, want)
		}
	}
	st := b.stats()
	if st.Retired["mimo-v2-flash"] != 1 || st.Retired["mimo-v2.5"] != 1 || len(st.Retired) != 6 || st.ByStatus["400"] != 6 {
		t.Errorf("retired %v, by status %v", st.Retired, st.ByStatus)
	}

	// A model retired while a batch waits: it leaves the catalogue and is
	// refused, until it is restored.
	if err := b.mock.Update(mockapi.Update{RetiredModels: &[]string{"mimo-v2.6-flash"}}); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, b); got != "mimo-v2.6-pro,mimo-v2.6-pro-ultraspeed" {
		t.Errorf("catalogue after retiring flash = %s", got)
	}
	if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 400 || !strings.Contains(string(r.body), "Unsupported model mimo-v2.6-flash") {
		t.Errorf("retired flash = %d %s", r.status, r.body)
	}
	if !b.mock.Settings().Models["mimo-v2.6-flash"].Retired {
		t.Error("settings do not show flash retired")
	}
	if err := b.mock.Update(mockapi.Update{RetiredModels: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 200 || listed(t, b) != "mimo-v2.6-flash,mimo-v2.6-pro,mimo-v2.6-pro-ultraspeed" {
		t.Errorf("restored flash = %d", r.status)
	}
	if err := b.mock.Update(mockapi.Update{RetiredModels: &[]string{"gpt-4o"}}); err == nil {
		t.Error("retiring a model that is not served succeeded")
	}

	// No retired names: the old ones are merely unknown.
	none := setup(t, mockapi.Config{Retired: []string{}})
	if r := none.chat(simple("mimo-v2-flash", "hi")); r.status != 404 {
		t.Errorf("without retired names: %d", r.status)
	}
	if _, err := mockapi.New(mockapi.Config{Key: "k", Retired: []string{"mimo-*-x"}}); err == nil {
		t.Error("a pattern with an inner * was accepted")
	}
}

func TestForward(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{Forward: map[string]string{"mimo-v2.5": "mimo-v2.6-flash"}})
	r := b.chat(simple("mimo-v2.5", "hi"), "X-Mimoq-Job-Id", "j1")
	if r.status != 200 {
		t.Fatalf("forwarded = %d %s", r.status, r.body)
	}
	if c := decodeCompletion(t, r); c.Model != "mimo-v2.6-flash" {
		t.Errorf("model = %q, want the successor", c.Model)
	}
	b.chat(`{"model":"mimo-v2.5","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	st := b.stats()
	if st.Forwarded["mimo-v2.5=mimo-v2.6-flash"] != 2 || st.Models["mimo-v2.6-flash"].Requests != 2 || st.Retired["mimo-v2.5"] != 0 {
		t.Errorf("forwarded %v, flash %+v, retired %v", st.Forwarded, st.Models["mimo-v2.6-flash"], st.Retired)
	}
	log, _ := b.mock.Job("j1")
	if len(log.Calls) != 1 || log.Calls[0].Model != "mimo-v2.5" || log.Calls[0].ServedModel != "mimo-v2.6-flash" {
		t.Errorf("job log = %+v", log.Calls)
	}
	// Not forwarded: no served_model, no count.
	b.chat(simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", "j2")
	if log, _ := b.mock.Job("j2"); log.Calls[0].ServedModel != "" || b.stats().Forwarded["mimo-v2.6-flash=mimo-v2.6-flash"] != 0 {
		t.Errorf("a direct call counted as forwarded: %+v", log.Calls)
	}
	// The forward ends: the name is retired again.
	if err := b.mock.Update(mockapi.Update{Forward: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	if r := b.chat(simple("mimo-v2.5", "hi")); r.status != 400 {
		t.Errorf("after the forward ended: %d", r.status)
	}
	for _, fwd := range []map[string]string{
		{"mimo-v2.6-pro": "mimo-v2.6-flash"}, // a served name
		{"old": "gpt-4o"},                    // to an unknown model
		{"": "mimo-v2.6-flash"},
	} {
		if _, err := mockapi.New(mockapi.Config{Key: "k", Forward: fwd}); err == nil {
			t.Errorf("forward %v accepted", fwd)
		}
		if err := b.mock.Update(mockapi.Update{Forward: fwd}); err == nil {
			t.Errorf("update forward %v accepted", fwd)
		}
	}
	if err := b.mock.Update(mockapi.Update{Forward: map[string]string{"x": "mimo-v2.6-pro"}, RetiredModels: &[]string{"mimo-v2.6-pro"}}); err == nil {
		t.Error("a forward to a retired model was accepted")
	}
}

func TestContentFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{BlockedTerms: []string{"Forbidden Topic"}})
	r := b.chat(simple("mimo-v2.6-pro", "tell me about the forbidden topic, please"), "X-Mimoq-Job-Id", "f")
	want := `{"error":{"code":"421","message":"The content you entered is high risk and has been blocked by content moderation.","type":"content_filter"}}`
	if r.status != 421 || string(r.body) != want {
		t.Fatalf("blocked = %d %s", r.status, r.body)
	}
	if r := b.chat(simple("mimo-v2.6-pro", "tell me about something else")); r.status != 200 {
		t.Errorf("allowed = %d", r.status)
	}
	st := b.stats()
	if st.ContentFiltered != 1 || st.ByStatus["421"] != 1 || st.Models["mimo-v2.6-pro"].ByStatus["421"] != 1 || st.Faults["421"] != 0 {
		t.Errorf("filtered %d, by status %v, faults %v", st.ContentFiltered, st.ByStatus, st.Faults)
	}
	if err := b.mock.Update(mockapi.Update{BlockedTerms: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if r := b.chat(simple("mimo-v2.6-pro", "the forbidden topic")); r.status != 200 {
		t.Errorf("after clearing the terms: %d", r.status)
	}

	injected := setup(t, mockapi.Config{Rate421: 1, ErrorShape: mockapi.ShapeMixed})
	if r := injected.chat(simple("mimo-v2.6-flash", "hi")); r.status != 421 || string(r.body) != want {
		t.Errorf("injected 421 = %d %s", r.status, r.body)
	}
	if st := injected.stats(); st.Faults["421"] != 1 || st.ContentFiltered != 0 {
		t.Errorf("injected: faults %v, filtered %d", st.Faults, st.ContentFiltered)
	}
}

func TestHTML451(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{Rate451: 1, ErrorShape: mockapi.ShapeMiMo})
	r := b.chat(simple("mimo-v2.6-flash", "hi"))
	if r.status != 451 || r.header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(string(r.body), "<h1>451 Unavailable For Legal Reasons</h1>") {
		t.Fatalf("451 = %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if st := b.stats(); st.Faults["451"] != 1 || st.ByStatus["451"] != 1 {
		t.Errorf("faults %v, by status %v", st.Faults, st.ByStatus)
	}
	if err := b.mock.Update(mockapi.Update{Rate451: ptr(0.0)}); err != nil {
		t.Fatal(err)
	}
	if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 200 {
		t.Errorf("after the fault is off: %d", r.status)
	}
}

func ptr[T any](v T) *T { return &v }

func TestBurst402(t *testing.T) {
	t.Parallel()
	const funds = `{"type":"server_error","message":"Upstream request failed: Insufficient account funds"}`
	b := setup(t, mockapi.Config{Burst402: 2})
	// An invalid request is refused first and does not use up the burst.
	if r := b.chat(`{"model":"mimo-v2.6-flash"}`); r.status != 400 {
		t.Fatalf("invalid = %d", r.status)
	}
	for i := 1; i <= 2; i++ {
		if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 402 || string(r.body) != funds {
			t.Fatalf("call %d = %d %s", i, r.status, r.body)
		}
	}
	if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 200 {
		t.Fatalf("after the burst = %d", r.status)
	}
	if st := b.stats(); st.Burst402 != 2 || st.ByStatus["402"] != 2 {
		t.Errorf("burst %d, by status %v", st.Burst402, st.ByStatus)
	}

	// A burst by time, started by an update: every call in the window.
	if err := b.mock.Update(mockapi.Update{Burst402For: ptr(mockapi.Duration(30 * time.Second))}); err != nil {
		t.Fatal(err)
	}
	if s := b.mock.Settings(); s.Burst402Left != 0 || !s.Burst402Until.Equal(b.clock.Now().Add(30*time.Second)) {
		t.Errorf("settings: left %d, until %s", s.Burst402Left, s.Burst402Until)
	}
	for i := 0; i < 3; i++ {
		if r := b.chat(simple("mimo-v2.6-pro", "hi")); r.status != 402 {
			t.Fatalf("in the window: %d", r.status)
		}
		b.clock.Advance(5 * time.Second)
	}
	b.clock.Advance(15 * time.Second)
	if r := b.chat(simple("mimo-v2.6-pro", "hi")); r.status != 200 {
		t.Errorf("after the window: %d", r.status)
	}
	if st := b.stats(); st.Burst402 != 5 {
		t.Errorf("burst %d, want 5", st.Burst402)
	}
	if _, err := mockapi.New(mockapi.Config{Key: "k", Burst402: -1}); err == nil {
		t.Error("a negative burst was accepted")
	}
}

func TestOmitRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{RPM: 1, OmitRetryAfter: true})
	job := func(attempt int) response {
		return b.chat(simple("mimo-v2.6-flash", "hi"), "X-Mimoq-Job-Id", "j", "X-Mimoq-Attempt", fmt.Sprint(attempt))
	}
	if r := job(1); r.status != 200 {
		t.Fatalf("first = %d", r.status)
	}
	r := job(2)
	if r.status != 429 || r.header.Get("Retry-After") != "" || r.header.Get("Retry-After-Ms") != "" {
		t.Fatalf("429 = %d, Retry-After %q, ms %q", r.status, r.header.Get("Retry-After"), r.header.Get("Retry-After-Ms"))
	}
	// Coming back at once undercuts nothing: no wait was asked for.
	if r := job(3); r.status != 429 {
		t.Fatalf("again = %d", r.status)
	}
	st := b.stats()
	if st.RetryAfterOmitted != 2 || st.RetryAfterUndercut != 0 {
		t.Errorf("omitted %d, undercut %d", st.RetryAfterOmitted, st.RetryAfterUndercut)
	}
	if log, _ := b.mock.Job("j"); log.Calls[1].RetryAfterMS != 0 {
		t.Errorf("call log = %+v", log.Calls[1])
	}
	if err := b.mock.Update(mockapi.Update{OmitRetryAfter: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if r := job(4); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("with Retry-After again: %d %q", r.status, r.header.Get("Retry-After"))
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	// "hi" costs 1 prompt token and a few dozen completion tokens.
	b := setup(t, mockapi.Config{QuotaTokens: 50, QuotaWindow: time.Minute, RPM: mockapi.Unlimited})
	answered := 0
	for ; answered < 10; answered++ {
		if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 200 {
			break
		}
	}
	if answered == 0 || answered == 10 {
		t.Fatalf("answered %d before the quota", answered)
	}
	st := b.stats()
	if st.QuotaUsed < 50 {
		t.Errorf("quota used %d, want the last answer to reach 50", st.QuotaUsed)
	}
	r := b.chat(simple("mimo-v2.6-pro", "hi")) // every model: a Token Plan quota is the account's
	want := `{"error":{"code":"429","message":"The quota of Token Plan has been exhausted, please upgrade the package or switch to pay-as-you-go API.","type":"limitation"}}`
	if r.status != 429 || string(r.body) != want || r.header.Get("Retry-After") != "" {
		t.Fatalf("quota 429 = %d %s, Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	st = b.stats()
	if st.QuotaRejections != 2 || st.RetryAfterOmitted != 2 || st.Models["mimo-v2.6-flash"].LimitExceeded != 0 {
		t.Errorf("rejections %d, omitted %d, limit %d", st.QuotaRejections, st.RetryAfterOmitted, st.Models["mimo-v2.6-flash"].LimitExceeded)
	}
	// The next window has the whole quota again.
	b.clock.Advance(time.Minute)
	if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 200 {
		t.Errorf("next window = %d", r.status)
	}
	if err := b.mock.Update(mockapi.Update{QuotaTokens: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if r := b.chat(simple("mimo-v2.6-flash", "hi")); r.status != 200 {
			t.Fatalf("without a quota: %d", r.status)
		}
	}
}

func TestPromptCache(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	system := strings.Repeat("You answer in one short sentence. ", 20) // 170 tokens
	body := func(model, user string) string {
		v, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{
			{"role": "system", "content": system}, {"role": "user", "content": user},
		}})
		return string(v)
	}
	prompt, cached := usageOf(t, b.chat(body("mimo-v2.6-pro", "What is a queue?")))
	if cached != 0 {
		t.Errorf("first call cached %d", cached)
	}
	_, cached2 := usageOf(t, b.chat(body("mimo-v2.6-pro", "What is a stack?")))
	sysTokens := 170
	if cached2 != sysTokens {
		t.Errorf("shared system prompt: cached %d, want %d", cached2, sysTokens)
	}
	p3, cached3 := usageOf(t, b.chat(body("mimo-v2.6-pro", "What is a queue?")))
	if p3 != prompt || cached3 != prompt {
		t.Errorf("repeated prompt: %d of %d cached, want all", cached3, p3)
	}
	// Each model has its own cache.
	if _, c := usageOf(t, b.chat(body("mimo-v2.6-flash", "What is a queue?"))); c != 0 {
		t.Errorf("another model cached %d", c)
	}
	// A stream reports it too.
	r := b.chat(`{"model":"mimo-v2.6-pro","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":` +
		mustJSON(system) + `},{"role":"user","content":"Streamed?"}]}`)
	if !strings.Contains(string(r.body), fmt.Sprintf(`"prompt_tokens_details":{"cached_tokens":%d}`, sysTokens)) {
		t.Errorf("stream usage lacks the cached tokens: %s", r.body)
	}
	st := b.stats()
	if want := int64(sysTokens + prompt + sysTokens); st.CachedTokens != want || st.Models["mimo-v2.6-pro"].CachedTokens != want {
		t.Errorf("cached tokens %d (pro %d), want %d", st.CachedTokens, st.Models["mimo-v2.6-pro"].CachedTokens, want)
	}

	// Off, nothing is cached.
	if err := b.mock.Update(mockapi.Update{PromptCache: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if _, c := usageOf(t, b.chat(body("mimo-v2.6-pro", "What is a queue?"))); c != 0 {
		t.Errorf("cache off: cached %d", c)
	}

	// A cache of one entry forgets the system prompt once the user turn is stored.
	small := setup(t, mockapi.Config{PromptCacheEntries: 1})
	usageOf(t, small.chat(body("mimo-v2.6-pro", "a")))
	if _, c := usageOf(t, small.chat(body("mimo-v2.6-pro", "b"))); c != 0 {
		t.Errorf("a one-entry cache kept the system prompt: cached %d", c)
	}
	off := setup(t, mockapi.Config{DisablePromptCache: true})
	usageOf(t, off.chat(body("mimo-v2.6-pro", "a")))
	if _, c := usageOf(t, off.chat(body("mimo-v2.6-pro", "a"))); c != 0 {
		t.Errorf("DisablePromptCache: cached %d", c)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The modes can be set over HTTP, as a test driving the binary does.
func TestModesOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	r := b.do(http.MethodPut, "/mock/config", `{"burst_402":1,"omit_retry_after":true,"quota_tokens":1000,"quota_window":"10m",`+
		`"prompt_cache":false,"retired_models":["mimo-v2.6-pro-ultraspeed"],"forward":{"mimo-v2.5-pro":"mimo-v2.6-pro"},`+
		`"blocked_terms":["nope"],"rate_421":0.25,"rate_451":0.25}`, nil)
	if r.status != 200 {
		t.Fatalf("PUT /mock/config: %d %s", r.status, r.body)
	}
	var s mockapi.Settings
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatal(err)
	}
	if s.Burst402Left != 1 || !s.OmitRetryAfter || s.QuotaTokens != 1000 || time.Duration(s.QuotaWindow) != 10*time.Minute || s.PromptCache ||
		!s.Models["mimo-v2.6-pro-ultraspeed"].Retired || s.Forward["mimo-v2.5-pro"] != "mimo-v2.6-pro" ||
		len(s.BlockedTerms) != 1 || s.Rates["421"] != 0.25 || s.Rates["451"] != 0.25 || len(s.Retired) != 3 {
		t.Errorf("settings = %+v", s)
	}
	if r := b.chat(simple("mimo-v2.5-pro", "hi")); r.status != 402 {
		t.Errorf("first call in the burst = %d", r.status)
	}
	bad := []string{
		`{"burst_402":-1}`, `{"quota_tokens":-5}`, `{"retired_models":["gpt-4o"]}`,
		`{"forward":{"mimo-v2.6-pro":"mimo-v2.6-flash"}}`, `{"rate_421":0.9,"rate_451":0.9}`,
	}
	for _, body := range bad {
		if r := b.do(http.MethodPut, "/mock/config", body, nil); r.status != 400 {
			t.Errorf("PUT %s = %d", body, r.status)
		}
	}
}
