// Package lane is one model's path to the API, fleet-wide: the GCRA rate
// limit (requests and tokens per minute) that every worker process shares
// through Redis, the cooldown that follows a 429, and pause/resume.
//
// Gate hands out permits to call the API; Lanes pauses, resumes and reports
// lanes. Both keep their state in Redis, so it holds across the fleet and
// survives restarts. Keys, per model M, with the default prefix "mimoq:":
//
//	mimoq:{lane:M}:state          hash: status, since (unix ms), reason, by, probe ("1": paused by an error, probed)
//	mimoq:{lane:M}:cooldown       string: end of the cooldown (unix ms), PX = its length
//	mimoq:{lane:M}:probe          string: set while the next probe of a lane paused by an error is not due
//	rate:mimoq:{lane:M}:rpm       GCRA state of the request limit (redis_rate adds "rate:")
//	rate:mimoq:{lane:M}:tpm       GCRA state of the token limit
//	mimoq:{lane:M}:debt           tokens a stopped process owed the token limit
//	mimoq:{lane:M}:throttle       hash: the run of 429s and the effective rate (throttle.go)
//	mimoq:{lane:M}:ok:T           string: successes in the 10-s bucket T (throttle.go)
//	mimoq:lane:events             pub/sub channel: pause, resume, cooldown and rate events
//
// The {lane:M} hash tag keeps one model's keys in one Redis Cluster slot, so
// the Lua scripts that touch several of them stay valid on a cluster.
package lane

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limit is a model's fleet-wide rate limit. Zero (or less) means unlimited.
type Limit struct {
	// RPM is requests per minute.
	RPM int `json:"rpm"`
	// TPM is tokens per minute (prompt and completion together).
	TPM int64 `json:"tpm"`
}

// DefaultLimit is MiMo's documented limit per account and model.
var DefaultLimit = Limit{RPM: 100, TPM: 10_000_000}

// ParseLimits parses per-model limits in the syntax of MIMOQ_MODEL_LIMITS:
// comma-separated model=rpm:tpm entries, 0 meaning unlimited, e.g.
// "mimo-v2.6-pro=50:2000000,mimo-v2.6-flash=200:0". An empty string gives an
// empty map.
func ParseLimits(s string) (map[string]Limit, error) {
	out := make(map[string]Limit)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		model, rest, ok := strings.Cut(entry, "=")
		model = strings.TrimSpace(model)
		if !ok {
			return nil, fmt.Errorf("model limit %q has no '=': write model=rpm:tpm, e.g. mimo-v2.6-pro=50:2000000", entry)
		}
		if model == "" {
			return nil, fmt.Errorf("model limit %q names no model before '='", entry)
		}
		if _, dup := out[model]; dup {
			return nil, fmt.Errorf("model limit %q: model %s is listed twice", entry, model)
		}
		rpmStr, tpmStr, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, fmt.Errorf("model limit %q has no ':': write model=rpm:tpm (0 means unlimited)", entry)
		}
		rpm, err := strconv.ParseInt(strings.TrimSpace(rpmStr), 10, 32)
		if err != nil || rpm < 0 {
			return nil, fmt.Errorf("model limit %q: requests per minute %q is not a whole number of at least 0", entry, rpmStr)
		}
		tpm, err := strconv.ParseInt(strings.TrimSpace(tpmStr), 10, 64)
		if err != nil || tpm < 0 {
			return nil, fmt.Errorf("model limit %q: tokens per minute %q is not a whole number of at least 0", entry, tpmStr)
		}
		out[model] = Limit{RPM: int(rpm), TPM: tpm}
	}
	return out, nil
}

// ErrPaused is returned (wrapped in a *PausedError) by Gate.Wait when the
// model's lane is paused. Compare with errors.Is.
var ErrPaused = errors.New("lane paused")

// ErrClosed is returned by Gate.Wait once the Gate is closed.
var ErrClosed = errors.New("lane gate closed")

// PausedError says which lane is paused and why. It matches ErrPaused.
type PausedError struct {
	Model  string
	Reason string
}

func (e *PausedError) Error() string {
	if e.Reason == "" {
		return "lane " + e.Model + " is paused"
	}
	return "lane " + e.Model + " is paused: " + e.Reason
}

// Is makes errors.Is(err, ErrPaused) true.
func (e *PausedError) Is(target error) bool { return target == ErrPaused }

// Lane statuses, as State.Status reports them.
const (
	StatusRunning     = "running"
	StatusCoolingDown = "cooling_down"
	StatusPaused      = "paused"
)

// rateKeyPrefix is what redis_rate puts in front of the keys it is given.
const rateKeyPrefix = "rate:"

// keyspace names the package's keys (prefix job.KeyPrefix).
type keyspace struct{ prefix string }

func (k keyspace) lane(model string) string     { return k.prefix + "{lane:" + model + "}" }
func (k keyspace) state(model string) string    { return k.lane(model) + ":state" }
func (k keyspace) cooldown(model string) string { return k.lane(model) + ":cooldown" }

// probe exists while the next probe of a lane paused by an error is not
// due; its value names the worker probing, or "wait".
func (k keyspace) probe(model string) string { return k.lane(model) + ":probe" }

// rpm and tpm are the keys handed to redis_rate, which stores them under
// rateKeyPrefix+key.
func (k keyspace) rpm(model string) string { return k.lane(model) + ":rpm" }
func (k keyspace) tpm(model string) string { return k.lane(model) + ":tpm" }

// debt holds the tokens stopped processes owed the token limit, until a
// running Gate takes them over.
func (k keyspace) debt(model string) string { return k.lane(model) + ":debt" }
func (k keyspace) events() string           { return k.prefix + "lane:events" }

// event is a message on the events channel, written by the Lua scripts.
type event struct {
	Model  string `json:"model"`
	Kind   string `json:"kind"`          // pause | resume | cooldown | rate
	RPM    int    `json:"rpm,omitempty"` // rate: the effective limit, 0 = the configured one
	TTLMs  int64  `json:"ttl_ms,omitempty"`
	Reason string `json:"reason,omitempty"`
	By     string `json:"by,omitempty"`
}
