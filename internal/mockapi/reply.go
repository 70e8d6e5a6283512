package mockapi

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"
)

// newHexID returns 32 random hex digits, as the real API's request and
// completion IDs.
func newHexID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// countTokens estimates tokens as the real tokenizer roughly does for English:
// a token per 4 characters, at least 1.
func countTokens(s string) int {
	return max(1, (utf8.RuneCountInString(s)+3)/4)
}

// promptTokens counts the messages, at least 1 token each.
func (req *chatRequest) promptTokens() int {
	n := 0
	for _, m := range req.messages {
		n += countTokens(m.text)
	}
	return n
}

// prefixes returns, for each run of leading messages, a hash of the run and
// its prompt tokens: what the prompt cache keys on.
func (req *chatRequest) prefixes() []prefix {
	out := make([]prefix, len(req.messages))
	h := fnv.New64a()
	tokens := 0
	for i, m := range req.messages {
		h.Write([]byte(m.role))
		h.Write([]byte{0})
		h.Write([]byte(m.text))
		h.Write([]byte{0})
		tokens += countTokens(m.text)
		out[i] = prefix{hash: h.Sum64(), tokens: tokens}
	}
	return out
}

// prefix is a run of leading messages.
type prefix struct {
	hash   uint64
	tokens int
}

// promptCache remembers the prefixes one model has seen, the oldest
// forgotten first once it holds its limit.
type promptCache struct {
	seen  map[uint64]struct{}
	order ring[uint64]
}

// lookup returns the tokens of the longest of ps seen before, and remembers
// them all. Caching goes by whole messages, as a prompt's stable part (system
// prompt, earlier turns) comes in whole messages.
func (pc *promptCache) lookup(ps []prefix, limit int) int {
	if pc.seen == nil {
		pc.seen = make(map[uint64]struct{})
	}
	cached := 0
	for i := len(ps) - 1; i >= 0; i-- {
		if _, ok := pc.seen[ps[i].hash]; ok {
			cached = ps[i].tokens
			break
		}
	}
	for _, p := range ps {
		if _, ok := pc.seen[p.hash]; ok || limit <= 0 {
			continue
		}
		for pc.order.len() >= limit {
			delete(pc.seen, pc.order.pop())
		}
		pc.seen[p.hash] = struct{}{}
		pc.order.push(p.hash)
	}
	return cached
}

// lastText is the text the reply answers: the last user message, or the last
// message of any role when there is none.
func (req *chatRequest) lastText(role string) string {
	for i := len(req.messages) - 1; i >= 0; i-- {
		if req.messages[i].role == role {
			return req.messages[i].text
		}
	}
	return req.messages[len(req.messages)-1].text
}

// excerpt folds whitespace and cuts s to n characters.
func excerpt(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// cutTokens cuts s to about n tokens (4 characters each), on a rune boundary.
func cutTokens(s string, n int) string {
	r := []rune(s)
	if len(r) <= 4*n {
		return s
	}
	return string(r[:4*n])
}

var closings = []string{
	"In short: start with the simplest approach that works, measure it, then improve the part that matters.",
	"The key points are to keep the steps small, check each result, and write down what you learn.",
	"A good next step is to try it on a small example first and compare the outcome with what you expect.",
	"It depends on your constraints, but in most cases the straightforward option is the right one to begin with.",
	"To sum up, the answer is yes, with the caveats above; the details matter less than getting feedback early.",
	"Overall, break the problem into parts, solve the easiest part first, and reuse what you built.",
	"My suggestion is to weigh cost against benefit, pick one option, and revisit it once you have data.",
	"Briefly: it works as you describe, and the usual pitfalls are timing, edge cases and missing input checks.",
}

// reply is the generated answer to one request.
type reply struct {
	content      *string
	reasoning    string
	toolCall     *toolCall
	audio        *audioOut
	speech       time.Duration
	wav          bool
	includeUsage bool
	finish       string
	prompt       int
	completion   int
	reasoningTok int
	audioTok     int
	cached       int // prompt tokens from the prompt cache
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type audioOut struct {
	ID         string `json:"id"`
	Data       string `json:"data"`
	ExpiresAt  int64  `json:"expires_at"`
	Transcript string `json:"transcript"`
}

// generate builds a deterministic, plausible answer: the same request always
// gets the same reply, and its text echoes the prompt so a test can tell
// replies apart.
func generate(req *chatRequest, created time.Time) *reply {
	rp := &reply{prompt: req.promptTokens(), finish: "stop", includeUsage: req.includeUsage}
	if req.model.audio {
		generateAudio(req, rp, created)
		return rp
	}
	last := req.lastText("user")
	h := fnv.New64a()
	for _, m := range req.messages {
		h.Write([]byte(m.role))
		h.Write([]byte(m.text))
	}
	sum := h.Sum64()
	words := len(strings.Fields(last))

	if req.thinking {
		rp.reasoning = fmt.Sprintf("The user wrote %d words, starting with %q. I should answer directly and keep it short and concrete.",
			words, excerpt(last, 40))
	}
	if name := req.pickTool(last); name != "" {
		tc := &toolCall{ID: "call_" + fmt.Sprintf("%016x", sum), Type: "function"}
		tc.Function.Name = name
		tc.Function.Arguments = "{}"
		rp.toolCall = tc
		rp.finish = "tool_calls"
		rp.reasoningTok = tokensOrZero(rp.reasoning)
		rp.completion = rp.reasoningTok + 8
		return rp
	}
	text := fmt.Sprintf("You asked about %q (%d words). %s", excerpt(last, 120), words, closings[sum%uint64(len(closings))])
	if req.jsonOutput {
		b, _ := json.Marshal(map[string]any{"answer": text, "model": req.model.name, "prompt_words": words})
		text = string(b)
	}
	rp.reasoningTok = tokensOrZero(rp.reasoning)
	contentTok := countTokens(text)
	if budget := req.maxTokens; budget > 0 && rp.reasoningTok+contentTok > budget {
		rp.finish = "length"
		if rp.reasoningTok >= budget {
			rp.reasoning = cutTokens(rp.reasoning, budget)
			rp.reasoningTok, text, contentTok = budget, "", 0
		} else {
			contentTok = budget - rp.reasoningTok
			text = cutTokens(text, contentTok)
		}
	}
	rp.content = &text
	rp.completion = rp.reasoningTok + contentTok
	return rp
}

func tokensOrZero(s string) int {
	if s == "" {
		return 0
	}
	return countTokens(s)
}

// pickTool returns the function to call, or "": the one tool_choice names,
// the first for "required", else the first whose name the user's last message
// mentions — and only when that message is the last one, so a tool result gets
// a text answer.
func (req *chatRequest) pickTool(last string) string {
	if len(req.tools) == 0 {
		return ""
	}
	switch req.toolChoice {
	case "none":
		return ""
	case "required":
		return req.tools[0]
	case "auto":
		if req.messages[len(req.messages)-1].role != "user" {
			return ""
		}
		lower := strings.ToLower(last)
		for _, t := range req.tools {
			if strings.Contains(lower, strings.ToLower(t)) {
				return t
			}
		}
		return ""
	}
	return req.toolChoice
}

// Speech: 24 kHz mono 16-bit PCM, 60 ms a character, 0.3 s to 6 s.
const (
	sampleRate   = 24000
	msPerRune    = 60
	minSpeech    = 300 * time.Millisecond
	maxSpeech    = 6 * time.Second
	audioPerSec  = 25 // audio tokens a second of speech
	audioExpires = 24 * time.Hour
)

// generateAudio speaks the text of the last assistant message (the text to
// read, as MiMo's speech model takes it) or else of the last user message. The
// audio itself is made by speak, once the request is admitted.
func generateAudio(req *chatRequest, rp *reply, created time.Time) {
	text := req.lastText("assistant")
	d := time.Duration(utf8.RuneCountInString(text)) * msPerRune * time.Millisecond
	rp.speech = min(max(d, minSpeech), maxSpeech)
	rp.wav = req.audioFormat == "wav"
	rp.audio = &audioOut{ExpiresAt: created.Add(audioExpires).Unix(), Transcript: text}
	rp.audioTok = max(1, int(math.Round(rp.speech.Seconds()*audioPerSec)))
	rp.completion = rp.audioTok
}

// speak fills in the audio of a speech reply.
func (rp *reply) speak() {
	if rp.audio == nil || rp.audio.Data != "" {
		return
	}
	data := tone(int(rp.speech * sampleRate / time.Second))
	if rp.wav {
		data = wav(data)
	}
	rp.audio.ID = "audio_" + newHexID()
	rp.audio.Data = base64.StdEncoding.EncodeToString(data)
}

// tone is n samples of a quiet 440 Hz sine, little-endian 16-bit.
func tone(n int) []byte {
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		v := int16(3000 * math.Sin(2*math.Pi*440*float64(i)/sampleRate))
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

// wav wraps PCM in a RIFF/WAVE header (mono, 16-bit, sampleRate).
func wav(pcm []byte) []byte {
	b := make([]byte, 44+len(pcm))
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+len(pcm)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16) // fmt chunk size
	binary.LittleEndian.PutUint16(b[20:], 1)  // PCM
	binary.LittleEndian.PutUint16(b[22:], 1)  // mono
	binary.LittleEndian.PutUint32(b[24:], sampleRate)
	binary.LittleEndian.PutUint32(b[28:], sampleRate*2) // byte rate
	binary.LittleEndian.PutUint16(b[32:], 2)            // block align
	binary.LittleEndian.PutUint16(b[34:], 16)           // bits per sample
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(len(pcm)))
	copy(b[44:], pcm)
	return b
}

// Response bodies.

type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

type choice struct {
	Index        int      `json:"index"`
	Message      *message `json:"message,omitempty"`
	Delta        *message `json:"delta,omitempty"`
	Logprobs     any      `json:"logprobs"`
	FinishReason *string  `json:"finish_reason"`
}

type message struct {
	Role             string     `json:"role,omitempty"`
	Content          *string    `json:"content"`
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []toolCall `json:"tool_calls,omitempty"`
	Audio            *audioOut  `json:"audio,omitempty"`
}

type usage struct {
	PromptTokens            int `json:"prompt_tokens"`
	CompletionTokens        int `json:"completion_tokens"`
	TotalTokens             int `json:"total_tokens"`
	CompletionTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
		AudioTokens     int `json:"audio_tokens,omitempty"`
	} `json:"completion_tokens_details"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func (rp *reply) usage() *usage {
	u := &usage{PromptTokens: rp.prompt, CompletionTokens: rp.completion, TotalTokens: rp.prompt + rp.completion}
	u.CompletionTokensDetails.ReasoningTokens = rp.reasoningTok
	u.CompletionTokensDetails.AudioTokens = rp.audioTok
	u.PromptTokensDetails.CachedTokens = rp.cached
	return u
}

func (rp *reply) message() *message {
	m := &message{Role: "assistant", Content: rp.content, ReasoningContent: rp.reasoning, Audio: rp.audio}
	if rp.toolCall != nil {
		m.ToolCalls = []toolCall{*rp.toolCall}
	}
	return m
}

// body is the JSON of a non-streamed answer.
func (rp *reply) body(id, model string, created time.Time) []byte {
	rp.speak()
	finish := rp.finish
	b, _ := json.Marshal(completion{
		ID: id, Object: "chat.completion", Created: created.Unix(), Model: model,
		Choices: []choice{{Index: 0, Message: rp.message(), FinishReason: &finish}},
		Usage:   rp.usage(),
	})
	return b
}

// chunks returns the events of a streamed answer, each a JSON object, without
// the final [DONE].
func (rp *reply) chunks(id, model string, created time.Time, includeUsage bool) [][]byte {
	var out [][]byte
	emit := func(delta *message, finish *string, u *usage) {
		c := completion{ID: id, Object: "chat.completion.chunk", Created: created.Unix(), Model: model, Usage: u,
			Choices: []choice{{Index: 0, Delta: delta, FinishReason: finish}}}
		if delta == nil {
			c.Choices = []choice{}
		}
		b, _ := json.Marshal(c)
		out = append(out, b)
	}
	empty := ""
	emit(&message{Role: "assistant", Content: &empty}, nil, nil)
	for _, piece := range pieces(rp.reasoning) {
		emit(&message{ReasoningContent: piece}, nil, nil)
	}
	if rp.content != nil {
		for _, piece := range pieces(*rp.content) {
			p := piece
			emit(&message{Content: &p}, nil, nil)
		}
	}
	if rp.toolCall != nil {
		emit(&message{ToolCalls: []toolCall{*rp.toolCall}}, nil, nil)
	}
	finish := rp.finish
	emit(&message{}, &finish, nil)
	if includeUsage {
		emit(nil, nil, rp.usage())
	}
	return out
}

// pieces splits text into stream deltas of about four words.
func pieces(s string) []string {
	var out []string
	words := 0
	start := 0
	for i, r := range s {
		if r == ' ' {
			words++
			if words%4 == 0 {
				out = append(out, s[start:i+1])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
