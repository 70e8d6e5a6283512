package mockapi_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mimoq/mimoq/internal/mockapi"
)

// completion is the part of a chat.completion the tests read.
type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role             string  `json:"role"`
			Content          *string `json:"content"`
			ReasoningContent string  `json:"reasoning_content"`
			ToolCalls        []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
			Audio *struct {
				ID         string `json:"id"`
				Data       string `json:"data"`
				ExpiresAt  int64  `json:"expires_at"`
				Transcript string `json:"transcript"`
			} `json:"audio"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens            int `json:"prompt_tokens"`
		CompletionTokens        int `json:"completion_tokens"`
		TotalTokens             int `json:"total_tokens"`
		CompletionTokensDetails struct {
			ReasoningTokens int `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

func decodeCompletion(t *testing.T, r response) completion {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status = %d: %s", r.status, r.body)
	}
	var c completion
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("decode: %v: %s", err, r.body)
	}
	if len(c.Choices) != 1 {
		t.Fatalf("choices = %d", len(c.Choices))
	}
	return c
}

func TestSuccessBody(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	body := `{"model":"mimo-v2.6-pro","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Explain queues in one line, please."}]}`
	c := decodeCompletion(t, b.chat(body))
	if !hex32.MatchString(c.ID) || c.Object != "chat.completion" || c.Model != "mimo-v2.6-pro" || c.Created != b.clock.Now().Unix() {
		t.Errorf("envelope = %+v", c)
	}
	ch := c.Choices[0]
	if ch.Index != 0 || ch.Message.Role != "assistant" || ch.FinishReason != "stop" || ch.Message.Content == nil {
		t.Fatalf("choice = %+v", ch)
	}
	if !strings.Contains(*ch.Message.Content, "Explain queues in one line") {
		t.Errorf("content does not echo the prompt: %q", *ch.Message.Content)
	}
	u := c.Usage
	// "You are terse." is 14 characters (4 tokens), the question 35 (9 tokens).
	if u.PromptTokens != 4+9 {
		t.Errorf("prompt_tokens = %d, want 13", u.PromptTokens)
	}
	if u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.CompletionTokens <= u.CompletionTokensDetails.ReasoningTokens {
		t.Errorf("usage = %+v", u)
	}
	if u.PromptTokensDetails == nil || u.PromptTokensDetails.CachedTokens != 0 {
		t.Errorf("prompt_tokens_details = %+v", u.PromptTokensDetails)
	}
	// Deterministic: the same request gets the same reply.
	again := decodeCompletion(t, b.chat(body))
	if *again.Choices[0].Message.Content != *ch.Message.Content || again.ID == c.ID {
		t.Errorf("second reply: content equal %v, id differs %v", *again.Choices[0].Message.Content == *ch.Message.Content, again.ID != c.ID)
	}
}

func TestThinking(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	none := setup(t, mockapi.Config{ThinkingModels: []string{}})
	for _, tt := range []struct {
		b               *bundle
		model, thinking string
		want            bool
	}{
		// Thinking is on by default on every V2.6 model.
		{b, "mimo-v2.6-pro", "", true},
		{b, "mimo-v2.6-pro-ultraspeed", "", true},
		{b, "mimo-v2.6-flash", "", true},
		{b, "mimo-v2.6-pro", "disabled", false},
		{b, "mimo-v2.6-flash", "disabled", false},
		{none, "mimo-v2.6-flash", "", false},
		{none, "mimo-v2.6-flash", "enabled", true},
	} {
		b := tt.b
		body := `{"model":"` + tt.model + `","messages":[{"role":"user","content":"Why is the sky blue?"}]`
		if tt.thinking != "" {
			body += `,"thinking":{"type":"` + tt.thinking + `"}`
		}
		c := decodeCompletion(t, b.chat(body+"}"))
		m, u := c.Choices[0].Message, c.Usage
		if got := m.ReasoningContent != ""; got != tt.want {
			t.Errorf("%s thinking=%q: reasoning_content %q", tt.model, tt.thinking, m.ReasoningContent)
		}
		if got := u.CompletionTokensDetails.ReasoningTokens > 0; got != tt.want {
			t.Errorf("%s thinking=%q: reasoning_tokens %d", tt.model, tt.thinking, u.CompletionTokensDetails.ReasoningTokens)
		}
	}
}

func TestMaxTokensTruncates(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	c := decodeCompletion(t, b.chat(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Tell me everything."}],"max_tokens":5}`))
	ch := c.Choices[0]
	if ch.FinishReason != "length" || c.Usage.CompletionTokens != 5 || len([]rune(*ch.Message.Content)) > 20 {
		t.Errorf("finish %q, completion_tokens %d, content %q", ch.FinishReason, c.Usage.CompletionTokens, *ch.Message.Content)
	}
	// With thinking, reasoning spends the budget first.
	c = decodeCompletion(t, b.chat(`{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"Tell me everything."}],"max_completion_tokens":3}`))
	if c.Choices[0].FinishReason != "length" || c.Usage.CompletionTokensDetails.ReasoningTokens != 3 || *c.Choices[0].Message.Content != "" {
		t.Errorf("thinking within budget: %+v", c.Choices[0])
	}
}

func TestJSONResponseFormat(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	c := decodeCompletion(t, b.chat(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"List fruit."}],"response_format":{"type":"json_object"}}`))
	var v map[string]any
	if err := json.Unmarshal([]byte(*c.Choices[0].Message.Content), &v); err != nil || v["answer"] == nil {
		t.Errorf("content is not a JSON object: %v %q", err, *c.Choices[0].Message.Content)
	}
}

func TestToolCall(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	tools := `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`
	c := decodeCompletion(t, b.chat(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Call get_weather for Paris"}],`+tools+`}`))
	ch := c.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "get_weather" ||
		ch.Message.Content != nil || ch.Message.ToolCalls[0].Function.Arguments != "{}" {
		t.Errorf("tool call = %+v", ch)
	}
	// Once the tool answered, the model answers in text.
	c = decodeCompletion(t, b.chat(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Call get_weather for Paris"},`+
		`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},`+
		`{"role":"tool","tool_call_id":"c1","content":"sunny"}],`+tools+`}`))
	if c.Choices[0].FinishReason != "stop" || c.Choices[0].Message.Content == nil {
		t.Errorf("after the tool: %+v", c.Choices[0])
	}
	c = decodeCompletion(t, b.chat(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Call get_weather"}],`+tools+`,"tool_choice":"none"}`))
	if c.Choices[0].FinishReason != "stop" {
		t.Errorf("tool_choice none: %+v", c.Choices[0])
	}
}

func TestSpeech(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{Models: withSpeech()})
	text := "Hello from the speech model."
	c := decodeCompletion(t, b.chat(`{"model":"mimo-v2.5-tts","messages":[{"role":"user","content":"Read it cheerfully."},{"role":"assistant","content":"`+text+`"}],"audio":{"format":"wav","voice":"mimo_default"}}`))
	a := c.Choices[0].Message.Audio
	if a == nil {
		t.Fatalf("no audio: %+v", c.Choices[0].Message)
	}
	if a.Transcript != text || a.ID == "" || a.ExpiresAt <= c.Created {
		t.Errorf("audio = id %q transcript %q expires %d", a.ID, a.Transcript, a.ExpiresAt)
	}
	data, err := base64.StdEncoding.DecodeString(a.Data)
	if err != nil {
		t.Fatalf("audio data is not base64: %v", err)
	}
	if len(data) < 44 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" || string(data[36:40]) != "data" {
		t.Fatalf("not a WAV: % x", data[:min(len(data), 44)])
	}
	if size := binary.LittleEndian.Uint32(data[40:44]); int(size) != len(data)-44 || size == 0 {
		t.Errorf("data chunk size %d, file %d", size, len(data))
	}
	if rate := binary.LittleEndian.Uint32(data[24:28]); rate != 24000 {
		t.Errorf("sample rate %d", rate)
	}
	// Longer text, longer audio.
	long := decodeCompletion(t, b.chat(`{"model":"mimo-v2.5-tts","messages":[{"role":"assistant","content":"`+strings.Repeat(text+" ", 3)+`"}]}`))
	if len(long.Choices[0].Message.Audio.Data) <= len(a.Data) {
		t.Errorf("audio does not grow with the text")
	}
	pcm := decodeCompletion(t, b.chat(`{"model":"mimo-v2.5-tts","messages":[{"role":"assistant","content":"hi"}],"audio":{"format":"pcm16"}}`))
	raw, _ := base64.StdEncoding.DecodeString(pcm.Choices[0].Message.Audio.Data)
	if bytes.HasPrefix(raw, []byte("RIFF")) || len(raw)%2 != 0 {
		t.Errorf("pcm16 has a header or odd length %d", len(raw))
	}
}

func TestStream(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	r := b.chat(`{"model":"mimo-v2.6-pro","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Stream a reply about rivers."}]}`)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content-type %q", r.status, r.header.Get("Content-Type"))
	}
	var content, reasoning strings.Builder
	var finish string
	var usage map[string]any
	done := false
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var ch struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content          *string `json:"content"`
					ReasoningContent string  `json:"reasoning_content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil || ch.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %q: %v", data, err)
		}
		for _, c := range ch.Choices {
			if c.Delta.Content != nil {
				content.WriteString(*c.Delta.Content)
			}
			reasoning.WriteString(c.Delta.ReasoningContent)
			if c.FinishReason != nil {
				finish = *c.FinishReason
			}
		}
		if ch.Usage != nil {
			usage = ch.Usage
		}
	}
	if !done || finish != "stop" || usage == nil {
		t.Errorf("done %v, finish %q, usage %v", done, finish, usage)
	}
	if !strings.Contains(content.String(), "Stream a reply about rivers.") || reasoning.Len() == 0 {
		t.Errorf("content %q, reasoning %q", content.String(), reasoning.String())
	}
	// The streamed text is the text of the same request unstreamed.
	c := decodeCompletion(t, b.chat(`{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"Stream a reply about rivers."}]}`))
	if *c.Choices[0].Message.Content != content.String() {
		t.Errorf("streamed %q, unstreamed %q", content.String(), *c.Choices[0].Message.Content)
	}
}

func TestModelsList(t *testing.T) {
	t.Parallel()
	b := setup(t, mockapi.Config{})
	r := b.do("GET", "/v1/models", "", bearer(testKey))
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != 200 || len(list.Data) != 3 ||
		list.Data[0].ID != "mimo-v2.6-flash" || list.Data[1].ID != "mimo-v2.6-pro" || list.Data[2].ID != "mimo-v2.6-pro-ultraspeed" {
		t.Errorf("GET /v1/models: %d %s", r.status, r.body)
	}
	if r := b.do("GET", "/v1/models", "", nil); r.status != 401 {
		t.Errorf("without a key: %d", r.status)
	}
}
