package mockapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
)

// rawRequest holds the fields the mock looks at; any other field is accepted
// and ignored, as the real API does with fields it does not use.
type rawRequest struct {
	Model               json.RawMessage `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	Temperature         json.RawMessage `json:"temperature"`
	TopP                json.RawMessage `json:"top_p"`
	MaxTokens           json.RawMessage `json:"max_tokens"`
	MaxCompletionTokens json.RawMessage `json:"max_completion_tokens"`
	Stream              json.RawMessage `json:"stream"`
	StreamOptions       json.RawMessage `json:"stream_options"`
	Thinking            json.RawMessage `json:"thinking"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	Audio               json.RawMessage `json:"audio"`
}

type rawMessage struct {
	Role       json.RawMessage `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID json.RawMessage `json:"tool_call_id"`
}

// chatRequest is a validated request.
type chatRequest struct {
	model        modelInfo // the served model
	asked        string    // the model the request named: model's, or a name forwarded to it
	messages     []chatMessage
	maxTokens    int // 0: no limit asked
	stream       bool
	includeUsage bool
	thinking     bool
	tools        []string // function names
	toolChoice   string   // "auto", "none", "required" or a function name
	jsonOutput   bool
	audioFormat  string
	voice        string
}

type chatMessage struct {
	role string
	text string // the text parts, joined
}

var roles = map[string]bool{"system": true, "user": true, "assistant": true, "tool": true, "developer": true}

// jsonType names the JSON type of a raw value, as error messages do.
func jsonType(v json.RawMessage) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// absent reports whether a field is missing or null.
func absent(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

func wrongType(param, want string, v json.RawMessage) *apiError {
	return invalid(param, "Invalid type for '%s': expected %s, but got %s instead.", param, want, jsonType(v))
}

func missing(param string) *apiError {
	return invalid(param, "Missing required parameter: '%s'.", param)
}

func decodeString(param string, v json.RawMessage) (string, *apiError) {
	var s string
	if jsonType(v) != "a string" || json.Unmarshal(v, &s) != nil {
		return "", wrongType(param, "a string", v)
	}
	return s, nil
}

func decodeNumber(param string, v json.RawMessage) (float64, *apiError) {
	var f float64
	if jsonType(v) != "a number" || json.Unmarshal(v, &f) != nil {
		return 0, wrongType(param, "a number", v)
	}
	return f, nil
}

func decodeBool(param string, v json.RawMessage) (bool, *apiError) {
	var b bool
	if jsonType(v) != "a boolean" || json.Unmarshal(v, &b) != nil {
		return false, wrongType(param, "a boolean", v)
	}
	return b, nil
}

func decodeObject(param string, v json.RawMessage, dst any) *apiError {
	if jsonType(v) != "an object" || json.Unmarshal(v, dst) != nil {
		return wrongType(param, "an object", v)
	}
	return nil
}

// parseChat validates a chat-completions body in the order the real API does:
// shape and required fields (400), then the model (400 for a retired name,
// 404 for an unknown one), then the parameters (400). A forwarded name is
// answered as the model it is forwarded to. When the model is served the
// request is returned with the error.
func (s *Server) parseChat(body []byte, set *settings) (*chatRequest, *apiError) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, invalid("", "The request body is empty: expected a JSON object.")
	}
	if body[0] != '{' {
		return nil, invalid("", "The request body must be a JSON object.")
	}
	var raw rawRequest
	if err := json.Unmarshal(body, &raw); err != nil {
		// Every field is a RawMessage, so only a syntax error gets here.
		return nil, invalid("", "We could not parse the JSON body of your request: %v.", err)
	}
	if absent(raw.Model) {
		return nil, missing("model")
	}
	model, e := decodeString("model", raw.Model)
	if e != nil {
		return nil, e
	}
	if model == "" {
		return nil, invalid("model", "Invalid value for 'model': it must not be empty.")
	}
	req := &chatRequest{asked: model}
	if req.messages, e = parseMessages(raw.Messages); e != nil {
		return nil, e
	}
	served := model
	if to, ok := set.forward[model]; ok {
		served = to
	}
	info, ok := s.models[served]
	switch {
	case ok && !set.retired[served]:
	case ok || retiredName(set.retiredPatterns, model):
		return nil, unsupportedModel(model)
	default:
		return nil, &apiError{status: http.StatusNotFound, code: codeNotFound, param: "model",
			message: fmt.Sprintf("The model '%s' does not exist or you do not have access to it.", model)}
	}
	req.model = info
	req.thinking = info.thinking
	// From here on the request is the model's: the caller counts it there.
	if e := req.parseParams(&raw); e != nil {
		return req, e
	}
	return req, nil
}

func parseMessages(v json.RawMessage) ([]chatMessage, *apiError) {
	if absent(v) {
		return nil, missing("messages")
	}
	var list []json.RawMessage
	if jsonType(v) != "an array" || json.Unmarshal(v, &list) != nil {
		return nil, wrongType("messages", "an array", v)
	}
	if len(list) == 0 {
		return nil, invalid("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	out := make([]chatMessage, len(list))
	for i, item := range list {
		p := fmt.Sprintf("messages[%d]", i)
		var m rawMessage
		if e := decodeObject(p, item, &m); e != nil {
			return nil, e
		}
		if absent(m.Role) {
			return nil, missing(p + ".role")
		}
		role, e := decodeString(p+".role", m.Role)
		if e != nil {
			return nil, e
		}
		if !roles[role] {
			return nil, invalid(p+".role", "Invalid value for '%s.role': '%s'. Supported values are: 'system', 'user', 'assistant', 'tool' and 'developer'.", p, role)
		}
		text, e := parseContent(p+".content", m.Content)
		if e != nil {
			return nil, e
		}
		switch {
		case absent(m.Content) && role == "assistant" && !absent(m.ToolCalls):
		case absent(m.Content):
			return nil, missing(p + ".content")
		}
		if role == "tool" {
			if absent(m.ToolCallID) {
				return nil, missing(p + ".tool_call_id")
			}
			if _, e := decodeString(p+".tool_call_id", m.ToolCallID); e != nil {
				return nil, e
			}
		}
		out[i] = chatMessage{role: role, text: text}
	}
	return out, nil
}

// parseContent reads a string, or an array of parts whose text parts are
// joined; other parts (images, audio) are accepted and not read.
func parseContent(param string, v json.RawMessage) (string, *apiError) {
	switch jsonType(v) {
	case "nothing", "null":
		return "", nil
	case "a string":
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", wrongType(param, "a string or an array", v)
		}
		return s, nil
	case "an array":
		var parts []json.RawMessage
		if json.Unmarshal(v, &parts) != nil {
			return "", wrongType(param, "a string or an array", v)
		}
		var b strings.Builder
		for i, raw := range parts {
			pp := fmt.Sprintf("%s[%d]", param, i)
			var part struct {
				Type json.RawMessage `json:"type"`
				Text json.RawMessage `json:"text"`
			}
			if e := decodeObject(pp, raw, &part); e != nil {
				return "", e
			}
			if absent(part.Type) {
				return "", missing(pp + ".type")
			}
			typ, e := decodeString(pp+".type", part.Type)
			if e != nil {
				return "", e
			}
			if typ != "text" {
				continue
			}
			if absent(part.Text) {
				return "", missing(pp + ".text")
			}
			text, e := decodeString(pp+".text", part.Text)
			if e != nil {
				return "", e
			}
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(text)
		}
		return b.String(), nil
	}
	return "", wrongType(param, "a string or an array", v)
}

func (req *chatRequest) parseParams(raw *rawRequest) *apiError {
	if !absent(raw.Temperature) {
		t, e := decodeNumber("temperature", raw.Temperature)
		if e != nil {
			return e
		}
		if t < 0 || t > 2 {
			return invalid("temperature", "Invalid 'temperature': expected a value between 0 and 2, but got %v instead.", t)
		}
	}
	if !absent(raw.TopP) {
		p, e := decodeNumber("top_p", raw.TopP)
		if e != nil {
			return e
		}
		if p < 0 || p > 1 {
			return invalid("top_p", "Invalid 'top_p': expected a value between 0 and 1, but got %v instead.", p)
		}
	}
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"max_tokens", raw.MaxTokens}, {"max_completion_tokens", raw.MaxCompletionTokens}} {
		if absent(f.v) {
			continue
		}
		n, e := decodeNumber(f.name, f.v)
		if e != nil {
			return wrongType(f.name, "an integer", f.v)
		}
		if n != math.Trunc(n) {
			return wrongType(f.name, "an integer", f.v)
		}
		if n < 1 {
			return invalid(f.name, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %v instead.", f.name, n)
		}
		if limit := req.model.maxOutput; limit > 0 && n > float64(limit) {
			return invalid(f.name, "Invalid '%s': %v is above the output token limit of %s (%d).", f.name, n, req.model.name, limit)
		}
		if req.maxTokens == 0 || int(n) < req.maxTokens {
			req.maxTokens = int(n)
		}
	}
	if !absent(raw.Stream) {
		b, e := decodeBool("stream", raw.Stream)
		if e != nil {
			return e
		}
		req.stream = b
	}
	if !absent(raw.StreamOptions) {
		if !req.stream {
			return invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
		}
		var so struct {
			IncludeUsage json.RawMessage `json:"include_usage"`
		}
		if e := decodeObject("stream_options", raw.StreamOptions, &so); e != nil {
			return e
		}
		if !absent(so.IncludeUsage) {
			b, e := decodeBool("stream_options.include_usage", so.IncludeUsage)
			if e != nil {
				return e
			}
			req.includeUsage = b
		}
	}
	if !absent(raw.Thinking) {
		var th struct {
			Type json.RawMessage `json:"type"`
		}
		if e := decodeObject("thinking", raw.Thinking, &th); e != nil {
			return e
		}
		if absent(th.Type) {
			return missing("thinking.type")
		}
		typ, e := decodeString("thinking.type", th.Type)
		if e != nil {
			return e
		}
		switch typ {
		case "enabled":
			req.thinking = true
		case "disabled":
			req.thinking = false
		default:
			return invalid("thinking.type", "Invalid value for 'thinking.type': '%s'. Supported values are: 'enabled' and 'disabled'.", typ)
		}
	}
	if e := req.parseTools(raw); e != nil {
		return e
	}
	if !absent(raw.ResponseFormat) {
		var rf struct {
			Type json.RawMessage `json:"type"`
		}
		if e := decodeObject("response_format", raw.ResponseFormat, &rf); e != nil {
			return e
		}
		if absent(rf.Type) {
			return missing("response_format.type")
		}
		typ, e := decodeString("response_format.type", rf.Type)
		if e != nil {
			return e
		}
		switch typ {
		case "text":
		case "json_object", "json_schema":
			req.jsonOutput = true
		default:
			return invalid("response_format.type", "Invalid value for 'response_format.type': '%s'. Supported values are: 'text', 'json_object' and 'json_schema'.", typ)
		}
	}
	if req.model.audio {
		return req.parseAudio(raw)
	}
	return nil
}

func (req *chatRequest) parseTools(raw *rawRequest) *apiError {
	if !absent(raw.Tools) {
		var tools []json.RawMessage
		if jsonType(raw.Tools) != "an array" || json.Unmarshal(raw.Tools, &tools) != nil {
			return wrongType("tools", "an array", raw.Tools)
		}
		for i, t := range tools {
			p := fmt.Sprintf("tools[%d]", i)
			var tool struct {
				Type     json.RawMessage `json:"type"`
				Function json.RawMessage `json:"function"`
			}
			if e := decodeObject(p, t, &tool); e != nil {
				return e
			}
			if typ, _ := decodeString(p+".type", tool.Type); typ != "function" {
				return invalid(p+".type", "Invalid value for '%s.type': expected 'function'.", p)
			}
			if absent(tool.Function) {
				return missing(p + ".function")
			}
			var fn struct {
				Name json.RawMessage `json:"name"`
			}
			if e := decodeObject(p+".function", tool.Function, &fn); e != nil {
				return e
			}
			if absent(fn.Name) {
				return missing(p + ".function.name")
			}
			name, e := decodeString(p+".function.name", fn.Name)
			if e != nil {
				return e
			}
			if name == "" {
				return invalid(p+".function.name", "Invalid '%s.function.name': empty string.", p)
			}
			req.tools = append(req.tools, name)
		}
	}
	req.toolChoice = "auto"
	if absent(raw.ToolChoice) {
		return nil
	}
	if jsonType(raw.ToolChoice) == "a string" {
		c, _ := decodeString("tool_choice", raw.ToolChoice)
		switch c {
		case "none", "auto", "required":
			req.toolChoice = c
			if c == "required" && len(req.tools) == 0 {
				return invalid("tool_choice", "Invalid value for 'tool_choice': 'required' needs 'tools'.")
			}
			return nil
		}
		return invalid("tool_choice", "Invalid value for 'tool_choice': '%s'. Supported values are: 'none', 'auto' and 'required'.", c)
	}
	var tc struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if e := decodeObject("tool_choice", raw.ToolChoice, &tc); e != nil {
		return wrongType("tool_choice", "a string or an object", raw.ToolChoice)
	}
	for _, t := range req.tools {
		if t == tc.Function.Name {
			req.toolChoice = t
			return nil
		}
	}
	return invalid("tool_choice", "Invalid value for 'tool_choice': no tool named '%s' in 'tools'.", tc.Function.Name)
}

func (req *chatRequest) parseAudio(raw *rawRequest) *apiError {
	req.audioFormat, req.voice = "wav", "mimo_default"
	if req.stream {
		return invalid("stream", "Streaming is not supported for model %s.", req.model.name)
	}
	if absent(raw.Audio) {
		return nil
	}
	var a struct {
		Format json.RawMessage `json:"format"`
		Voice  json.RawMessage `json:"voice"`
	}
	if e := decodeObject("audio", raw.Audio, &a); e != nil {
		return e
	}
	if !absent(a.Format) {
		f, e := decodeString("audio.format", a.Format)
		if e != nil {
			return e
		}
		if f != "wav" && f != "pcm16" {
			return invalid("audio.format", "Invalid value for 'audio.format': '%s'. Supported values are: 'wav' and 'pcm16'.", f)
		}
		req.audioFormat = f
	}
	if !absent(a.Voice) {
		v, e := decodeString("audio.voice", a.Voice)
		if e != nil {
			return e
		}
		req.voice = v
	}
	return nil
}
