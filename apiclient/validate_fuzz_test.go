package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzValidate checks request validation against the contract, read
// independently with encoding/json: an accepted request has a known model,
// non-empty messages with known roles and content, and every number in
// range, with stream not true; a refused one gets one short sentence
// naming its field.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}]}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"temperature":2,"top_p":0,"n":1,"max_tokens":131072}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"max_tokens":131073}`,
		`{"model":"mimo-v2.5-tts","messages":[{"role":"user","content":"x"}],"max_completion_tokens":99999999}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"robot","content":"x"}]}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":42}]}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"temperature":-0.0001}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"stream":true}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"n":0}`,
		`{"model":"` + strings.Repeat("m", 500) + `","messages":[]}`,
		`{"model":"mimo-v2.6-flash","messages":[],"model":"nope"}`,
		`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"temperature":1e400}`,
	} {
		f.Add([]byte(s))
	}
	models := DefaultModels()
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := ParseRequest(raw)
		if err != nil {
			return // FuzzParseRequest covers parsing
		}
		verr := models.Validate(req)
		if verr != nil {
			var ve *ValidationError
			msg := verr.Error()
			switch {
			case !errors.As(verr, &ve):
				t.Fatalf("Validate error %T, want *ValidationError", verr)
			case ve.Field == "":
				t.Fatalf("Validate error names no field: %q", msg)
			case strings.ContainsAny(msg, "\r\n"), !utf8.ValidString(msg):
				t.Fatalf("Validate error is not one line of text: %q", msg)
			case len(msg) > 400:
				t.Fatalf("Validate error is %d bytes: %.100q…", len(msg), msg)
			}
			return
		}

		var ref map[string]json.RawMessage
		if err := json.Unmarshal(raw, &ref); err != nil {
			t.Fatalf("accepted what encoding/json refuses: %v", err)
		}
		get := func(k string, v any) bool {
			r, ok := ref[k]
			if !ok || string(r) == "null" {
				return false
			}
			if err := json.Unmarshal(r, v); err != nil {
				t.Fatalf("accepted %s = %s, which is not a %T: %v", k, r, v, err)
			}
			return true
		}
		var model string
		get("model", &model)
		m, ok := models.Lookup(model)
		if !ok {
			t.Fatalf("accepted model %q", model)
		}
		var msgs []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if !get("messages", &msgs) || len(msgs) == 0 {
			t.Fatal("accepted a request without messages")
		}
		for i, msg := range msgs {
			if !slices.Contains([]string{"system", "user", "assistant", "tool", "developer"}, msg.Role) {
				t.Fatalf("accepted messages[%d].role %q", i, msg.Role)
			}
			c := bytes.TrimSpace(msg.Content)
			empty := len(c) == 0 || string(c) == "null"
			if empty && msg.Role != "assistant" || !empty && c[0] != '"' && c[0] != '[' {
				t.Fatalf("accepted messages[%d].content %s for role %s", i, c, msg.Role)
			}
		}
		var fl float64
		if get("temperature", &fl) && !(fl >= 0 && fl <= 2) {
			t.Fatalf("accepted temperature %v", fl)
		}
		if get("top_p", &fl) && !(fl >= 0 && fl <= 1) {
			t.Fatalf("accepted top_p %v", fl)
		}
		var n int
		if get("n", &n) && n < 1 {
			t.Fatalf("accepted n %d", n)
		}
		for _, k := range []string{"max_tokens", "max_completion_tokens"} {
			if get(k, &n) && (n <= 0 || m.MaxOutputTokens > 0 && n > m.MaxOutputTokens) {
				t.Fatalf("accepted %s %d for %s (limit %d)", k, n, m.Name, m.MaxOutputTokens)
			}
		}
		var stream bool
		if get("stream", &stream) && stream {
			t.Fatal("accepted stream: true")
		}
	})
}
