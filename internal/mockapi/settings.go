package mockapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	numFaults
)

// faultNames are the keys of Stats.Faults and Call.Fault.
var faultNames = [numFaults]string{"", "429", "500", "502", "503", "reset", "truncate", "hang"}

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
	ErrorShape      *ErrorShape      `json:"error_shape,omitempty"`
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
		faultHang: u.RateHang,
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
	s.set.Store(&n)
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
}

// Model is one served model with its current limits (0: unlimited or unchecked).
type Model struct {
	RPM             int   `json:"rpm"`
	TPM             int64 `json:"tpm"`
	MaxOutputTokens int   `json:"max_output_tokens"`
	Thinking        bool  `json:"thinking"`
	Audio           bool  `json:"audio"`
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
	}
	for name, m := range s.models {
		rpm, tpm := set.limitsOf(name)
		out.Models[name] = Model{RPM: rpm, TPM: tpm, MaxOutputTokens: m.maxOutput, Thinking: m.thinking, Audio: m.audio}
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
