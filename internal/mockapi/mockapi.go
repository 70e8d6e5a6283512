// Package mockapi is a faithful stand-in for the MiMo chat-completions API
// (https://api.xiaomimimo.com/v1), used by demos, tests and benchmarks where the
// real API is out of reach or too costly to hammer.
//
// It behaves like the server side of the real API, in the same order: it checks
// the key (Authorization: Bearer or api-key), validates the body (400, 400
// "Unsupported model" for a retired name, 404 for an unknown model, 413 for a
// body too large), refuses content with a blocked term (421), plays a burst
// of spurious 402s and a Token Plan quota (429 once used up), enforces its own
// per-model limit on requests and tokens per minute (429 with Retry-After and
// retry-after-ms, or without them as the real API), then injects faults
// chosen by a seeded random stream (429, 500, 502, 503, 421, a proxy's HTML
// 451, a reset connection, a truncated 200, a hung connection), waits Latency
// ± Jitter and answers with a realistic chat.completion body: a deterministic
// reply derived from the prompt, reasoning_content when thinking is on, usage
// counted from the text with cached_tokens for a prompt prefix seen before,
// and a small WAV for the speech models. A retired name can be forwarded to
// its successor, answered with the successor's "model", as MiMo did before
// it refused them. Error bodies come in the shapes the real API and the
// proxies before it are seen to use (ErrorShape); the errors only MiMo sends
// always take MiMo's shape.
//
// Besides the API it serves, under /mock/, what a test asserts on: counts per
// model and status, the most requests in any 60-s and 1-s window, the call log of
// every job (from the X-Mimoq-Job-Id header), duplicates (work done twice for a
// job) and calls that came back before the Retry-After they were given. The
// limits, faults and key can be changed at run time (PUT /mock/config) so a test
// can break the API and later fix it.
package mockapi

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Header names the mock reads from mimoq's worker and writes on every response.
const (
	// HeaderJobID carries the mimoq job ID; the mock keeps a call log per job.
	HeaderJobID = "X-Mimoq-Job-Id"
	// HeaderAttempt carries the attempt number of the job (1 for the first).
	HeaderAttempt = "X-Mimoq-Attempt"
	// HeaderRequestID is set on every response, errors included: 32 hex digits.
	HeaderRequestID = "X-Request-Id"
	// HeaderRetryAfterMS is set with Retry-After on every 429.
	HeaderRetryAfterMS = "Retry-After-Ms"
)

// Unlimited turns a requests- or tokens-per-minute limit off.
const Unlimited = -1

// Defaults of Config.
const (
	DefaultRPM             = 100
	DefaultTPM             = 10_000_000
	DefaultHangFor         = 10 * time.Minute
	DefaultFaultRetryAfter = time.Second
	DefaultMaxBodyBytes    = 10 << 20
)

// Defaults of the quota mode and the prompt cache.
const (
	DefaultQuotaWindow        = time.Hour
	DefaultPromptCacheEntries = 100_000
)

// DefaultModels returns the current text models of the real API (2026-12)
// with their output token limits: mimo-v2.6-pro, mimo-v2.6-flash and
// mimo-v2.6-pro-ultraspeed, 131,072 tokens each.
func DefaultModels() map[string]int {
	return map[string]int{
		"mimo-v2.6-pro":            131072,
		"mimo-v2.6-flash":          131072,
		"mimo-v2.6-pro-ultraspeed": 131072,
	}
}

// SpeechModels returns the real API's current speech models with their
// output token limits. They are versioned apart from the text models and are
// not served unless Config.Models lists them.
func SpeechModels() map[string]int {
	return map[string]int{
		"mimo-v2.5-tts":             8192,
		"mimo-v2.5-tts-voiceclone":  8192,
		"mimo-v2.5-tts-voicedesign": 8192,
	}
}

// DefaultRetired returns the patterns of the names the real API retired and
// answers with 400 "Unsupported model": the mimo-v2-* series (2026-06-30) and
// the mimo-v2.5 text models (2026-10-21). The mimo-v2.5 speech models are
// current, so the pattern is not mimo-v2.5*.
func DefaultRetired() []string {
	return []string{"mimo-v2-*", "mimo-v2.5", "mimo-v2.5-pro*"}
}

// ErrorShape selects the body of error responses.
type ErrorShape string

// Error shapes.
const (
	// ShapeSeed is the documented shape:
	// {"error":{"code":"rate_limit_exceeded","message":"…","type":"error"}}.
	ShapeSeed ErrorShape = "seed"
	// ShapeMiMo is the shape seen from MiMo itself, the status as a string code:
	// {"error":{"code":"429","message":"Too many requests","type":"limitation"}}.
	ShapeMiMo ErrorShape = "mimo"
	// ShapeMixed picks, per request, among the seed shape, the MiMo shape, the
	// unwrapped {"type":"server_error","message":"…"} and, for 5xx, a proxy's
	// HTML page or an empty body; a 429's Retry-After is sometimes an HTTP date.
	ShapeMixed ErrorShape = "mixed"
)

// Limit overrides the rate limit of one model.
type Limit struct {
	// RPM is requests per minute; 0 takes Config.RPM, Unlimited turns it off.
	RPM int `json:"rpm"`
	// TPM is tokens (prompt + completion) per minute; 0 takes Config.TPM,
	// Unlimited turns it off.
	TPM int64 `json:"tpm"`
}

// Config configures a Server. Zero fields take their documented default.
type Config struct {
	// Key is the API key the mock accepts, sent as "Authorization: Bearer <key>"
	// or "api-key: <key>". Required.
	Key string

	// Models maps every model the mock serves to its output token limit: a
	// max_tokens or max_completion_tokens above it is a 400; 0 leaves it
	// unchecked. GET /v1/models lists them. A request for a retired name (see
	// Retired) is a 400, for any other model a 404. Default DefaultModels().
	Models map[string]int
	// ThinkingModels think (answer with reasoning_content) unless the request
	// says "thinking":{"type":"disabled"}; the others think only when it says
	// "enabled". Default the three mimo-v2.6 models: thinking is on by default
	// on every one.
	ThinkingModels []string
	// AudioModels answer with speech: message.audio holds a base64 WAV of the
	// text. Default the names of SpeechModels() (served only when Models
	// lists them).
	AudioModels []string
	// Retired are the model names answered with 400 "Unsupported model …":
	// exact names, or prefixes ending in "*". A served model is never taken as
	// retired by pattern (Update.RetiredModels retires one at run time).
	// Default DefaultRetired(); an empty, non-nil list retires nothing.
	Retired []string
	// Forward answers a request for a key's model as the value's, a served
	// model, and names the value in the answer's "model", as MiMo did with
	// retired names before refusing them: limits, usage and statistics are the
	// served model's. A key must not be a served model. Default none.
	Forward map[string]string
	// BlockedTerms are words the content filter refuses: a request whose
	// message text contains one (ignoring case) is answered 421. Default none.
	BlockedTerms []string

	// RPM is the requests-per-minute limit of each model, in any sliding 60-s
	// window. Default 100 (DefaultRPM); Unlimited turns it off.
	RPM int
	// TPM is the tokens-per-minute limit of each model (prompt + completion
	// tokens of admitted requests). Default 10,000,000; Unlimited turns it off.
	TPM int64
	// Limits overrides RPM and TPM for some models. Default none.
	Limits map[string]Limit

	// Latency is how long a successful request takes before its answer is
	// written. Default 0.
	Latency time.Duration
	// Jitter spreads Latency uniformly over Latency ± Jitter. Default 0.
	Jitter time.Duration

	// Seed makes fault injection and the mixed error shape deterministic: the
	// random stream of a request is derived from Seed and, when the request has
	// an X-Mimoq-Job-Id, from the job ID and how many calls the job made before
	// (else from the request's sequence number). Default 0.
	Seed int64
	// Rate429 is the share of admitted requests answered with an injected 429
	// (Retry-After: FaultRetryAfter). Rates are 0–1 each, their sum at most 1.
	// Default 0, as every rate.
	Rate429 float64
	// Rate500 is the share answered 500 internal_error.
	Rate500 float64
	// Rate502 is the share answered 502 with a proxy's HTML page.
	Rate502 float64
	// Rate503 is the share answered 503 service_unavailable.
	Rate503 float64
	// RateReset is the share whose connection is reset (TCP RST) without an answer.
	RateReset float64
	// RateTruncate is the share answered 200 with a Content-Length larger than
	// the body written before the connection closes.
	RateTruncate float64
	// RateHang is the share never answered: the connection hangs until the
	// client gives up or HangFor passes, then closes.
	RateHang float64
	// Rate421 is the share answered 421 by the content filter.
	Rate421 float64
	// Rate451 is the share answered 451 with a proxy's HTML page.
	Rate451 float64
	// HangFor bounds a hung request. Default 10 minutes.
	HangFor time.Duration
	// FaultRetryAfter is the Retry-After of an injected 429. Default 1 s.
	FaultRetryAfter time.Duration
	// OmitRetryAfter sends every 429 without Retry-After and retry-after-ms,
	// as the real API documents none. Default false.
	OmitRetryAfter bool

	// Burst402 answers the next this many valid requests (after New or an
	// Update that sets it) with 402 "Insufficient account funds" in MiMo's
	// unwrapped shape, the spurious 402 a Token Plan has sent in bursts; then
	// the mock recovers. Default 0.
	Burst402 int
	// Burst402For answers every valid request with that 402 for this long
	// after New (or an Update that sets it). Default 0.
	Burst402For time.Duration

	// QuotaTokens is a Token Plan quota: once the prompt and completion tokens
	// answered in the current QuotaWindow reach it (the last answer may go
	// over, as the real plan's does), every request is answered 429 "quota of
	// Token Plan has been exhausted", without Retry-After, until the window
	// ends. Windows are fixed, counted from the last reset. Default 0: none.
	QuotaTokens int64
	// QuotaWindow is how long a quota lasts. Default 1 h.
	QuotaWindow time.Duration

	// DisablePromptCache turns off the prompt cache, which otherwise reports
	// the tokens of the longest run of leading messages seen before (on the
	// same model) as usage.prompt_tokens_details.cached_tokens, as the real
	// API's automatic prefix caching does. Default false.
	DisablePromptCache bool
	// PromptCacheEntries bounds the prefixes each model remembers; the oldest
	// are forgotten first. Default 100,000.
	PromptCacheEntries int
	// ErrorShape selects the body of error responses. Default ShapeSeed.
	ErrorShape ErrorShape

	// MaxBodyBytes is the largest request body accepted; a larger one is a 413.
	// Default 10 MiB.
	MaxBodyBytes int64
	// Clock tells the time of rate limits, windows and call logs (latency and
	// hangs use real timers). Default time.Now.
	Clock func() time.Time
	// Logger receives a debug line per request and nothing else. Default: none.
	Logger zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.Models == nil {
		c.Models = DefaultModels()
	}
	if c.ThinkingModels == nil {
		c.ThinkingModels = slices.Sorted(maps.Keys(DefaultModels()))
	}
	if c.AudioModels == nil {
		c.AudioModels = slices.Sorted(maps.Keys(SpeechModels()))
	}
	if c.Retired == nil {
		c.Retired = DefaultRetired()
	}
	if c.QuotaWindow == 0 {
		c.QuotaWindow = DefaultQuotaWindow
	}
	if c.PromptCacheEntries == 0 {
		c.PromptCacheEntries = DefaultPromptCacheEntries
	}
	if c.RPM == 0 {
		c.RPM = DefaultRPM
	}
	if c.TPM == 0 {
		c.TPM = DefaultTPM
	}
	if c.HangFor == 0 {
		c.HangFor = DefaultHangFor
	}
	if c.FaultRetryAfter == 0 {
		c.FaultRetryAfter = DefaultFaultRetryAfter
	}
	if c.ErrorShape == "" {
		c.ErrorShape = ShapeSeed
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

func (c Config) validate() error {
	if c.Key == "" {
		return errors.New("key is required")
	}
	if len(c.Models) == 0 {
		return errors.New("models: at least one model is required")
	}
	for m, limit := range c.Models {
		if m == "" {
			return errors.New("models: empty model name")
		}
		if limit < 0 {
			return fmt.Errorf("models: output token limit of %s is negative", m)
		}
	}
	for m := range c.Limits {
		if _, ok := c.Models[m]; !ok {
			return fmt.Errorf("limits: unknown model %s", m)
		}
	}
	if c.RPM < Unlimited || c.TPM < Unlimited {
		return errors.New("rpm and tpm must be positive or Unlimited")
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("max body bytes must not be negative")
	}
	if err := validateRetired(c.Retired); err != nil {
		return err
	}
	if err := validateForward(c.Forward, c.Models, nil); err != nil {
		return err
	}
	switch {
	case c.Burst402 < 0:
		return errors.New("burst of 402s must not be negative")
	case c.Burst402For < 0:
		return errors.New("402 burst duration must not be negative")
	case c.QuotaTokens < 0:
		return errors.New("quota tokens must not be negative")
	case c.QuotaWindow < 0:
		return errors.New("quota window must not be negative")
	case c.PromptCacheEntries < 0:
		return errors.New("prompt cache entries must not be negative")
	}
	d := durations{c.Latency, c.Jitter, c.HangFor, c.FaultRetryAfter}
	if err := d.validate(); err != nil {
		return err
	}
	if err := c.rates().validate(); err != nil {
		return err
	}
	return c.ErrorShape.validate()
}

func (c Config) rates() faultRates {
	return faultRates{
		faultHTTP429:  c.Rate429,
		faultHTTP500:  c.Rate500,
		faultHTTP502:  c.Rate502,
		faultHTTP503:  c.Rate503,
		faultReset:    c.RateReset,
		faultTruncate: c.RateTruncate,
		faultHang:     c.RateHang,
		faultHTTP421:  c.Rate421,
		faultHTTP451:  c.Rate451,
	}
}

type durations struct{ latency, jitter, hangFor, faultRetryAfter time.Duration }

func (d durations) validate() error {
	switch {
	case d.latency < 0:
		return errors.New("latency must not be negative")
	case d.jitter < 0:
		return errors.New("jitter must not be negative")
	case d.hangFor < 0:
		return errors.New("hang duration must not be negative")
	case d.faultRetryAfter < 0:
		return errors.New("fault retry-after must not be negative")
	}
	return nil
}

func (s ErrorShape) validate() error {
	switch s {
	case ShapeSeed, ShapeMiMo, ShapeMixed:
		return nil
	}
	return fmt.Errorf("error shape %q: want seed, mimo or mixed", string(s))
}

// ParseErrorShape reads "seed", "mimo" or "mixed".
func ParseErrorShape(s string) (ErrorShape, error) {
	e := ErrorShape(s)
	return e, e.validate()
}

// validateRetired checks retired-name patterns: non-empty, "*" only at the end.
func validateRetired(patterns []string) error {
	for _, p := range patterns {
		if p == "" || p == "*" || strings.Contains(strings.TrimSuffix(p, "*"), "*") {
			return fmt.Errorf("retired: %q must be a model name or a prefix ending in *", p)
		}
	}
	return nil
}

// validateForward checks that every forward goes from a name that is not
// served to one that is (and is not retired).
func validateForward(fwd map[string]string, served map[string]int, retired map[string]bool) error {
	for from, to := range fwd {
		if from == "" || to == "" {
			return errors.New("forward: empty model name")
		}
		if _, ok := served[from]; ok {
			return fmt.Errorf("forward: %s is a served model: only a name the mock does not serve can be forwarded", from)
		}
		if _, ok := served[to]; !ok || retired[to] {
			return fmt.Errorf("forward: %s is forwarded to %s, which is not served", from, to)
		}
	}
	return nil
}

// retiredName reports whether name matches a retired pattern.
func retiredName(patterns []string, name string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

// modelInfo is what the mock knows of a model; it never changes after New.
type modelInfo struct {
	name      string
	maxOutput int
	thinking  bool
	audio     bool
}

// Server is the mock API. It is an http.Handler, safe for concurrent use.
type Server struct {
	models       map[string]modelInfo
	modelNames   []string
	clock        func() time.Time
	log          zerolog.Logger
	maxBody      int64
	cacheEntries int // prompt prefixes remembered per model
	mux          *http.ServeMux

	setMu sync.Mutex // serializes Update
	set   atomic.Pointer[settings]
	st    atomic.Pointer[state]

	done      chan struct{}
	closeOnce sync.Once
}

var _ http.Handler = (*Server)(nil)

// New returns a mock configured by cfg.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mockapi config: %w", err)
	}
	s := &Server{
		models:       make(map[string]modelInfo, len(cfg.Models)),
		clock:        cfg.Clock,
		log:          cfg.Logger,
		maxBody:      cfg.MaxBodyBytes,
		cacheEntries: cfg.PromptCacheEntries,
		done:         make(chan struct{}),
	}
	thinking := setOf(cfg.ThinkingModels)
	audio := setOf(cfg.AudioModels)
	for m, limit := range cfg.Models {
		s.models[m] = modelInfo{name: m, maxOutput: limit, thinking: thinking[m], audio: audio[m]}
		s.modelNames = append(s.modelNames, m)
	}
	sort.Strings(s.modelNames)
	s.set.Store(&settings{
		key:             cfg.Key,
		rpm:             resolveLimit(cfg.RPM),
		tpm:             resolveLimit(cfg.TPM),
		limits:          cloneLimits(cfg.Limits),
		latency:         cfg.Latency,
		jitter:          cfg.Jitter,
		hangFor:         cfg.HangFor,
		faultRetryAfter: cfg.FaultRetryAfter,
		seed:            cfg.Seed,
		rates:           cfg.rates(),
		shape:           cfg.ErrorShape,
		omitRetryAfter:  cfg.OmitRetryAfter,
		retiredPatterns: slices.Clone(cfg.Retired),
		retired:         map[string]bool{},
		forward:         maps.Clone(cfg.Forward),
		blocked:         lowerAll(cfg.BlockedTerms),
		burst:           newBurst(cfg.Burst402, cfg.Burst402For, cfg.Clock()),
		quotaTokens:     cfg.QuotaTokens,
		quotaWindow:     cfg.QuotaWindow,
		promptCache:     !cfg.DisablePromptCache,
	})
	s.st.Store(s.newState())
	s.mux = s.routes()
	return s, nil
}

// resolveLimit turns a Config limit (Unlimited or positive) into the internal
// form where 0 means unlimited.
func resolveLimit[T int | int64](n T) T {
	if n < 0 {
		return 0
	}
	return n
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

func cloneLimits(l map[string]Limit) map[string]Limit {
	c := make(map[string]Limit, len(l))
	for k, v := range l {
		c[k] = v
	}
	return c
}

// Close releases every hung request and makes later hangs end at once. The
// mock runs no background goroutines; Close is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
}

// ServeHTTP serves the API under /v1/ (and without the prefix) and the mock's
// own endpoints under /mock/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderRequestID, newHexID())
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", s.handleChat)
	mux.HandleFunc("/chat/completions", s.handleChat)
	mux.HandleFunc("/v1/models", s.handleModels)
	mux.HandleFunc("/models", s.handleModels)
	mux.HandleFunc("GET /mock/stats", s.handleStats)
	mux.HandleFunc("GET /mock/jobs/{id}", s.handleJob)
	mux.HandleFunc("POST /mock/reset", s.handleReset)
	mux.HandleFunc("GET /mock/config", s.handleGetConfig)
	mux.HandleFunc("PUT /mock/config", s.handlePutConfig)
	mux.HandleFunc("PATCH /mock/config", s.handlePutConfig)
	mux.HandleFunc("/", s.handleUnknown)
	return mux
}

// splitmix is a tiny deterministic random stream, one per request, so that no
// lock is shared between requests and a job's faults do not depend on what
// other requests run at the same time.
type splitmix struct{ s uint64 }

func (r *splitmix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// float returns a number in [0, 1).
func (r *splitmix) float() float64 { return float64(r.next()>>11) / (1 << 53) }

func newStream(seed int64, key string, n uint64) splitmix {
	// FNV-1a of the key, mixed with the seed and the call number.
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	r := splitmix{s: h ^ uint64(seed)*0x9e3779b97f4a7c15 ^ n*0xd1b54a32d192ed03}
	r.next()
	return r
}

// jittered returns latency ± jitter, never negative.
func jittered(r *splitmix, latency, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return latency
	}
	d := latency + time.Duration((2*r.float()-1)*float64(jitter))
	return time.Duration(math.Max(0, float64(d)))
}
