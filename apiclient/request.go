package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/mimoq/mimoq/internal/jsonscan"
)

// Request is a chat-completions request body.
//
// The fields the queue needs are typed; every other field is kept in Extra as
// the exact bytes the user wrote. A Request read with [ParseRequest] is sent
// byte for byte as read for as long as its fields are not changed; after a
// change, the fields that were not changed keep their original bytes and order,
// and only the changed ones are re-encoded. To change a json.RawMessage field,
// assign a new value rather than editing its bytes in place: an in-place edit
// cannot be seen.
type Request struct {
	// Model names the model, e.g. "mimo-v2.6-flash". Required.
	Model string
	// Messages is the conversation. Required, non-empty.
	Messages []Message
	// Temperature is the sampling temperature, 0–2; nil leaves it to the API.
	Temperature *float64
	// TopP is nucleus sampling, 0–1; nil leaves it to the API.
	TopP *float64
	// MaxTokens is max_tokens; nil leaves it to the API.
	MaxTokens *int
	// MaxCompletionTokens is max_completion_tokens; nil leaves it to the API.
	MaxCompletionTokens *int
	// N is the number of choices; nil leaves it to the API.
	N *int
	// Stream must not be true: a queue cannot stream.
	Stream *bool
	// Stop is the stop sequence(s), a string or an array, as written.
	Stop json.RawMessage
	// Extra holds every other top-level field (thinking, tools, audio,
	// response_format, …) as written. It may be nil. Entries named like a typed
	// field above are ignored.
	Extra map[string]json.RawMessage

	raw  []byte   // the body as parsed; nil for a request built in code
	keys []string // top-level keys in their original order
	orig *Request // the typed fields as parsed, to see what changed
	vals map[string]json.RawMessage
}

// Message is one message of a conversation.
type Message struct {
	// Role is system, user, assistant, tool or developer.
	Role string
	// Content is a JSON string or an array of content parts (text, image_url,
	// input_audio, …), as written; nil or null only for an assistant message.
	Content json.RawMessage
	// Name is the optional participant name.
	Name string
	// ToolCallID is tool_call_id, for a tool message.
	ToolCallID string
	// ToolCalls is tool_calls of an assistant message, as written.
	ToolCalls json.RawMessage
	// Extra holds every other field of the message (e.g. reasoning_content) as
	// written. It may be nil.
	Extra map[string]json.RawMessage
}

// knownKeys are the top-level keys with a typed field, in the order a request
// built in code writes them.
func knownKeys() []string {
	return []string{"model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stream", "stop"}
}

func isKnownKey(k string) bool {
	switch k {
	case "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stream", "stop":
		return true
	}
	return false
}

func isKnownMessageKey(k string) bool {
	switch k {
	case "role", "content", "name", "tool_call_id", "tool_calls":
		return true
	}
	return false
}

// NewRequest returns a request for model with the given messages, for building
// in code.
func NewRequest(model string, messages ...Message) *Request {
	return &Request{Model: model, Messages: messages}
}

// NewMessage returns a message whose content is the string text.
func NewMessage(role, text string) Message {
	return Message{Role: role, Content: encodeString(text)}
}

// ParseRequest reads a request body, e.g. the body of one line of a batch file.
// It fails with a [*ValidationError] when raw is not a JSON object or a typed
// field has the wrong JSON type; it does not check values (see
// [Models.Validate]). raw is copied: the caller may reuse it.
func ParseRequest(raw []byte) (*Request, error) {
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &ValidationError{Reason: fmt.Sprintf("request body is not valid JSON: %s at byte %d", se.Error(), se.Offset)}
		}
		return nil, &ValidationError{Reason: "request body is not valid JSON"}
	}
	if i := jsonscan.SkipSpace(raw, 0); raw[i] != '{' {
		return nil, &ValidationError{Reason: "request body must be a JSON object"}
	}
	r := &Request{raw: bytes.Clone(raw), vals: map[string]json.RawMessage{}}
	err := jsonscan.Members(r.raw, func(key string, val []byte) error {
		if _, dup := r.vals[key]; !dup {
			r.keys = append(r.keys, key)
		}
		r.vals[key] = val // the last duplicate wins, as in encoding/json
		return nil
	})
	if err != nil {
		return nil, &ValidationError{Reason: "request body is not valid JSON"}
	}
	for _, key := range r.keys {
		val := r.vals[key]
		if !isKnownKey(key) {
			if r.Extra == nil {
				r.Extra = map[string]json.RawMessage{}
			}
			r.Extra[key] = val
			continue
		}
		if err := r.setKnown(key, val); err != nil {
			return nil, err
		}
	}
	r.orig = r.snapshot()
	return r, nil
}

// UnmarshalJSON reads a request like [ParseRequest], so that a Request can be
// embedded in a larger JSON document (a batch line, a task payload). null
// leaves r as it is.
func (r *Request) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	p, err := ParseRequest(b)
	if err != nil {
		return err
	}
	*r = *p
	return nil
}

func (r *Request) setKnown(key string, val []byte) error {
	null := string(val) == "null"
	var err error
	switch key {
	case "model":
		r.Model, err = decodeStringField(key, val)
	case "messages":
		if null {
			return nil
		}
		if val[0] != '[' {
			return &ValidationError{Field: key, Reason: "must be an array of messages"}
		}
		r.Messages = []Message{}
		return jsonscan.Elements(val, func(i int, elem []byte) error {
			m, err := parseMessage(elem, "messages["+strconv.Itoa(i)+"].")
			r.Messages = append(r.Messages, m)
			return err
		})
	case "temperature":
		r.Temperature, err = decodeFloatField(key, val)
	case "top_p":
		r.TopP, err = decodeFloatField(key, val)
	case "max_tokens":
		r.MaxTokens, err = decodeIntField(key, val)
	case "max_completion_tokens":
		r.MaxCompletionTokens, err = decodeIntField(key, val)
	case "n":
		r.N, err = decodeIntField(key, val)
	case "stream":
		switch string(val) {
		case "true", "false":
			b := string(val) == "true"
			r.Stream = &b
		case "null":
		default:
			return &ValidationError{Field: key, Reason: "must be true or false"}
		}
	case "stop":
		r.Stop = val
	}
	return err
}

// parseMessage reads one message; prefix ("messages[3].") starts field names.
func parseMessage(b []byte, prefix string) (Message, error) {
	var m Message
	if i := jsonscan.SkipSpace(b, 0); i >= len(b) || b[i] != '{' {
		return m, &ValidationError{Field: trimDot(prefix), Reason: "must be an object"}
	}
	err := jsonscan.Members(b, func(key string, val []byte) error {
		var err error
		switch key {
		case "role":
			m.Role, err = decodeStringField(prefix+key, val)
		case "name":
			m.Name, err = decodeStringField(prefix+key, val)
		case "tool_call_id":
			m.ToolCallID, err = decodeStringField(prefix+key, val)
		case "content":
			m.Content = val
		case "tool_calls":
			m.ToolCalls = val
		default:
			if m.Extra == nil {
				m.Extra = map[string]json.RawMessage{}
			}
			m.Extra[key] = val
		}
		return err
	})
	if errors.Is(err, jsonscan.ErrMalformed) {
		return m, &ValidationError{Field: trimDot(prefix), Reason: "is not valid JSON"}
	}
	return m, err
}

func trimDot(prefix string) string {
	if prefix == "" {
		return "message"
	}
	return prefix[:len(prefix)-1]
}

// UnmarshalJSON reads a message, keeping unknown fields in Extra. null leaves
// m as it is.
func (m *Message) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	if !json.Valid(b) {
		return &ValidationError{Field: "message", Reason: "is not valid JSON"}
	}
	p, err := parseMessage(bytes.Clone(b), "")
	if err != nil {
		return err
	}
	*m = p
	return nil
}

// MarshalJSON writes the message: its typed fields, then Extra in key order.
func (m Message) MarshalJSON() ([]byte, error) {
	var w objectWriter
	w.str("role", m.Role)
	if err := w.raw("content", m.Content); err != nil {
		return nil, err
	}
	if m.Name != "" {
		w.str("name", m.Name)
	}
	if m.ToolCallID != "" {
		w.str("tool_call_id", m.ToolCallID)
	}
	if err := w.raw("tool_calls", m.ToolCalls); err != nil {
		return nil, err
	}
	for _, k := range slices.Sorted(maps.Keys(m.Extra)) {
		if isKnownMessageKey(k) {
			continue
		}
		if err := w.raw(k, m.Extra[k]); err != nil {
			return nil, err
		}
	}
	return w.close(), nil
}

// Text returns the message's text: the content string, or the text parts of a
// content array joined by newlines. Other parts (images, audio) are skipped.
func (m Message) Text() string {
	text, _ := messageText(m.Content)
	return text
}

// messageText returns the text of a content value and the number of parts
// that are not text. It walks the parts with the scanner rather than decoding
// them, so that a megabyte image is skipped, not copied.
func messageText(content json.RawMessage) (string, int) {
	content = bytes.TrimSpace(content)
	if len(content) == 0 {
		return "", 0
	}
	switch content[0] {
	case '"':
		var s string
		_ = json.Unmarshal(content, &s)
		return s, 0
	case '[':
		var buf bytes.Buffer
		other := 0
		_ = jsonscan.Elements(content, func(_ int, part []byte) error {
			var typ, text []byte
			_ = jsonscan.Members(part, func(k string, v []byte) error {
				switch k {
				case "type":
					typ = v
				case "text":
					text = v
				}
				return nil
			})
			if string(typ) != `"text"` {
				other++
				return nil
			}
			var s string
			_ = json.Unmarshal(text, &s)
			if buf.Len() > 0 {
				buf.WriteByte('\n')
			}
			buf.WriteString(s)
			return nil
		})
		return buf.String(), other
	}
	return "", 0
}

// MarshalJSON writes the request as it is to be sent (see [Request]).
func (r Request) MarshalJSON() ([]byte, error) {
	b, err := r.body()
	if err != nil {
		return nil, err
	}
	if r.raw != nil && &b[0] == &r.raw[0] {
		b = bytes.Clone(b) // never hand out the parsed bytes
	}
	return b, nil
}

// body returns the bytes to send: the parsed body itself when nothing changed.
func (r *Request) body() ([]byte, error) {
	if r.raw != nil && r.orig != nil && r.unchanged() {
		return r.raw, nil
	}
	var w objectWriter
	done := map[string]bool{}
	write := func(k string) error {
		if done[k] {
			return nil
		}
		done[k] = true
		if isKnownKey(k) {
			v, err := r.knownValue(k)
			if err != nil {
				return err
			}
			return w.raw(k, v)
		}
		v, ok := r.Extra[k]
		if !ok {
			return nil
		}
		if err := w.raw(k, v); err != nil {
			return &ValidationError{Field: k, Reason: "is not valid JSON"}
		}
		return nil
	}
	// The original order first, then new typed fields, then new extras.
	for _, ks := range [][]string{r.keys, knownKeys(), slices.Sorted(maps.Keys(r.Extra))} {
		for _, k := range ks {
			if err := write(k); err != nil {
				return nil, err
			}
		}
	}
	return w.close(), nil
}

// knownValue encodes a typed field, reusing the parsed bytes when it is
// unchanged. A nil result omits the field.
func (r *Request) knownValue(k string) (json.RawMessage, error) {
	if orig, ok := r.vals[k]; ok && r.orig != nil && r.fieldUnchanged(k) {
		return orig, nil
	}
	switch k {
	case "model":
		if r.Model == "" {
			return nil, nil
		}
		return encodeString(r.Model), nil
	case "messages":
		if r.Messages == nil {
			return nil, nil
		}
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i, m := range r.Messages {
			if i > 0 {
				buf.WriteByte(',')
			}
			b, err := m.MarshalJSON()
			if err != nil {
				var ve *ValidationError
				if errors.As(err, &ve) {
					return nil, &ValidationError{Field: "messages[" + strconv.Itoa(i) + "]." + ve.Field, Reason: ve.Reason}
				}
				return nil, err
			}
			buf.Write(b)
		}
		buf.WriteByte(']')
		return buf.Bytes(), nil
	case "temperature":
		return encodeFloat(k, r.Temperature)
	case "top_p":
		return encodeFloat(k, r.TopP)
	case "max_tokens":
		return encodeInt(r.MaxTokens), nil
	case "max_completion_tokens":
		return encodeInt(r.MaxCompletionTokens), nil
	case "n":
		return encodeInt(r.N), nil
	case "stream":
		if r.Stream == nil {
			return nil, nil
		}
		return json.RawMessage(strconv.FormatBool(*r.Stream)), nil
	case "stop":
		if len(r.Stop) == 0 {
			return nil, nil
		}
		if !json.Valid(r.Stop) {
			return nil, &ValidationError{Field: k, Reason: "is not valid JSON"}
		}
		return r.Stop, nil
	}
	return nil, nil
}

// snapshot copies the typed fields and Extra, deep enough that a later
// assignment to any of them is seen by unchanged.
func (r *Request) snapshot() *Request {
	s := &Request{
		Model:               r.Model,
		Temperature:         clonePtr(r.Temperature),
		TopP:                clonePtr(r.TopP),
		MaxTokens:           clonePtr(r.MaxTokens),
		MaxCompletionTokens: clonePtr(r.MaxCompletionTokens),
		N:                   clonePtr(r.N),
		Stream:              clonePtr(r.Stream),
		Stop:                r.Stop,
		Extra:               maps.Clone(r.Extra),
	}
	if r.Messages != nil {
		s.Messages = make([]Message, len(r.Messages))
		for i, m := range r.Messages {
			m.Extra = maps.Clone(m.Extra)
			s.Messages[i] = m
		}
	}
	return s
}

func (r *Request) unchanged() bool {
	for _, k := range knownKeys() {
		if !r.fieldUnchanged(k) {
			return false
		}
	}
	return rawMapsEqual(r.Extra, r.orig.Extra)
}

func (r *Request) fieldUnchanged(k string) bool {
	o := r.orig
	switch k {
	case "model":
		return r.Model == o.Model
	case "messages":
		return (r.Messages == nil) == (o.Messages == nil) &&
			slices.EqualFunc(r.Messages, o.Messages, messagesEqual)
	case "temperature":
		return ptrEqual(r.Temperature, o.Temperature)
	case "top_p":
		return ptrEqual(r.TopP, o.TopP)
	case "max_tokens":
		return ptrEqual(r.MaxTokens, o.MaxTokens)
	case "max_completion_tokens":
		return ptrEqual(r.MaxCompletionTokens, o.MaxCompletionTokens)
	case "n":
		return ptrEqual(r.N, o.N)
	case "stream":
		return ptrEqual(r.Stream, o.Stream)
	case "stop":
		return bytes.Equal(r.Stop, o.Stop) && (r.Stop == nil) == (o.Stop == nil)
	}
	return true
}

func messagesEqual(a, b Message) bool {
	return a.Role == b.Role && a.Name == b.Name && a.ToolCallID == b.ToolCallID &&
		bytes.Equal(a.Content, b.Content) && bytes.Equal(a.ToolCalls, b.ToolCalls) &&
		rawMapsEqual(a.Extra, b.Extra)
}

func rawMapsEqual(a, b map[string]json.RawMessage) bool {
	return maps.EqualFunc(a, b, func(x, y json.RawMessage) bool { return bytes.Equal(x, y) })
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// EstimatePromptTokens roughly estimates the prompt's tokens, for reserving
// rate-limit budget before a call: a quarter token per ASCII byte and one per
// other character (CJK text runs near one token per character), 1000 per
// non-text content part (image, audio), a quarter per byte of tool calls,
// tools and other message fields, plus 4 per message and 3 for the reply's
// priming. It errs high rather than low.
func (r *Request) EstimatePromptTokens() int {
	n := 3
	for _, m := range r.Messages {
		text, other := messageText(m.Content)
		n += 4 + textTokens(m.Role) + textTokens(m.Name) + textTokens(text) + 1000*other
		n += (len(m.ToolCalls) + 3) / 4
		for _, v := range m.Extra {
			n += (len(v) + 3) / 4
		}
	}
	for _, k := range []string{"tools", "functions", "response_format"} {
		n += (len(r.Extra[k]) + 3) / 4
	}
	return n
}

func textTokens(s string) int {
	ascii, other := 0, 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			ascii++
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		other++
		i += size
	}
	return (ascii+3)/4 + other
}

// MaxOutputTokens returns the output tokens the request asks for at most:
// max_completion_tokens, else max_tokens, else 0 (unknown).
func (r *Request) MaxOutputTokens() int {
	switch {
	case r.MaxCompletionTokens != nil && *r.MaxCompletionTokens > 0:
		return *r.MaxCompletionTokens
	case r.MaxTokens != nil && *r.MaxTokens > 0:
		return *r.MaxTokens
	}
	return 0
}

// Field decoding, with errors that name the field.

func decodeStringField(field string, val []byte) (string, error) {
	if string(val) == "null" {
		return "", nil
	}
	if val[0] != '"' {
		return "", &ValidationError{Field: field, Reason: "must be a string"}
	}
	if inner := val[1 : len(val)-1]; plainString(inner) {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(val, &s); err != nil {
		return "", &ValidationError{Field: field, Reason: "must be a string"}
	}
	return s, nil
}

func decodeFloatField(field string, val []byte) (*float64, error) {
	if string(val) == "null" {
		return nil, nil
	}
	if !isJSONNumber(val) {
		return nil, &ValidationError{Field: field, Reason: "must be a number"}
	}
	f, err := strconv.ParseFloat(string(val), 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, &ValidationError{Field: field, Reason: string(val) + " is not a finite number"}
	}
	return &f, nil
}

func decodeIntField(field string, val []byte) (*int, error) {
	if string(val) == "null" {
		return nil, nil
	}
	if !isJSONNumber(val) {
		return nil, &ValidationError{Field: field, Reason: "must be an integer"}
	}
	if n, err := strconv.Atoi(string(val)); err == nil {
		return &n, nil
	}
	// 1e3 and 1000.0 are integers too.
	f, err := strconv.ParseFloat(string(val), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return nil, &ValidationError{Field: field, Reason: "must be an integer, got " + shorten(string(val))}
	}
	n := int(f)
	return &n, nil
}

func isJSONNumber(val []byte) bool {
	return len(val) > 0 && (val[0] == '-' || ('0' <= val[0] && val[0] <= '9'))
}

func shorten(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// plainString reports whether s is printable ASCII that JSON writes as is
// (no quote or backslash), the common case worth a
// fast path.
func plainString(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Encoding.

func encodeString(s string) json.RawMessage {
	if plainString([]byte(s)) {
		b := make([]byte, 0, len(s)+2)
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func encodeFloat(field string, f *float64) (json.RawMessage, error) {
	if f == nil {
		return nil, nil
	}
	b, err := json.Marshal(*f)
	if err != nil {
		return nil, &ValidationError{Field: field, Reason: "must be a finite number"}
	}
	return b, nil
}

func encodeInt(n *int) json.RawMessage {
	if n == nil {
		return nil
	}
	return json.RawMessage(strconv.Itoa(*n))
}

// objectWriter writes a JSON object member by member.
type objectWriter struct {
	buf bytes.Buffer
}

func (w *objectWriter) key(k string) {
	if w.buf.Len() == 0 {
		w.buf.WriteByte('{')
	} else {
		w.buf.WriteByte(',')
	}
	w.buf.Write(encodeString(k))
	w.buf.WriteByte(':')
}

func (w *objectWriter) str(k, v string) {
	w.key(k)
	w.buf.Write(encodeString(v))
}

// raw writes a member whose value is already JSON; an empty value omits it.
func (w *objectWriter) raw(k string, v json.RawMessage) error {
	if len(v) == 0 {
		return nil
	}
	if !json.Valid(v) {
		return &ValidationError{Field: k, Reason: "is not valid JSON"}
	}
	w.key(k)
	w.buf.Write(v)
	return nil
}

func (w *objectWriter) close() []byte {
	if w.buf.Len() == 0 {
		return []byte("{}")
	}
	w.buf.WriteByte('}')
	return w.buf.Bytes()
}
