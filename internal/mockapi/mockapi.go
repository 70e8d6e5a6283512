// Package mockapi is a faithful stand-in for the MiMo chat-completions API
// (https://api.xiaomimimo.com/v1), used by demos, tests and benchmarks where the
// real API is out of reach or too costly to hammer.
//
// It behaves like the server side of the real API, in the same order: it checks
// the key (Authorization: Bearer or api-key), validates the body (400, 404 for an
// unknown model, 413 for a body too large), enforces its own per-model limit on
// requests and tokens per minute (429 with Retry-After and retry-after-ms), then
// injects faults chosen by a seeded random stream (429, 500, 502, 503, a reset
// connection, a truncated 200, a hung connection), waits Latency ± Jitter and
// answers with a realistic chat.completion body: a deterministic reply derived
// from the prompt, reasoning_content when thinking is on, usage counted from the
// text, and a small WAV for the speech model. Error bodies come in the shapes the
// real API and the proxies before it are seen to use (ErrorShape).
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
	"math"
	"net/http"
	"sort"
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

// DefaultModels returns the models of the real API with their output token
// limits (0: not checked).
func DefaultModels() map[string]int {
	return map[string]int{
		"mimo-v2-pro":   131072,
		"mimo-v2-omni":  131072,
		"mimo-v2-flash": 65536,
		"mimo-v2-tts":   0,
	}
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
	// unchecked. A request for any other model is a 404. Default DefaultModels().
	Models map[string]int
	// ThinkingModels think (answer with reasoning_content) unless the request
	// says "thinking":{"type":"disabled"}; the others think only when it says
	// "enabled". Default mimo-v2-pro and mimo-v2-omni.
	ThinkingModels []string
	// AudioModels answer with speech: message.audio holds a base64 WAV of the
	// text. Default mimo-v2-tts.
	AudioModels []string

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
	// HangFor bounds a hung request. Default 10 minutes.
	HangFor time.Duration
	// FaultRetryAfter is the Retry-After of an injected 429. Default 1 s.
	FaultRetryAfter time.Duration
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
		c.ThinkingModels = []string{"mimo-v2-pro", "mimo-v2-omni"}
	}
	if c.AudioModels == nil {
		c.AudioModels = []string{"mimo-v2-tts"}
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

// modelInfo is what the mock knows of a model; it never changes after New.
type modelInfo struct {
	name      string
	maxOutput int
	thinking  bool
	audio     bool
}

// Server is the mock API. It is an http.Handler, safe for concurrent use.
type Server struct {
	models     map[string]modelInfo
	modelNames []string
	clock      func() time.Time
	log        zerolog.Logger
	maxBody    int64
	mux        *http.ServeMux

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
		models:  make(map[string]modelInfo, len(cfg.Models)),
		clock:   cfg.Clock,
		log:     cfg.Logger,
		maxBody: cfg.MaxBodyBytes,
		done:    make(chan struct{}),
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
