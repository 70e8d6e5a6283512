package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mimoq/mimoq/internal/jsonscan"
)

// userBody is a batch-file body with everything a user might write: fields
// this package does not model, odd number formats, nesting, escapes, and
// whitespace and key order of its own.
const userBody = `{
  "thinking": {"type": "enabled", "budget_tokens": 1.024e3},
  "model": "mimo-v2.6-pro",
  "messages": [
    {"role": "system", "content": "Answer in JSON. ` + bodyMarker + `"},
    {"role": "user", "content": [
        {"type": "text", "text": "What is in this picture? \u00e9\ud83d\ude00 é"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]},
    {"role": "assistant", "content": null, "reasoning_content": "The user wants a lookup.",
     "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "42", "x_custom": [1, 2.50, -0.0]}
  ],
  "temperature": 1.0e0,
  "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks things up <fast> & cheap",
             "parameters": {"type": "object", "properties": {"q": {"type": "integer", "minimum": 0E0}}, "required": ["q"]}}}],
  "tool_choice": "auto",
  "audio": {"format": "wav", "voice": "mimo_default"},
  "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true,
                      "schema": {"type": "object", "additionalProperties": false}}},
  "max_completion_tokens": 2048,
  "stop": ["\n\n", "END"],
  "seed": 123456789012345678901234567890,
  "metadata": {"nested": {"deeper": {"deepest": [null, true, false, {"": ""}]}}},
  "top_p": 0.95
}
`

// members returns the top-level members of a JSON object, as written, in order.
func members(t *testing.T, b []byte) ([]string, map[string]json.RawMessage) {
	t.Helper()
	var keys []string
	vals := map[string]json.RawMessage{}
	if err := jsonscan.Members(b, func(k string, v []byte) error {
		keys = append(keys, k)
		vals[k] = v
		return nil
	}); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	// Cross-check the scanner against encoding/json, which also keeps each
	// value's bytes as written.
	var ref map[string]json.RawMessage
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	for k, v := range ref {
		if !bytes.Equal(vals[k], v) {
			t.Fatalf("scanner and encoding/json disagree on %q: %s vs %s", k, vals[k], v)
		}
	}
	return keys, vals
}

func TestRequestSentByteForByte(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	req, err := ParseRequest([]byte(userBody))
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if _, err := b.client.Do(ctxT(t), req); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if got := b.last(t).body; string(got) != userBody {
		t.Errorf("server received\n%s\nwant the body as written\n%s", got, userBody)
	}
}

func TestRequestKeepsUnknownFieldsWhenChanged(t *testing.T) {
	t.Parallel()
	origKeys, orig := members(t, []byte(userBody))

	cases := map[string]struct {
		change  func(r *Request)
		changed []string // top-level fields re-encoded
		check   func(t *testing.T, vals map[string]json.RawMessage)
	}{
		"temperature": {
			change:  func(r *Request) { v := 0.5; r.Temperature = &v },
			changed: []string{"temperature"},
			check: func(t *testing.T, vals map[string]json.RawMessage) {
				if string(vals["temperature"]) != "0.5" {
					t.Errorf("temperature = %s", vals["temperature"])
				}
			},
		},
		"model and max tokens": {
			change: func(r *Request) {
				r.Model = "mimo-v2.6-flash"
				r.MaxCompletionTokens = nil
				n := 100
				r.MaxTokens = &n
			},
			changed: []string{"model", "max_completion_tokens", "max_tokens"},
			check: func(t *testing.T, vals map[string]json.RawMessage) {
				if string(vals["model"]) != `"mimo-v2.6-flash"` || string(vals["max_tokens"]) != "100" {
					t.Errorf("model = %s, max_tokens = %s", vals["model"], vals["max_tokens"])
				}
				if _, ok := vals["max_completion_tokens"]; ok {
					t.Error("max_completion_tokens was cleared but still sent")
				}
			},
		},
		"appended message": {
			change: func(r *Request) {
				r.Messages = append(r.Messages, NewMessage("user", "and <then>?"))
			},
			changed: []string{"messages"},
			check: func(t *testing.T, vals map[string]json.RawMessage) {
				var msgs []map[string]json.RawMessage
				if err := json.Unmarshal(vals["messages"], &msgs); err != nil || len(msgs) != 5 {
					t.Fatalf("messages = %s (%v)", vals["messages"], err)
				}
				var origMsgs []map[string]json.RawMessage
				_ = json.Unmarshal(orig["messages"], &origMsgs)
				for i, om := range origMsgs {
					for k, v := range om {
						if !bytes.Equal(msgs[i][k], v) {
							t.Errorf("messages[%d].%s = %s, want %s", i, k, msgs[i][k], v)
						}
					}
					if len(msgs[i]) != len(om) {
						t.Errorf("messages[%d] has %d fields, want %d", i, len(msgs[i]), len(om))
					}
				}
				if string(msgs[4]["content"]) != `"and <then>?"` {
					t.Errorf("new content = %s", msgs[4]["content"])
				}
			},
		},
		"extra field added and removed": {
			change: func(r *Request) {
				delete(r.Extra, "tool_choice")
				r.Extra["parallel_tool_calls"] = json.RawMessage(`false`)
			},
			changed: []string{"tool_choice", "parallel_tool_calls"},
			check: func(t *testing.T, vals map[string]json.RawMessage) {
				if _, ok := vals["tool_choice"]; ok {
					t.Error("tool_choice was deleted but still sent")
				}
				if string(vals["parallel_tool_calls"]) != "false" {
					t.Errorf("parallel_tool_calls = %s", vals["parallel_tool_calls"])
				}
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			req, err := ParseRequest([]byte(userBody))
			if err != nil {
				t.Fatal(err)
			}
			tc.change(req)
			if _, err := b.client.Do(ctxT(t), req); err != nil {
				t.Fatalf("Do: %v", err)
			}
			keys, vals := members(t, b.last(t).body)
			for _, k := range origKeys {
				if slices.Contains(tc.changed, k) {
					continue
				}
				if !bytes.Equal(vals[k], orig[k]) {
					t.Errorf("%s = %s, want it byte for byte as written: %s", k, vals[k], orig[k])
				}
			}
			// Unchanged keys keep their order.
			var kept []string
			for _, k := range keys {
				if !slices.Contains(tc.changed, k) {
					kept = append(kept, k)
				}
			}
			var want []string
			for _, k := range origKeys {
				if !slices.Contains(tc.changed, k) {
					want = append(want, k)
				}
			}
			if !slices.Equal(kept, want) {
				t.Errorf("key order = %v, want %v", kept, want)
			}
			tc.check(t, vals)

			// MarshalJSON sends the same as Do.
			again, err := marshalNoEscape(req)
			if err != nil {
				t.Fatal(err)
			}
			var c bytes.Buffer
			_ = json.Compact(&c, b.last(t).body)
			if !bytes.Equal(again, c.Bytes()) {
				t.Errorf("json.Marshal = %s\nwant %s", again, c.Bytes())
			}
		})
	}
}

func TestParseRequestTypedFields(t *testing.T) {
	t.Parallel()
	r, err := ParseRequest([]byte(userBody))
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "mimo-v2.6-pro" || len(r.Messages) != 4 || *r.Temperature != 1 || *r.TopP != 0.95 ||
		*r.MaxCompletionTokens != 2048 || r.MaxTokens != nil || r.Stream != nil || r.N != nil ||
		string(r.Stop) != `["\n\n", "END"]` {
		t.Errorf("typed fields = %+v", r)
	}
	wantExtra := []string{"audio", "metadata", "response_format", "seed", "thinking", "tool_choice", "tools"}
	if got := slicesSortedKeys(r.Extra); !slices.Equal(got, wantExtra) {
		t.Errorf("Extra keys = %v, want %v", got, wantExtra)
	}
	m := r.Messages[2]
	if m.Role != "assistant" || string(m.Content) != "null" || string(m.Extra["reasoning_content"]) != `"The user wants a lookup."` || !bytes.HasPrefix(m.ToolCalls, []byte(`[{"id": "call_1"`)) {
		t.Errorf("messages[2] = %+v", m)
	}
	if r.Messages[3].ToolCallID != "call_1" || r.Messages[3].Text() != "42" {
		t.Errorf("messages[3] = %+v", r.Messages[3])
	}
	if got := r.Messages[1].Text(); got != "What is in this picture? é😀 é" {
		t.Errorf("Text() = %q", got)
	}
	if err := DefaultModels().Validate(r); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if r.MaxOutputTokens() != 2048 {
		t.Errorf("MaxOutputTokens = %d", r.MaxOutputTokens())
	}
}

// marshalNoEscape is json.Marshal without the HTML escaping it applies to a
// MarshalJSON's output.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func slicesSortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestParseRequestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body, field, want string
	}{
		{``, "", "request body is not valid JSON: unexpected end of JSON input at byte 0"},
		{`{"model": "x",}`, "", "request body is not valid JSON: invalid character '}' looking for beginning of object key string at byte 15"},
		{`[{"model": "x"}]`, "", "request body must be a JSON object"},
		{`"hello"`, "", "request body must be a JSON object"},
		{`{"model": "x"} {}`, "", "request body is not valid JSON: invalid character '{' after top-level value at byte 16"},
		{`{"model": 5}`, "model", "model must be a string"},
		{`{"messages": {"role": "user"}}`, "messages", "messages must be an array of messages"},
		{`{"messages": [{"role": "user", "content": "hi"}, "hi"]}`, "messages[1]", "messages[1] must be an object"},
		{`{"messages": [{"role": 1}]}`, "messages[0].role", "messages[0].role must be a string"},
		{`{"messages": [{"role": "tool", "tool_call_id": {}}]}`, "messages[0].tool_call_id", "messages[0].tool_call_id must be a string"},
		{`{"temperature": "hot"}`, "temperature", "temperature must be a number"},
		{`{"top_p": 1e999}`, "top_p", "top_p 1e999 is not a finite number"},
		{`{"max_tokens": 1.5}`, "max_tokens", "max_tokens must be an integer, got 1.5"},
		{`{"max_completion_tokens": "10"}`, "max_completion_tokens", "max_completion_tokens must be an integer"},
		{`{"n": true}`, "n", "n must be an integer"},
		{`{"stream": "yes"}`, "stream", "stream must be true or false"},
	}
	for _, tc := range cases {
		r, err := ParseRequest([]byte(tc.body))
		var ve *ValidationError
		if !errors.As(err, &ve) || r != nil {
			t.Errorf("ParseRequest(%s) = %v, %v; want a *ValidationError", tc.body, r, err)
			continue
		}
		if ve.Field != tc.field || err.Error() != tc.want {
			t.Errorf("ParseRequest(%s) = field %q, %q; want field %q, %q", tc.body, ve.Field, err, tc.field, tc.want)
		}
	}
}

func TestParseRequestLenientNumbersAndNulls(t *testing.T) {
	t.Parallel()
	r, err := ParseRequest([]byte(`{"model":null,"max_tokens":1e3,"n":2.0,"temperature":null,"stream":false,"messages":null,"stop":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "" || *r.MaxTokens != 1000 || *r.N != 2 || r.Temperature != nil || *r.Stream || r.Messages != nil {
		t.Errorf("r = %+v", r)
	}
	// Unchanged, the body goes out as written, 1e3 and all.
	b, _ := r.body()
	if !strings.Contains(string(b), `"max_tokens":1e3`) {
		t.Errorf("body = %s", b)
	}
}

func TestParseRequestDuplicateKeysLastWins(t *testing.T) {
	t.Parallel()
	r, err := ParseRequest([]byte(`{"model":"a","x":1,"model":"mimo-v2.6-pro","x":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "mimo-v2.6-pro" || string(r.Extra["x"]) != "2" {
		t.Errorf("r = %+v", r)
	}
	r.Model = "mimo-v2.6-flash"
	b, _ := r.body()
	if string(b) != `{"model":"mimo-v2.6-flash","x":2}` {
		t.Errorf("body = %s", b)
	}
}

func TestParseRequestCopiesInput(t *testing.T) {
	t.Parallel()
	raw := []byte(`{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled"}}`)
	want := string(raw)
	r, err := ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] = ' '
	}
	b, _ := json.Marshal(r)
	if string(b) != want {
		t.Errorf("after reusing the input: %s", b)
	}
	// Appending to a value cannot spill into the stored body.
	_ = append(r.Extra["thinking"], "garbage"...)
	if b, _ := r.body(); string(b) != want {
		t.Errorf("after appending to a value: %s", b)
	}
}

func TestRequestEmbedded(t *testing.T) {
	t.Parallel()
	var payload struct {
		CustomID string   `json:"custom_id"`
		Body     Request  `json:"body"`
		Other    *Request `json:"other"`
	}
	line := `{"custom_id":"req-1","body":{"model":"mimo-v2.6-flash", "messages":[{"role":"user","content":"Hi"}], "thinking":{"type":"enabled"}},"other":null}`
	if err := json.Unmarshal([]byte(line), &payload); err != nil {
		t.Fatal(err)
	}
	b, _ := payload.Body.body()
	if want := `{"model":"mimo-v2.6-flash", "messages":[{"role":"user","content":"Hi"}], "thinking":{"type":"enabled"}}`; string(b) != want {
		t.Errorf("embedded body = %s, want it as written", b)
	}
	if payload.Other != nil {
		t.Errorf("null request = %+v", payload.Other)
	}
	err := json.Unmarshal([]byte(`{"body":{"model":1}}`), &payload)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "model" {
		t.Errorf("err = %v, want a validation error on model", err)
	}
}

func TestNewRequestMarshal(t *testing.T) {
	t.Parallel()
	temp := 0.7
	n := 256
	r := NewRequest("mimo-v2.6-flash", NewMessage("system", "Be <brief> & kind."), NewMessage("user", "Hi"))
	r.Temperature = &temp
	r.MaxTokens = &n
	r.Extra = map[string]json.RawMessage{"thinking": json.RawMessage(`{"type":"disabled"}`), "model": json.RawMessage(`"ignored"`)}
	b, err := marshalNoEscape(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"mimo-v2.6-flash","messages":[{"role":"system","content":"Be <brief> & kind."},{"role":"user","content":"Hi"}],"temperature":0.7,"max_tokens":256,"thinking":{"type":"disabled"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	// And back.
	var back Request
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Model != r.Model || len(back.Messages) != 2 || back.Messages[0].Text() != "Be <brief> & kind." || string(back.Extra["thinking"]) != `{"type":"disabled"}` {
		t.Errorf("back = %+v", back)
	}
}

func TestMarshalRejectsInvalidRaw(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		r     *Request
		field string
	}{
		"extra":   {&Request{Model: "m", Extra: map[string]json.RawMessage{"tools": json.RawMessage(`[`)}}, "tools"},
		"content": {NewRequest("m", Message{Role: "user", Content: json.RawMessage(`{"a"`)}), "messages[0].content"},
		"stop":    {&Request{Model: "m", Stop: json.RawMessage(`x`)}, "stop"},
	}
	for name, tc := range cases {
		_, err := tc.r.body()
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: err = %v, want a validation error on %s", name, err, tc.field)
		}
	}
}

func TestMessageJSON(t *testing.T) {
	t.Parallel()
	in := `{"role":"assistant","content":null,"audio":{"id":"a1"},"name":"bot","tool_calls":[]}`
	var m Message
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if m.Role != "assistant" || m.Name != "bot" || string(m.Extra["audio"]) != `{"id":"a1"}` {
		t.Errorf("m = %+v", m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"role":"assistant","content":null,"name":"bot","tool_calls":[],"audio":{"id":"a1"}}`; string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	if err := json.Unmarshal([]byte(`[1]`), &m); err == nil || !strings.Contains(err.Error(), "must be an object") {
		t.Errorf("array: err = %v", err)
	}
}

func TestEstimatePromptTokens(t *testing.T) {
	t.Parallel()
	cases := []struct {
		r    *Request
		want int
	}{
		// 3 priming + 4 per message + role "user" (1) + 16 ASCII bytes (4).
		{NewRequest("m", NewMessage("user", "0123456789abcdef")), 3 + 4 + 1 + 4},
		// Five CJK characters count one each.
		{NewRequest("m", NewMessage("user", "你好，世界")), 3 + 4 + 1 + 5},
		// An image part counts 1000.
		{NewRequest("m", Message{Role: "user", Content: json.RawMessage(`[{"type":"text","text":"abcd"},{"type":"image_url","image_url":{"url":"data:..."}}]`)}), 3 + 4 + 1 + 1 + 1000},
		{NewRequest("m"), 3},
	}
	for _, tc := range cases {
		if got := tc.r.EstimatePromptTokens(); got != tc.want {
			t.Errorf("EstimatePromptTokens(%+v) = %d, want %d", tc.r.Messages, got, tc.want)
		}
	}
	withTools := NewRequest("m", NewMessage("user", "hi"))
	withTools.Extra = map[string]json.RawMessage{"tools": json.RawMessage(strings.Repeat("x", 400))}
	if got := withTools.EstimatePromptTokens(); got != 3+4+1+1+100 {
		t.Errorf("with tools = %d", got)
	}
}

func TestMaxOutputTokens(t *testing.T) {
	t.Parallel()
	a, b := 10, 20
	cases := []struct {
		mt, mct *int
		want    int
	}{{nil, nil, 0}, {&a, nil, 10}, {nil, &b, 20}, {&a, &b, 20}}
	for _, tc := range cases {
		r := &Request{MaxTokens: tc.mt, MaxCompletionTokens: tc.mct}
		if got := r.MaxOutputTokens(); got != tc.want {
			t.Errorf("MaxOutputTokens = %d, want %d", got, tc.want)
		}
	}
}
