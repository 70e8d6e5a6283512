package mockapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// faultKind is one kind of injected fault.
type faultKind int

// The zero value is no fault; array slot 0 is unused.
const (
	faultNone faultKind = iota
	faultHTTP429
	faultHTTP500
	faultHTTP502
	faultHTTP503
	faultReset
	faultTruncate
	faultHang
	faultHTTP421
	faultHTTP451
	numFaults
)

// faultNames are the keys of Stats.Faults and Call.Fault.
var faultNames = [numFaults]string{"", "429", "500", "502", "503", "reset", "truncate", "hang", "421", "451"}

func (k faultKind) String() string {
	if k <= faultNone || k >= numFaults {
		return ""
	}
	return faultNames[k]
}

// faultRates holds the rate of each fault kind.
type faultRates [numFaults]float64

func (r faultRates) validate() error {
	sum := 0.0
	for k, v := range r {
		if k == int(faultNone) {
			continue
		}
		if !(v >= 0 && v <= 1) { // also rejects NaN
			return fmt.Errorf("rate of fault %s is %v: want 0 to 1", faultNames[k], v)
		}
		sum += v
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("fault rates add up to %v: want at most 1", sum)
	}
	return nil
}

// pick chooses the fault of one request from a uniform number u in [0, 1).
func (r faultRates) pick(u float64) faultKind {
	cum := 0.0
	for k, v := range r {
		cum += v
		if v > 0 && u < cum {
			return faultKind(k)
		}
	}
	return faultNone
}

// settings is what PUT /mock/config may change. A snapshot is immutable: an
// update stores a new one, and each request works with the one it loaded.
type settings struct {
	key             string
	rpm             int   // 0: unlimited
	tpm             int64 // 0: unlimited
	limits          map[string]Limit
	latency         time.Duration
	jitter          time.Duration
	hangFor         time.Duration
	faultRetryAfter time.Duration
	seed            int64
	rates           faultRates
	shape           ErrorShape
	omitRetryAfter  bool
	retiredPatterns []string
	retired         map[string]bool // served models retired at run time
	forward         map[string]string
	blocked         []string // lower case
	burst           *burst   // shared by the snapshots until an Update sets a new one
	quotaTokens     int64    // 0: no quota
	quotaWindow     time.Duration
	promptCache     bool
}

// burst is a run of spurious 402s: the next n valid requests, and every one
// before until.
type burst struct {
	left  atomic.Int64
	until time.Time
}

func newBurst(n int, d time.Duration, now time.Time) *burst {
	b := &burst{}
	b.left.Store(int64(n))
	if d > 0 {
		b.until = now.Add(d)
	}
	return b
}

// take reports whether the request arriving at now is answered 402.
func (b *burst) take(now time.Time) bool {
	if now.Before(b.until) {
		return true
	}
	for {
		n := b.left.Load()
		if n <= 0 {
			return false
		}
		if b.left.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func lowerAll(list []string) []string {
	var out []string
	for _, s := range list {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// limitsOf returns the limits of one model; 0 means unlimited.
func (s *settings) limitsOf(model string) (rpm int, tpm int64) {
	rpm, tpm = s.rpm, s.tpm
	if o, ok := s.limits[model]; ok {
		if o.RPM != 0 {
			rpm = resolveLimit(o.RPM)
		}
		if o.TPM != 0 {
			tpm = resolveLimit(o.TPM)
		}
	}
	return rpm, tpm
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("250ms"); it also reads a number of milliseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "250ms" or 250 (milliseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return errors.New("duration: want a string such as \"250ms\" or a number of milliseconds")
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// Update changes a running mock; nil fields stay as they are. It is also the
// JSON body of PUT /mock/config. Unlike Config, 0 is taken literally: an RPM or
// TPM of 0 (or below) means unlimited, a rate of 0 turns a fault off.
type Update struct {
	Key *string `json:"key,omitempty"`
	// RPM and TPM set the limit of every model without an override; 0 = unlimited.
	RPM *int   `json:"rpm,omitempty"`
	TPM *int64 `json:"tpm,omitempty"`
	// Limits, when not nil, replaces every per-model override (as Config.Limits:
	// 0 takes the global limit, -1 is unlimited); an empty map removes them.
	Limits          map[string]Limit `json:"limits,omitempty"`
	Latency         *Duration        `json:"latency,omitempty"`
	Jitter          *Duration        `json:"jitter,omitempty"`
	HangFor         *Duration        `json:"hang_for,omitempty"`
	FaultRetryAfter *Duration        `json:"fault_retry_after,omitempty"`
	Seed            *int64           `json:"seed,omitempty"`
	Rate429         *float64         `json:"rate_429,omitempty"`
	Rate500         *float64         `json:"rate_500,omitempty"`
	Rate502         *float64         `json:"rate_502,omitempty"`
	Rate503         *float64         `json:"rate_503,omitempty"`
	RateReset       *float64         `json:"rate_reset,omitempty"`
	RateTruncate    *float64         `json:"rate_truncate,omitempty"`
	RateHang        *float64         `json:"rate_hang,omitempty"`
	Rate421         *float64         `json:"rate_421,omitempty"`
	Rate451         *float64         `json:"rate_451,omitempty"`
	ErrorShape      *ErrorShape      `json:"error_shape,omitempty"`
	OmitRetryAfter  *bool            `json:"omit_retry_after,omitempty"`
	// Burst402 and Burst402For, when either is set, start a new burst of
	// 402s (as Config's) from now; the other takes 0 when not set.
	Burst402    *int      `json:"burst_402,omitempty"`
	Burst402For *Duration `json:"burst_402_for,omitempty"`
	// QuotaTokens (0 = no quota) and QuotaWindow (0 = 1 h) change the quota;
	// the tokens already used in the window stay counted.
	QuotaTokens *int64    `json:"quota_tokens,omitempty"`
	QuotaWindow *Duration `json:"quota_window,omitempty"`
	PromptCache *bool     `json:"prompt_cache,omitempty"`
	// RetiredModels, when not nil, replaces the served models retired at run
	// time: they leave GET /v1/models and are answered 400 "Unsupported
	// model", as a model retired while a batch waits; an empty list restores
	// them all.
	RetiredModels *[]string `json:"retired_models,omitempty"`
	// Forward, when not nil, replaces every forward (as Config.Forward); an
	// empty map removes them.
	Forward map[string]string `json:"forward,omitempty"`
	// BlockedTerms, when not nil, replaces the content filter's terms.
	BlockedTerms *[]string `json:"blocked_terms,omitempty"`
}

// Update applies u atomically: either all of it or, on an invalid value,
// none of it. Requests already in flight finish with the settings they began with.
func (s *Server) Update(u Update) error {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	n := *s.set.Load()
	if u.Key != nil {
		if *u.Key == "" {
			return errors.New("key must not be empty")
		}
		n.key = *u.Key
	}
	if u.RPM != nil {
		n.rpm = max(*u.RPM, 0)
	}
	if u.TPM != nil {
		n.tpm = max(*u.TPM, 0)
	}
	if u.Limits != nil {
		for m, l := range u.Limits {
			if _, ok := s.models[m]; !ok {
				return fmt.Errorf("limits: unknown model %s", m)
			}
			if l.RPM < Unlimited || l.TPM < Unlimited {
				return fmt.Errorf("limits of %s: want a positive number, 0 (global) or -1 (unlimited)", m)
			}
		}
		n.limits = cloneLimits(u.Limits)
	}
	setDur := func(dst *time.Duration, v *Duration) {
		if v != nil {
			*dst = time.Duration(*v)
		}
	}
	setDur(&n.latency, u.Latency)
	setDur(&n.jitter, u.Jitter)
	setDur(&n.hangFor, u.HangFor)
	setDur(&n.faultRetryAfter, u.FaultRetryAfter)
	if err := (durations{n.latency, n.jitter, n.hangFor, n.faultRetryAfter}).validate(); err != nil {
		return err
	}
	if u.Seed != nil {
		n.seed = *u.Seed
	}
	for k, v := range map[faultKind]*float64{
		faultHTTP429: u.Rate429, faultHTTP500: u.Rate500, faultHTTP502: u.Rate502,
		faultHTTP503: u.Rate503, faultReset: u.RateReset, faultTruncate: u.RateTruncate,
		faultHang: u.RateHang, faultHTTP421: u.Rate421, faultHTTP451: u.Rate451,
	} {
		if v != nil {
			n.rates[k] = *v
		}
	}
	if err := n.rates.validate(); err != nil {
		return err
	}
	if u.ErrorShape != nil {
		if err := u.ErrorShape.validate(); err != nil {
			return err
		}
		n.shape = *u.ErrorShape
	}
	if u.OmitRetryAfter != nil {
		n.omitRetryAfter = *u.OmitRetryAfter
	}
	if err := s.updateModes(&n, u); err != nil {
		return err
	}
	s.set.Store(&n)
	return nil
}

// updateModes applies the parts of u that change what the mock serves: the
// 402 burst, the quota, the prompt cache, retired models, forwards and the
// content filter.
func (s *Server) updateModes(n *settings, u Update) error {
	if u.Burst402 != nil || u.Burst402For != nil {
		count, d := 0, time.Duration(0)
		if u.Burst402 != nil {
			count = *u.Burst402
		}
		if u.Burst402For != nil {
			d = time.Duration(*u.Burst402For)
		}
		if count < 0 || d < 0 {
			return errors.New("burst of 402s must not be negative")
		}
		n.burst = newBurst(count, d, s.clock())
	}
	if u.QuotaTokens != nil {
		if *u.QuotaTokens < 0 {
			return errors.New("quota tokens must not be negative")
		}
		n.quotaTokens = *u.QuotaTokens
	}
	if u.QuotaWindow != nil {
		if *u.QuotaWindow < 0 {
			return errors.New("quota window must not be negative")
		}
		n.quotaWindow = cmp.Or(time.Duration(*u.QuotaWindow), DefaultQuotaWindow)
	}
	if u.PromptCache != nil {
		n.promptCache = *u.PromptCache
	}
	if u.RetiredModels != nil {
		retired := make(map[string]bool, len(*u.RetiredModels))
		for _, m := range *u.RetiredModels {
			if _, ok := s.models[m]; !ok {
				return fmt.Errorf("retired models: %s is not a served model", m)
			}
			retired[m] = true
		}
		n.retired = retired
	}
	if u.Forward != nil {
		n.forward = maps.Clone(u.Forward)
	}
	served := make(map[string]int, len(s.models))
	for m := range s.models {
		served[m] = 0
	}
	if err := validateForward(n.forward, served, n.retired); err != nil {
		return err
	}
	if u.BlockedTerms != nil {
		n.blocked = lowerAll(*u.BlockedTerms)
	}
	return nil
}

// Settings is the current configuration as GET /mock/config shows it. The key
// itself is never shown.
type Settings struct {
	KeySet          bool               `json:"key_set"`
	Models          map[string]Model   `json:"models"`
	Latency         Duration           `json:"latency"`
	Jitter          Duration           `json:"jitter"`
	HangFor         Duration           `json:"hang_for"`
	FaultRetryAfter Duration           `json:"fault_retry_after"`
	Seed            int64              `json:"seed"`
	Rates           map[string]float64 `json:"rates"`
	ErrorShape      ErrorShape         `json:"error_shape"`
	MaxBodyBytes    int64              `json:"max_body_bytes"`
	OmitRetryAfter  bool               `json:"omit_retry_after"`
	// Retired are the retired-name patterns (Config.Retired).
	Retired []string `json:"retired"`
	// Forward maps forwarded names to the served model that answers them.
	Forward      map[string]string `json:"forward"`
	BlockedTerms []string          `json:"blocked_terms"`
	// Burst402Left is how many 402s of the burst by count are left;
	// Burst402Until is when the burst by time ends (zero: none).
	Burst402Left  int64     `json:"burst_402_left"`
	Burst402Until time.Time `json:"burst_402_until"`
	QuotaTokens   int64     `json:"quota_tokens"`
	QuotaWindow   Duration  `json:"quota_window"`
	PromptCache   bool      `json:"prompt_cache"`
}

// Model is one served model with its current limits (0: unlimited or unchecked).
type Model struct {
	RPM             int   `json:"rpm"`
	TPM             int64 `json:"tpm"`
	MaxOutputTokens int   `json:"max_output_tokens"`
	Thinking        bool  `json:"thinking"`
	Audio           bool  `json:"audio"`
	// Retired is set once Update.RetiredModels retired the model.
	Retired bool `json:"retired"`
}

// Settings returns the current configuration.
func (s *Server) Settings() Settings {
	set := s.set.Load()
	out := Settings{
		KeySet:          set.key != "",
		Models:          make(map[string]Model, len(s.models)),
		Latency:         Duration(set.latency),
		Jitter:          Duration(set.jitter),
		HangFor:         Duration(set.hangFor),
		FaultRetryAfter: Duration(set.faultRetryAfter),
		Seed:            set.seed,
		Rates:           make(map[string]float64, numFaults),
		ErrorShape:      set.shape,
		MaxBodyBytes:    s.maxBody,
		OmitRetryAfter:  set.omitRetryAfter,
		Retired:         append([]string{}, set.retiredPatterns...),
		Forward:         maps.Clone(set.forward),
		BlockedTerms:    append([]string{}, set.blocked...),
		Burst402Left:    max(set.burst.left.Load(), 0),
		Burst402Until:   set.burst.until,
		QuotaTokens:     set.quotaTokens,
		QuotaWindow:     Duration(set.quotaWindow),
		PromptCache:     set.promptCache,
	}
	if out.Forward == nil {
		out.Forward = map[string]string{}
	}
	for name, m := range s.models {
		rpm, tpm := set.limitsOf(name)
		out.Models[name] = Model{RPM: rpm, TPM: tpm, MaxOutputTokens: m.maxOutput, Thinking: m.thinking, Audio: m.audio, Retired: set.retired[name]}
	}
	for k := faultNone + 1; k < numFaults; k++ {
		out.Rates[faultNames[k]] = set.rates[k]
	}
	return out
}

// statusKeys turns a count per status into a map keyed by the status as text.
func statusKeys(counts []int64) map[string]int64 {
	m := make(map[string]int64)
	for code, n := range counts {
		if n > 0 {
			m[strconv.Itoa(code)] = n
		}
	}
	return m
}
