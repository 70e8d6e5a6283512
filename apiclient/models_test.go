package apiclient

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestModelsValidate(t *testing.T) {
	t.Parallel()
	ptrF := func(f float64) *float64 { return &f }
	ptrI := func(n int) *int { return &n }
	yes, no := true, false
	valid := func() *Request { return NewRequest("mimo-v2.6-pro", NewMessage("user", "hi")) }
	cases := []struct {
		name   string
		change func(r *Request) *Request
		field  string
		want   string
	}{
		{"valid", func(r *Request) *Request { return r }, "", ""},
		{"nil request", func(*Request) *Request { return nil }, "", "request is missing"},
		{"no model", func(r *Request) *Request { r.Model = ""; return r }, "model", "model is required"},
		{"unknown model", func(r *Request) *Request { r.Model = "gpt-4"; return r }, "model",
			`model "gpt-4" is not one of mimo-v2.6-pro, mimo-v2.6-flash, mimo-v2.6-pro-ultraspeed`},
		{"long model name", func(r *Request) *Request { r.Model = strings.Repeat("é", 100); return r }, "model",
			`model "` + strings.Repeat("é", 32) + `"… is not one of mimo-v2.6-pro, mimo-v2.6-flash, mimo-v2.6-pro-ultraspeed`},
		{"model case", func(r *Request) *Request { r.Model = "MiMo-V2.6-Pro"; return r }, "model",
			`model "MiMo-V2.6-Pro" is not one of mimo-v2.6-pro, mimo-v2.6-flash, mimo-v2.6-pro-ultraspeed`},
		{"no messages", func(r *Request) *Request { r.Messages = nil; return r }, "messages", "messages must not be empty"},
		{"empty messages", func(r *Request) *Request { r.Messages = []Message{}; return r }, "messages", "messages must not be empty"},
		{"bad role", func(r *Request) *Request {
			r.Messages = append(r.Messages, NewMessage("assistant", "ok"), NewMessage("robot", "beep"))
			return r
		}, "messages[2].role", `messages[2].role "robot" is not one of system, user, assistant, tool, developer`},
		{"no role", func(r *Request) *Request { r.Messages[0].Role = ""; return r }, "messages[0].role", "messages[0].role is required"},
		{"no content", func(r *Request) *Request { r.Messages[0].Content = nil; return r }, "messages[0].content", "messages[0].content is required"},
		{"null content", func(r *Request) *Request { r.Messages[0].Content = json.RawMessage(" null"); return r }, "messages[0].content", "messages[0].content is required"},
		{"number content", func(r *Request) *Request { r.Messages[0].Content = json.RawMessage("5"); return r }, "messages[0].content",
			"messages[0].content must be a string or an array of content parts"},
		{"assistant tool call without content", func(r *Request) *Request {
			r.Messages = append(r.Messages, Message{Role: "assistant", Content: json.RawMessage("null"), ToolCalls: json.RawMessage(`[]`)})
			return r
		}, "", ""},
		{"content parts", func(r *Request) *Request {
			r.Messages[0].Content = json.RawMessage(`[{"type":"text","text":"hi"}]`)
			return r
		}, "", ""},
		{"temperature high", func(r *Request) *Request { r.Temperature = ptrF(2.5); return r }, "temperature", "temperature 2.5 is out of range 0–2"},
		{"temperature negative", func(r *Request) *Request { r.Temperature = ptrF(-0.1); return r }, "temperature", "temperature -0.1 is out of range 0–2"},
		{"temperature edges", func(r *Request) *Request { r.Temperature = ptrF(2); r.TopP = ptrF(0); return r }, "", ""},
		{"top_p", func(r *Request) *Request { r.TopP = ptrF(1.5); return r }, "top_p", "top_p 1.5 is out of range 0–1"},
		{"n", func(r *Request) *Request { r.N = ptrI(0); return r }, "n", "n must be at least 1, got 0"},
		{"max_tokens zero", func(r *Request) *Request { r.MaxTokens = ptrI(0); return r }, "max_tokens", "max_tokens must be greater than 0, got 0"},
		{"max_tokens over", func(r *Request) *Request { r.MaxTokens = ptrI(131073); return r }, "max_tokens",
			"max_tokens 131073 exceeds the limit of 131072 for model mimo-v2.6-pro"},
		{"max_tokens at limit", func(r *Request) *Request { r.MaxTokens = ptrI(131072); return r }, "", ""},
		{"max_completion_tokens over ultraspeed", func(r *Request) *Request {
			r.Model = "mimo-v2.6-pro-ultraspeed"
			r.MaxCompletionTokens = ptrI(131073)
			return r
		}, "max_completion_tokens", "max_completion_tokens 131073 exceeds the limit of 131072 for model mimo-v2.6-pro-ultraspeed"},
		{"flash at limit", func(r *Request) *Request { r.Model = "mimo-v2.6-flash"; r.MaxTokens = ptrI(131072); return r }, "", ""},
		{"retired v2", func(r *Request) *Request { r.Model = "mimo-v2-flash"; return r }, "model",
			`model "mimo-v2-flash" is not one of ` + "mimo-v2.6-pro, mimo-v2.6-flash, mimo-v2.6-pro-ultraspeed" + ` (it was retired on 2026-06-30; its successor is mimo-v2.6-flash)`},
		{"retired v2.5", func(r *Request) *Request { r.Model = "mimo-v2.5-pro"; return r }, "model",
			`model "mimo-v2.5-pro" is not one of ` + "mimo-v2.6-pro, mimo-v2.6-flash, mimo-v2.6-pro-ultraspeed" + ` (it was retired on 2026-10-21; its successor is mimo-v2.6-pro)`},
		{"max_completion_tokens negative", func(r *Request) *Request { r.MaxCompletionTokens = ptrI(-5); return r },
			"max_completion_tokens", "max_completion_tokens must be greater than 0, got -5"},
		{"stream", func(r *Request) *Request { r.Stream = &yes; return r }, "stream", "stream must not be true: a queue cannot stream"},
		{"stream false", func(r *Request) *Request { r.Stream = &no; return r }, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := DefaultModels().Validate(tc.change(valid()))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			if ve.Field != tc.field || err.Error() != tc.want {
				t.Errorf("Validate = field %q, %q\nwant field %q, %q", ve.Field, err, tc.field, tc.want)
			}
			if c := Classify(err); c.Class != ClassTerminal || c.Reason != ReasonValidation {
				t.Errorf("Classify = %+v", c)
			}
		})
	}
}

func TestParseModels(t *testing.T) {
	t.Parallel()
	ms, err := ParseModels(" mimo-v2.6-pro=131072, foo ,bar=0,")
	if err != nil {
		t.Fatal(err)
	}
	if got := ms.String(); got != "mimo-v2.6-pro=131072,foo,bar" {
		t.Errorf("String() = %q", got)
	}
	if m, ok := ms.Lookup("mimo-v2.6-pro"); !ok || m.MaxOutputTokens != 131072 {
		t.Errorf("Lookup = %+v, %v", m, ok)
	}
	if _, ok := ms.Lookup("mimo-v2.6-flash"); ok {
		t.Error("a parsed list replaces the defaults")
	}
	again, err := ParseModels(DefaultModels().String())
	if err != nil || again.String() != DefaultModels().String() {
		t.Errorf("round trip = %v, %v", again, err)
	}
	bad := map[string]string{
		"":                   "model list is empty",
		" , ":                "model list is empty",
		"=5":                 `model list item "=5" has no model name`,
		"a=x":                `model a: max output tokens "x" must be a non-negative integer`,
		"a=-1":               `model a: max output tokens "-1" must be a non-negative integer`,
		"a,a":                `model "a" is listed twice`,
		"a b":                `model name "a b" must not contain spaces or control characters`,
		"mimo-v2.6-pro=1e10": `model mimo-v2.6-pro: max output tokens "1e10" must be a non-negative integer`,
	}
	for in, want := range bad {
		if _, err := ParseModels(in); err == nil || err.Error() != want {
			t.Errorf("ParseModels(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestClientUsesConfiguredModels(t *testing.T) {
	t.Parallel()
	ms, _ := ParseModels("my-model=10")
	b := setup(t, nil, func(o *Options) { o.Models = ms })
	n := 11
	r := NewRequest("my-model", NewMessage("user", "hi"))
	r.MaxTokens = &n
	if err := b.client.Validate(r); err == nil || err.Error() != "max_tokens 11 exceeds the limit of 10 for model my-model" {
		t.Errorf("Validate = %v", err)
	}
	n = 10
	if _, err := b.client.Do(ctxT(t), r); err != nil {
		t.Errorf("Do: %v", err)
	}
	if _, err := b.client.Do(ctxT(t), testRequest()); err == nil || !strings.Contains(err.Error(), "is not one of my-model") {
		t.Errorf("Do with a default model: %v", err)
	}
}

func TestUncheckedLimit(t *testing.T) {
	t.Parallel()
	ms, err := ParseModels("mimo-v2.5-tts")
	if err != nil {
		t.Fatal(err)
	}
	n := 10_000_000
	r := NewRequest("mimo-v2.5-tts", NewMessage("assistant", "speak"))
	r.MaxTokens = &n
	if err := ms.Validate(r); err != nil {
		t.Errorf("Validate with no limit = %v", err)
	}
}

func TestDefaultModels(t *testing.T) {
	t.Parallel()
	if got := DefaultModels().String(); got != "mimo-v2.6-pro=131072,mimo-v2.6-flash=131072,mimo-v2.6-pro-ultraspeed=131072" {
		t.Errorf("DefaultModels() = %s", got)
	}
	// No retired name may be a default, and every successor must be current.
	current := DefaultModels()
	for _, r := range retirements {
		if _, ok := current.Lookup(r.Model); ok {
			t.Errorf("retired %s is a default model", r.Model)
		}
		if _, ok := current.Lookup(r.Successor); !ok && r.Successor != "mimo-v2.5-tts" {
			t.Errorf("successor %s of %s is not a current model", r.Successor, r.Model)
		}
	}
	if _, ok := LookupRetired("mimo-v2.6-pro"); ok {
		t.Error("LookupRetired(mimo-v2.6-pro) = true")
	}
	if r, ok := LookupRetired("mimo-v2-omni"); !ok || r.Date != "2026-06-30" || r.Successor != "mimo-v2.6-flash" {
		t.Errorf("LookupRetired(mimo-v2-omni) = %+v, %v", r, ok)
	}
}

func TestCatalogFrom(t *testing.T) {
	t.Parallel()
	known, _ := ParseModels("mimo-v2.6-pro=1000,mimo-v2.5-tts=8192")
	got := CatalogFrom([]string{"mimo-v2.6-pro", "", "mimo-v2.6-flash", "mimo-v2.5-tts", "new-model", "mimo-v2.6-pro"}, known)
	if s := got.String(); s != "mimo-v2.6-pro=1000,mimo-v2.6-flash=131072,mimo-v2.5-tts=8192,new-model" {
		t.Errorf("CatalogFrom = %s", s)
	}
	if len(CatalogFrom(nil, known)) != 0 {
		t.Error("CatalogFrom(nil) is not empty")
	}
	err := got.Validate(NewRequest("mimo-v2.6-pro-ultraspeed", NewMessage("user", "hi")))
	if err == nil || err.Error() != `model "mimo-v2.6-pro-ultraspeed" is not one of mimo-v2.6-pro, mimo-v2.6-flash, mimo-v2.5-tts, new-model` {
		t.Errorf("Validate against a live catalogue = %v", err)
	}
}
