package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
)

// Response is a successful chat completion.
type Response struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []Choice `json:"choices"`
	Usage   Usage    `json:"usage"`

	// Raw is the exact response body, for results files. The typed fields above
	// are a convenience view of it; fields of an unexpected type are left zero.
	Raw json.RawMessage `json:"-"`
	// StatusCode is the HTTP status (2xx).
	StatusCode int `json:"-"`
	// RequestID is the x-request-id response header, or the body's id.
	RequestID string `json:"-"`
}

// ServedModel returns the model that answered when it is not the one
// requested, else "". MiMo answered retired names with their successor's
// name before it refused them, and billed the successor's price.
func (r *Response) ServedModel(requested string) string {
	if r == nil || r.Model == "" || r.Model == requested {
		return ""
	}
	return r.Model
}

// Choice is one generated answer.
type Choice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	FinishReason string          `json:"finish_reason"`
}

// ResponseMessage is the assistant message of a [Choice].
type ResponseMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// ReasoningContent is the model's thinking, when thinking is enabled.
	ReasoningContent string     `json:"reasoning_content"`
	ToolCalls        []ToolCall `json:"tool_calls"`
	// Audio is the speech of a mimo-v2.5-tts (or audio-output) completion.
	Audio *Audio `json:"audio"`
}

// ToolCall is a function call the model asks for.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its JSON-encoded arguments.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Audio is generated speech.
type Audio struct {
	ID string `json:"id"`
	// Data is the audio, base64-encoded.
	Data       string `json:"data"`
	ExpiresAt  int64  `json:"expires_at"`
	Transcript string `json:"transcript"`
}

// Usage counts the tokens of a call.
type Usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
}

// CachedTokens is the part of PromptTokens served from the prompt cache
// (usage.prompt_tokens_details.cached_tokens), billed at the cached-input
// price; 0 when the API did not say.
func (u Usage) CachedTokens() int {
	if u.PromptTokensDetails == nil {
		return 0
	}
	return u.PromptTokensDetails.CachedTokens
}

// ReasoningTokens is the part of CompletionTokens spent thinking
// (usage.completion_tokens_details.reasoning_tokens); 0 when the API did not
// say. It is already counted in CompletionTokens: do not bill it twice.
func (u Usage) ReasoningTokens() int {
	if u.CompletionTokensDetails == nil {
		return 0
	}
	return u.CompletionTokensDetails.ReasoningTokens
}

// CompletionTokensDetails breaks down completion tokens.
type CompletionTokensDetails struct {
	// ReasoningTokens is the part of CompletionTokens spent thinking.
	ReasoningTokens int `json:"reasoning_tokens"`
}

// PromptTokensDetails breaks down prompt tokens.
type PromptTokensDetails struct {
	// CachedTokens is the part of PromptTokens served from the prompt cache.
	CachedTokens int `json:"cached_tokens"`
}

// parseResponse reads a 2xx body. It is lenient about field types (the body is
// kept whole in Raw) but insists on a JSON object with a choices array.
// A 2xx that carries an error object instead of choices (some proxies answer
// so) says what the error was in the malformed-response reason.
func parseResponse(status int, requestID string, data []byte, key string) (*Response, error) {
	trimmed := bytes.TrimSpace(data)
	malformed := func(reason string) error {
		return &MalformedResponseError{StatusCode: status, RequestID: requestID, Reason: reason, Size: len(data)}
	}
	if len(trimmed) == 0 {
		return nil, malformed("empty body")
	}
	if trimmed[0] != '{' {
		switch {
		case json.Valid(trimmed):
			return nil, malformed("not a JSON object")
		case trimmed[0] == '[':
			return nil, malformed("invalid or truncated JSON")
		}
		return nil, malformed("not JSON")
	}
	var wire struct {
		Response
		Choices *[]Choice `json:"choices"`
	}
	// Unmarshal checks the whole body is valid JSON before it decodes any of
	// it: one scan of the body, not two.
	if err := json.Unmarshal(trimmed, &wire); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, malformed("invalid or truncated JSON")
		case !errors.As(err, &te):
			return nil, malformed("cannot decode: " + err.Error())
		}
	}
	if wire.Choices == nil || *wire.Choices == nil {
		reason := "missing choices"
		f := parseErrorFields(trimmed)
		if f.code != "" && f.message != "" {
			f.message = f.code + ": " + f.message
		} else if f.message == "" {
			f.message = f.code
		}
		if f.message != "" {
			reason += " (error: " + cleanText(f.message, key, maxMessageLen) + ")"
		}
		return nil, malformed(reason)
	}
	resp := wire.Response
	resp.Choices = *wire.Choices
	resp.Raw = trimmed
	resp.StatusCode = status
	resp.RequestID = requestID
	if resp.RequestID == "" {
		resp.RequestID = cleanText(resp.ID, "", maxShortLen)
	}
	return &resp, nil
}
