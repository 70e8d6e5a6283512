package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzKey is all lower case, so that a lower-casing step (media types) cannot
// hide a leak from the check.
const fuzzKey = "sk-fuzz-marker-9c1e"

func FuzzParseErrorBody(f *testing.F) {
	for _, shape := range errorShapes() {
		f.Add(429, "application/json", "7", []byte(shape.body(429)))
	}
	f.Add(401, "application/json", "", []byte(`{"error":{"code":"invalid_api_key","message":"Incorrect API key provided: KEY"}}`))
	f.Add(401, "application/json", "", []byte(`{"error":"\u0073k-fuzz-marker-9c1e","KEY":["KEY"]}`))
	f.Add(402, "application/json", "", []byte(`{"type":"server_error","message":"Upstream request failed: Insufficient account funds"}`))
	f.Add(502, "text/KEY", "Sat, 01 Mar 2025 12:00:30 GMT", []byte("<html>KEY</html>"))
	f.Add(500, "", "", []byte(`{"error":{"message":"a\u2028b\u0000KEY\u202e"}}`))
	f.Add(400, "application/json", "", []byte(`{"error":{"code":1e999,"message":{"nested":"KEY"}}}`))
	f.Add(503, "application/json", "-1", []byte{})
	f.Add(0, "", "", []byte(`{"error":{"code":"4`))
	// The shapes of today's API (docs/mimo-api.md): a content-filter 421, a
	// proxy's HTML 451, a used-up Token Plan quota, a 402 without the error
	// wrapper, a "Param Incorrect" whose param is a sentence, a retired model.
	f.Add(421, "application/json", "", []byte(bodyFilter421))
	f.Add(451, "text/html; charset=utf-8", "", []byte(html451))
	f.Add(429, "application/json", "", []byte(bodyQuota429))
	f.Add(429, "application/json", "", []byte(`{"error":{"code":"429","message":"Token Plan 额度已用完 KEY","type":"limitation"}}`))
	f.Add(402, "application/json", "", []byte(bodyFunds402))
	f.Add(403, "application/json", "", []byte(bodyIllegal403))
	f.Add(400, "application/json", "", []byte(bodyParam400))
	f.Add(400, "application/json", "", []byte(bodyModel400))
	f.Add(404, "text/plain", "", []byte("404 page not found KEY"))

	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte) {
		if status < 100 || status > 999 {
			status = 100 + (status%900+900)%900
		}
		// Let the fuzzer plant the key anywhere by writing KEY.
		body = bytes.ReplaceAll(body, []byte("KEY"), []byte(fuzzKey))
		contentType = strings.ReplaceAll(contentType, "KEY", fuzzKey)
		h := http.Header{
			"Content-Type": {contentType},
			"Retry-After":  {retryAfter},
			"X-Request-Id": {strings.ReplaceAll(retryAfter, "KEY", fuzzKey)},
		}
		e := newAPIError(status, h, body, fuzzKey, now)
		msg := e.Error()
		switch {
		case msg == "":
			t.Fatal("Error() is empty")
		case strings.Contains(msg, fuzzKey):
			t.Fatalf("Error() contains the key: %q", msg)
		case strings.ContainsAny(msg, "\r\n\x00"):
			t.Fatalf("Error() is not one line: %q", msg)
		case !utf8.ValidString(msg):
			t.Fatalf("Error() is not UTF-8: %q", msg)
		case len(e.Message) > maxMessageLen+len("…"):
			t.Fatalf("Message is %d bytes", len(e.Message))
		case e.Code == "":
			t.Fatal("Code is empty")
		case e.RetryAfter < 0 || e.RetryAfter > MaxRetryAfter:
			t.Fatalf("RetryAfter = %s", e.RetryAfter)
		}
		if e.NonJSON && e.Body != nil {
			t.Fatalf("NonJSON with a JSON Body: %q", e.Body)
		}
		if strings.Contains(e.Code+e.RawCode+e.Type+e.Param+e.RequestID+e.Hint, fuzzKey) {
			t.Fatalf("a field contains the key: %+v", e)
		}
		if e.Body != nil {
			if !json.Valid(e.Body) {
				t.Fatalf("Body is not JSON: %q", e.Body)
			}
			if leaksKey(e.Body, fuzzKey) {
				t.Fatalf("Body contains the key: %q", e.Body)
			}
		}
		c := Classify(e)
		if c.Class == ClassNone || c.StatusCode != status || c.Reason == "" {
			t.Fatalf("Classify = %+v", c)
		}
		if c.Reason == ReasonQuotaExhausted && (status != 429 || !c.Retryable()) {
			t.Fatalf("quota_exhausted for %d: %+v", status, c)
		}
		if c.Reason == ReasonProxyError && (!e.NonJSON || !c.PauseLane || c.Retryable()) {
			t.Fatalf("proxy_error without a page: %+v", c)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	seeds := []struct{ ms, ra string }{
		{"", "7"}, {"", "1.5"}, {"", "Sat, 01 Mar 2025 12:00:30 GMT"}, {"", "Saturday, 01-Mar-25 12:01:00 GMT"},
		{"", "Sat Mar  1 12:00:10 2025"}, {"", "-5"}, {"", "1e3"}, {"", "99999999999999999999999"},
		{"1500", ""}, {"250.5", "7"}, {"-1", "7"}, {"NaN", "Inf"}, {"", "Fri, 31 Dec 9999 23:59:59 GMT"},
		{"", "Mon, 01 Jan 0001 00:00:00 GMT"},
	}
	for _, s := range seeds {
		f.Add(s.ms, s.ra, int64(1740830400))
	}
	f.Fuzz(func(t *testing.T, ms, ra string, nowUnix int64) {
		h := http.Header{}
		if ms != "" {
			h.Set("Retry-After-Ms", ms)
		}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		d, ok := ParseRetryAfter(h, time.Unix(nowUnix, 0))
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q, %q) = %s", ms, ra, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q, %q) = %s but not ok", ms, ra, d)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(userBody))
	f.Add([]byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}]}`))
	f.Add([]byte(`{"model":null,"max_tokens":1e3,"n":2.0,"temperature":null,"stream":false,"messages":null,"stop":null}`))
	f.Add([]byte(`{"model":"a","x":1,"model":"b","x":2}`))
	f.Add([]byte(`{"\u006dodel":"m","messages":[{"role":"user","content":[{"type":"text","text":"\ud83d\ude00"}],"extra":{"a":[]}}]}`))
	f.Add([]byte(`  {"a" : { "b" : [ 1 , "x\"y" , {} ] } }  `))
	f.Add([]byte(`[{"model":"x"}]`))
	f.Add([]byte(`{"temperature":"hot"}`))
	f.Add([]byte(`{"max_tokens":1.5}`))
	f.Add([]byte("{\"\xff\":1}"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseRequest(raw)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || err.Error() == "" {
				t.Fatalf("ParseRequest error %T %q, want a *ValidationError", err, err)
			}
			return
		}
		var ref map[string]json.RawMessage
		if err := json.Unmarshal(raw, &ref); err != nil || ref == nil {
			t.Fatalf("ParseRequest accepted what encoding/json rejects: %v", err)
		}

		// Unchanged, the body is sent exactly as given.
		body, err := r.body()
		if err != nil || !bytes.Equal(body, raw) {
			t.Fatalf("body() = %q, %v; want the input", body, err)
		}

		// Every field agrees with encoding/json; unknown ones byte for byte.
		unknown := 0
		for k, v := range ref {
			if isKnownKey(k) {
				continue
			}
			unknown++
			if !bytes.Equal(r.Extra[k], v) {
				t.Fatalf("Extra[%q] = %q, encoding/json says %q", k, r.Extra[k], v)
			}
		}
		if len(r.Extra) != unknown {
			t.Fatalf("Extra has %d fields, encoding/json %d", len(r.Extra), unknown)
		}
		if v, ok := ref["messages"]; ok && string(v) != "null" {
			var msgs []json.RawMessage
			if json.Unmarshal(v, &msgs) != nil || len(msgs) != len(r.Messages) {
				t.Fatalf("Messages = %d, encoding/json %d", len(r.Messages), len(msgs))
			}
		}
		var ref2 struct {
			Model *string `json:"model"`
		}
		if json.Unmarshal(raw, &ref2) == nil && ref2.Model != nil && *ref2.Model != r.Model {
			// encoding/json matches keys case-insensitively; only compare exact keys.
			if _, exact := ref["model"]; exact {
				t.Fatalf("Model = %q, encoding/json %q", r.Model, *ref2.Model)
			}
		}

		// Changed, the body is still valid JSON, with the change and every
		// other field as it was.
		temp := 0.5
		r.Temperature = &temp
		out, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON after a change: %v", err)
		}
		r2, err := ParseRequest(out)
		if err != nil {
			t.Fatalf("re-parse %q: %v", out, err)
		}
		if r2.Temperature == nil || *r2.Temperature != 0.5 || r2.Model != r.Model || len(r2.Messages) != len(r.Messages) ||
			!rawMapsEqual(r2.Extra, r.Extra) {
			t.Fatalf("after a change: %q parsed as %+v", out, r2)
		}
		for i := range r.Messages {
			if !messagesEqual(r.Messages[i], r2.Messages[i]) {
				t.Fatalf("messages[%d] changed: %+v vs %+v", i, r.Messages[i], r2.Messages[i])
			}
		}
		_ = r.EstimatePromptTokens()
		_ = DefaultModels().Validate(r)
	})
}
