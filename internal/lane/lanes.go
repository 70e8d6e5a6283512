package lane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// State is a lane as operators see it.
type State struct {
	Model string `json:"model"`
	// Status is "running", "cooling_down" or "paused" (paused wins over a
	// cooldown running at the same time).
	Status        string    `json:"status"`
	CooldownUntil time.Time `json:"cooldown_until,omitzero"`
	PausedSince   time.Time `json:"paused_since,omitzero"`
	Reason        string    `json:"reason,omitempty"`
	// PausedBy says who paused the lane, e.g. "worker" or "operator".
	PausedBy string `json:"paused_by,omitempty"`
	// Probed says the lane was paused by an error and is probed: one job
	// is let through, fleet-wide, at NextProbe (zero: due now).
	Probed    bool      `json:"probed,omitempty"`
	NextProbe time.Time `json:"next_probe,omitzero"`
	// EffectiveRPM is the request limit the fleet keeps after 429s while
	// within Limit (adaptive rate); 0 when it is Limit.RPM.
	EffectiveRPM int `json:"effective_rpm,omitempty"`
	// Throttled counts the 429s in a row, from Since429 to Last429.
	Throttled int       `json:"throttled_429s,omitempty"`
	Since429  time.Time `json:"since_429,omitzero"`
	Last429   time.Time `json:"last_429,omitzero"`
	Limit     Limit     `json:"limit"`
}

// Lanes pauses, resumes and reports the lanes of the fleet.
type Lanes struct {
	rdb      redis.UniversalClient
	insp     *asynq.Inspector
	ks       keyspace
	actor    string
	def      Limit
	perModel map[string]Limit
}

// LanesOption configures Lanes.
type LanesOption func(*Lanes)

// WithActor names who pauses through these Lanes, stored with the pause as
// State.PausedBy, e.g. "worker host-3". Default "operator".
func WithActor(actor string) LanesOption {
	return func(l *Lanes) {
		if actor != "" {
			l.actor = actor
		}
	}
}

// WithLimits sets the limits State reports, as given to GateConfig.
// Default DefaultLimit for every model.
func WithLimits(def Limit, perModel map[string]Limit) LanesOption {
	return func(l *Lanes) {
		if def != (Limit{}) {
			l.def = def
		}
		l.perModel = maps.Clone(perModel)
	}
}

// NewLanes returns Lanes: pausing model M pauses the asynq queue
// job.AsynqQueue(q, M) of every mimoq queue q, whichever queues the pausing
// process consumes itself, so that a pause covers the model everywhere.
// insp may be nil to leave the asynq queues alone.
func NewLanes(rdb redis.UniversalClient, insp *asynq.Inspector, opts ...LanesOption) *Lanes {
	l := &Lanes{
		rdb:   rdb,
		insp:  insp,
		ks:    keyspace{prefix: job.KeyPrefix},
		actor: "operator",
		def:   DefaultLimit,
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Pause stops calls for model across the fleet until Resume, and survives
// restarts. Waiters of every Gate get ErrPaused at once, and the model's
// asynq queues are paused so that their jobs stay queued, untouched. It
// reports whether the lane was running before (false: already paused).
func (l *Lanes) Pause(ctx context.Context, model, reason string) (changed bool, err error) {
	if model == "" {
		return false, errors.New("pause lane: empty model name")
	}
	// Queues first, so that workers take no new job of the model while the
	// gates close. Pausing a queue that has never had a task works: asynq
	// keeps the flag in its own key, and honours it when tasks arrive.
	if err := l.eachQueue(model, l.pauseQueue); err != nil {
		return false, fmt.Errorf("pause lane %s: %w", model, err)
	}
	return l.pause(ctx, model, reason, 0, true)
}

// PauseForError pauses the lane as Pause does, for an error every call of
// the model would get (401, 402, 403, 451, a model the API stopped
// serving). With probeAfter > 0 the lane is probed: the first probe is due
// probeAfter from now (see ClaimProbe). A lane already paused stays as it
// is.
func (l *Lanes) PauseForError(ctx context.Context, model, reason string, probeAfter time.Duration) (changed bool, err error) {
	if model == "" {
		return false, errors.New("pause lane: empty model name")
	}
	if err := l.eachQueue(model, l.pauseQueue); err != nil {
		return false, fmt.Errorf("pause lane %s: %w", model, err)
	}
	return l.pause(ctx, model, reason, max(probeAfter.Milliseconds(), 0), false)
}

func (l *Lanes) pause(ctx context.Context, model, reason string, probeMs int64, operator bool) (bool, error) {
	op := "0"
	if operator {
		op = "1"
	}
	n, err := pauseScript.Run(ctx, l.rdb, []string{l.ks.state(model), l.ks.probe(model)}, l.ks.events(), model,
		reason, l.actor, probeMs, op).Int()
	if err != nil {
		return false, fmt.Errorf("pause lane %s: %w", model, err)
	}
	return n == 1, nil
}

// Resume restarts calls for model across the fleet. It reports whether the
// lane was paused before.
func (l *Lanes) Resume(ctx context.Context, model string) (changed bool, err error) {
	if model == "" {
		return false, errors.New("resume lane: empty model name")
	}
	// Gates first, so that a job taken from a resumed queue finds the lane open.
	n, err := resumeScript.Run(ctx, l.rdb, []string{l.ks.state(model), l.ks.probe(model)}, l.ks.events(), model).Int()
	if err != nil {
		return false, fmt.Errorf("resume lane %s: %w", model, err)
	}
	if err := l.eachQueue(model, l.unpauseQueue); err != nil {
		return false, fmt.Errorf("resume lane %s: %w", model, err)
	}
	return n == 1, nil
}

// State returns the state of one lane. A lane never paused nor cooled down
// is running.
func (l *Lanes) State(ctx context.Context, model string) (State, error) {
	s, err := l.List(ctx, []string{model})
	if err != nil {
		return State{}, err
	}
	return s[0], nil
}

// List returns the state of the lanes of models, in order, read in one
// pipeline.
func (l *Lanes) List(ctx context.Context, models []string) ([]State, error) {
	raws, err := readStates(ctx, l.rdb, l.ks, models, false)
	if err != nil {
		return nil, err
	}
	out := make([]State, len(models))
	for i, r := range raws {
		s := State{Model: models[i], Status: StatusRunning, Limit: l.limit(models[i]), EffectiveRPM: r.effRPM,
			Throttled: r.n429}
		if r.n429 > 0 {
			s.Since429, s.Last429 = time.UnixMilli(r.since429), time.UnixMilli(r.last429)
		}
		if r.coolTTL > 0 {
			s.Status = StatusCoolingDown
			s.CooldownUntil = time.UnixMilli(r.coolUntilMs)
		}
		if r.paused {
			s.Status = StatusPaused
			s.PausedSince = time.UnixMilli(r.since)
			s.Reason, s.PausedBy = r.reason, r.by
			if r.probe {
				s.Probed = true
				if r.probeTTL > 0 {
					s.NextProbe = time.Now().Add(r.probeTTL).Truncate(time.Millisecond)
				}
			}
		}
		out[i] = s
	}
	return out, nil
}

func (l *Lanes) limit(model string) Limit {
	if lim, ok := l.perModel[model]; ok {
		return lim
	}
	return l.def
}

func (l *Lanes) eachQueue(model string, fn func(string) error) error {
	if l.insp == nil {
		return nil
	}
	var errs []error
	for _, q := range job.Queues() {
		if err := fn(job.AsynqQueue(q, model)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// asynq's Inspector says "already paused" and "not paused" with plain
// errors (fmt.Errorf in internal/rdb, v0.26), so their text is the only way
// to tell them from a failure; both mean the queue is as we want it.
func (l *Lanes) pauseQueue(q string) error {
	if err := l.insp.PauseQueue(q); err != nil && !strings.Contains(err.Error(), "already paused") {
		return fmt.Errorf("pause asynq queue %s: %w", q, err)
	}
	return nil
}

func (l *Lanes) unpauseQueue(q string) error {
	if err := l.insp.UnpauseQueue(q); err != nil && !strings.Contains(err.Error(), "not paused") {
		return fmt.Errorf("unpause asynq queue %s: %w", q, err)
	}
	return nil
}
