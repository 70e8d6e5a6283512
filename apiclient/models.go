package apiclient

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ValidationError is a request that would be rejected and is therefore never
// sent. [Classify] calls it terminal.
type ValidationError struct {
	// Field is the offending field as a JSON path, e.g. "messages[2].role";
	// empty when the whole request is at fault.
	Field string
	// Reason completes the sentence that starts with Field, e.g.
	// `"robot" is not one of system, user, assistant, tool, developer`.
	Reason string
}

// Error returns one sentence naming the field, e.g. `temperature 2.5 is out of
// range 0–2`.
func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + " " + e.Reason
}

// Model is one model a request may name.
type Model struct {
	// Name is the model name as the API knows it, e.g. "mimo-v2.6-pro".
	Name string
	// MaxOutputTokens is the largest max_tokens / max_completion_tokens a request
	// may ask for; 0 leaves it unchecked.
	MaxOutputTokens int
}

// Models is the catalogue of models requests are validated against, in the
// order error messages list them.
type Models []Model

// The current MiMo text models (2026-12), the default catalogue. Each has a
// 1M-token context and 131,072 output tokens; docs/mimo-api.md gives the
// sources.
const (
	ModelPro           = "mimo-v2.6-pro"
	ModelFlash         = "mimo-v2.6-flash"
	ModelProUltraSpeed = "mimo-v2.6-pro-ultraspeed"
)

// DefaultMaxOutputTokens is the output limit of every current MiMo text model.
const DefaultMaxOutputTokens = 131072

// DefaultModels returns MiMo's current text models: mimo-v2.6-pro,
// mimo-v2.6-flash and mimo-v2.6-pro-ultraspeed, each with 131,072 output
// tokens. The speech models (mimo-v2.5-tts and its voice variants) are
// versioned apart from the text ones and are not in it: list them in
// MIMOQ_MODELS, or let the live catalogue (GET /models) bring them.
func DefaultModels() Models {
	return Models{
		{Name: ModelPro, MaxOutputTokens: DefaultMaxOutputTokens},
		{Name: ModelFlash, MaxOutputTokens: DefaultMaxOutputTokens},
		{Name: ModelProUltraSpeed, MaxOutputTokens: DefaultMaxOutputTokens},
	}
}

// Retirement records a model name the API stopped serving.
type Retirement struct {
	// Model is the retired name, e.g. "mimo-v2-flash".
	Model string
	// Date is the day it stopped resolving (Beijing time), e.g. "2026-06-30".
	Date string
	// Successor is the current model that took its place, at the same price
	// where Xiaomi says so.
	Successor string
}

// retirements are the MiMo text models retired so far (docs/mimo-api.md).
// A requeue with --set-model needs a successor, so each has one even when the
// way there went through an intermediate series (mimo-v2-pro was forwarded to
// mimo-v2.5-pro before both were retired).
var retirements = []Retirement{
	{Model: "mimo-v2-pro", Date: "2026-06-30", Successor: ModelPro},
	{Model: "mimo-v2-omni", Date: "2026-06-30", Successor: ModelFlash},
	{Model: "mimo-v2-flash", Date: "2026-06-30", Successor: ModelFlash},
	{Model: "mimo-v2-tts", Date: "2026-06-30", Successor: "mimo-v2.5-tts"},
	{Model: "mimo-v2.5-pro-ultraspeed", Date: "2026-09-08", Successor: ModelProUltraSpeed},
	{Model: "mimo-v2.5", Date: "2026-10-21", Successor: ModelFlash},
	{Model: "mimo-v2.5-pro", Date: "2026-10-21", Successor: ModelPro},
}

// LookupRetired reports whether name is a MiMo model the API no longer
// serves, when, and what replaced it.
func LookupRetired(name string) (Retirement, bool) {
	for _, r := range retirements {
		if r.Model == name {
			return r, true
		}
	}
	return Retirement{}, false
}

// ParseModels reads a catalogue written as comma-separated name[=maxOutputTokens]
// items, e.g. "mimo-v2.6-pro=131072,my-model" (no limit: unchecked). Spaces around
// items are ignored; a name may not repeat.
func ParseModels(s string) (Models, error) {
	var ms Models
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, limit, hasLimit := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		m := Model{Name: name}
		switch {
		case name == "":
			return nil, fmt.Errorf("model list item %q has no model name", item)
		case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return nil, fmt.Errorf("model name %q must not contain spaces or control characters", name)
		case seen[name]:
			return nil, fmt.Errorf("model %q is listed twice", name)
		}
		if hasLimit {
			n, err := strconv.Atoi(strings.TrimSpace(limit))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("model %s: max output tokens %q must be a non-negative integer", name, limit)
			}
			m.MaxOutputTokens = n
		}
		seen[name] = true
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, errors.New("model list is empty")
	}
	return ms, nil
}

// String writes the catalogue in the form [ParseModels] reads.
func (m Models) String() string {
	parts := make([]string, len(m))
	for i, model := range m {
		parts[i] = model.Name
		if model.MaxOutputTokens > 0 {
			parts[i] += "=" + strconv.Itoa(model.MaxOutputTokens)
		}
	}
	return strings.Join(parts, ",")
}

// Names returns the model names in order.
func (m Models) Names() []string {
	names := make([]string, len(m))
	for i, model := range m {
		names[i] = model.Name
	}
	return names
}

// refuse returns the [*ValidationError] for a request naming a model that is
// not in m: it lists what is available and, for a retired MiMo model, says
// when it was retired and what replaced it.
func (m Models) refuse(name string) *ValidationError {
	reason := fmt.Sprintf("%s is not one of %s", quoteShort(name), strings.Join(m.Names(), ", "))
	if r, ok := LookupRetired(name); ok {
		reason += fmt.Sprintf(" (it was retired on %s; its successor is %s)", r.Date, r.Successor)
	}
	return &ValidationError{Field: "model", Reason: reason}
}

// CatalogFrom turns a list of model IDs — the live catalogue from
// [Client.ListModels] — into a catalogue to validate against, in the order
// given. A model's output limit comes from known (the configured catalogue)
// when it lists the model, else from [DefaultModels], else it is left
// unchecked: GET /models does not say. Empty and repeated IDs are skipped.
func CatalogFrom(ids []string, known Models) Models {
	defaults := DefaultModels()
	out := make(Models, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		m, ok := known.Lookup(id)
		if !ok {
			m, ok = defaults.Lookup(id)
		}
		if !ok {
			m = Model{Name: id}
		}
		out = append(out, m)
	}
	return out
}

// Lookup returns the model called name.
func (m Models) Lookup(name string) (Model, bool) {
	for _, model := range m {
		if model.Name == name {
			return model, true
		}
	}
	return Model{}, false
}

// roleList names the roles a message may have, for error messages.
const roleList = "system, user, assistant, tool, developer"

func validRole(role string) bool {
	switch role {
	case "system", "user", "assistant", "tool", "developer":
		return true
	}
	return false
}

// Validate checks req before it is sent and returns nil or a [*ValidationError]
// naming the first offending field: model (required, one of m), messages
// (non-empty; each with a known role and, except for assistant messages, a
// content that is a string or an array of parts), temperature (0–2), top_p
// (0–1), n (≥ 1), max_tokens and max_completion_tokens (> 0 and within the
// model's limit) and stream (a queue cannot stream). Fields it does not model
// are the API's business.
func (m Models) Validate(req *Request) error {
	if req == nil {
		return &ValidationError{Reason: "request is missing"}
	}
	if req.Model == "" {
		return &ValidationError{Field: "model", Reason: "is required"}
	}
	model, ok := m.Lookup(req.Model)
	if !ok {
		return m.refuse(req.Model)
	}
	if len(req.Messages) == 0 {
		return &ValidationError{Field: "messages", Reason: "must not be empty"}
	}
	for i, msg := range req.Messages {
		if err := validateMessage(i, msg); err != nil {
			return err
		}
	}
	if t := req.Temperature; t != nil && !(*t >= 0 && *t <= 2) {
		return &ValidationError{Field: "temperature", Reason: formatFloat(*t) + " is out of range 0–2"}
	}
	if p := req.TopP; p != nil && !(*p >= 0 && *p <= 1) {
		return &ValidationError{Field: "top_p", Reason: formatFloat(*p) + " is out of range 0–1"}
	}
	if n := req.N; n != nil && *n < 1 {
		return &ValidationError{Field: "n", Reason: fmt.Sprintf("must be at least 1, got %d", *n)}
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		switch {
		case f.v == nil:
		case *f.v <= 0:
			return &ValidationError{Field: f.name, Reason: fmt.Sprintf("must be greater than 0, got %d", *f.v)}
		case model.MaxOutputTokens > 0 && *f.v > model.MaxOutputTokens:
			return &ValidationError{Field: f.name, Reason: fmt.Sprintf("%d exceeds the limit of %d for model %s", *f.v, model.MaxOutputTokens, model.Name)}
		}
	}
	if req.Stream != nil && *req.Stream {
		return &ValidationError{Field: "stream", Reason: "must not be true: a queue cannot stream"}
	}
	return nil
}

func validateMessage(i int, msg Message) error {
	field := func(name string) string { return "messages[" + strconv.Itoa(i) + "]." + name }
	if msg.Role == "" {
		return &ValidationError{Field: field("role"), Reason: "is required"}
	}
	if !validRole(msg.Role) {
		return &ValidationError{Field: field("role"), Reason: quoteShort(msg.Role) + " is not one of " + roleList}
	}
	content := bytes.TrimSpace(msg.Content)
	switch {
	case len(content) == 0 || string(content) == "null":
		// An assistant turn may carry only tool calls (or audio).
		if msg.Role != "assistant" {
			return &ValidationError{Field: field("content"), Reason: "is required"}
		}
	case content[0] != '"' && content[0] != '[':
		return &ValidationError{Field: field("content"), Reason: "must be a string or an array of content parts"}
	}
	return nil
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// quoteShort quotes user text for an error message, shortened if long.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}
