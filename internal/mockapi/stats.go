package mockapi

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// undercutTolerance forgives a call that comes back this much before the
// Retry-After it was given: clocks and timers are not exact.
const undercutTolerance = 50 * time.Millisecond

// statusSlots covers every HTTP status code (100–599).
const statusSlots = 600

// state is everything POST /mock/reset clears: counters, windows, rate-limit
// logs and job call logs. A reset swaps in a new state; requests in flight
// finish recording into the old one.
type state struct {
	epoch     time.Time
	seq       atomic.Uint64
	total     atomic.Int64
	byStatus  [statusSlots]atomic.Int64
	canceled  atomic.Int64
	inFlight  atomic.Int64
	maxFlight atomic.Int64
	faults    [numFaults]atomic.Int64
	models    map[string]*modelState // fixed keys: the served models

	contentFiltered   atomic.Int64
	burst402          atomic.Int64
	quotaRejections   atomic.Int64
	retryAfterOmitted atomic.Int64
	quota             quotaState
	countsMu          sync.Mutex
	forwarded         map[string]int64 // "asked=served", under countsMu
	retiredAsked      map[string]int64 // under countsMu

	jobsMu    sync.Mutex
	jobs      map[string]*job
	dups      int64 // under jobsMu
	undercuts int64 // under jobsMu
	maxCalls  int   // under jobsMu
}

// modelState is the rate limit and the statistics of one model.
type modelState struct {
	mu             sync.Mutex
	lim            limiter
	recvMin        window
	recvSec        window
	okMin          window
	okSec          window
	requests       atomic.Int64
	byStatus       [statusSlots]atomic.Int64
	limitExceeded  atomic.Int64
	promptTokens   atomic.Int64
	completionToks atomic.Int64
	cachedTokens   atomic.Int64
	cache          promptCache // under mu
}

// quotaState is the Token Plan quota: the tokens answered in the current
// fixed window.
type quotaState struct {
	mu     sync.Mutex
	window int64 // index of the window, since the epoch
	used   int64
}

// roll starts a new window when at is past the current one.
func (q *quotaState) roll(at int64, window time.Duration) {
	if w := at / int64(max(window, 1)); w != q.window {
		q.window, q.used = w, 0
	}
}

// left reports whether the quota has tokens left at at.
func (q *quotaState) left(at int64, window time.Duration, limit int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(at, window)
	return q.used < limit
}

func (q *quotaState) spend(at int64, window time.Duration, tokens int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(at, window)
	q.used += tokens
}

func (q *quotaState) usedAt(at int64, window time.Duration) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(at, window)
	return q.used
}

// count adds one to a counter of the state's maps.
func (st *state) count(m *map[string]int64, key string) {
	st.countsMu.Lock()
	defer st.countsMu.Unlock()
	if *m == nil {
		*m = make(map[string]int64)
	}
	(*m)[key]++
}

func (s *Server) newState() *state {
	st := &state{
		epoch:  s.clock(),
		models: make(map[string]*modelState, len(s.models)),
		jobs:   make(map[string]*job),
	}
	for m := range s.models {
		st.models[m] = &modelState{
			recvMin: newWindow(time.Minute),
			recvSec: newWindow(time.Second),
			okMin:   newWindow(time.Minute),
			okSec:   newWindow(time.Second),
		}
	}
	return st
}

// Reset clears every statistic, rate-limit log and job call log. The settings
// stay as they are.
func (s *Server) Reset() { s.st.Store(s.newState()) }

// since returns nanoseconds since the state's epoch, on the configured clock.
func (st *state) since(t time.Time) int64 { return int64(t.Sub(st.epoch)) }

// enter counts a request being served; the returned func ends it.
func (st *state) enter() func() {
	n := st.inFlight.Add(1)
	for {
		m := st.maxFlight.Load()
		if n <= m || st.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { st.inFlight.Add(-1) }
}

func (st *state) countStatus(code int) {
	st.total.Add(1)
	if code > 0 && code < statusSlots {
		st.byStatus[code].Add(1)
	}
}

func (ms *modelState) countStatus(code int) {
	if code > 0 && code < statusSlots {
		ms.byStatus[code].Add(1)
	}
}

// job is the call log of one job ID.
type job struct {
	calls     []Call
	successes int
	// retryAt is when the previous call's 429 allowed the next call (ns since
	// epoch), 0 when the previous call was not a 429.
	retryAt int64
}

// Call is one API call made for a job.
type Call struct {
	// Time is when the call arrived.
	Time time.Time `json:"time"`
	// Attempt is the X-Mimoq-Attempt header (0 when absent or not a number).
	Attempt int `json:"attempt"`
	// Model is the model the request named.
	Model string `json:"model,omitempty"`
	// ServedModel is the model that answered, when a forward made it another.
	ServedModel string `json:"served_model,omitempty"`
	RequestID   string `json:"request_id"`
	// Status is the HTTP status returned; 0 while in flight, or when no status
	// was returned (reset, hang, client gone during latency).
	Status int `json:"status"`
	// Outcome is "in_flight", "answered", "canceled" (the client gave up
	// first), "reset", "truncated" or "hung".
	Outcome string `json:"outcome"`
	// Fault is the injected fault, if any ("429", "500", "502", "503",
	// "421", "451", "reset", "truncate", "hang").
	Fault string `json:"fault,omitempty"`
	// RetryAfterMS is the Retry-After given with a 429, in milliseconds.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// Duplicate is set when the job had already been answered 2xx when this
	// call arrived, or when this call's 2xx was the job's second.
	Duplicate bool `json:"duplicate,omitempty"`
	// Undercut is set when the call arrived before the Retry-After of the
	// job's previous call (a 429), less a 50-ms tolerance.
	Undercut bool `json:"retry_after_undercut,omitempty"`
}

// JobLog is the call log of one job, as GET /mock/jobs/{id} shows it.
type JobLog struct {
	ID        string `json:"id"`
	Successes int    `json:"successes"`
	Calls     []Call `json:"calls"`
}

// jobCall points at one call in a job's log.
type jobCall struct {
	st  *state
	job *job
	idx int
}

// arrive logs a call for a job and returns it, with the number of calls the
// job made before.
func (st *state) arrive(id string, c Call, at int64) (jobCall, int) {
	st.jobsMu.Lock()
	defer st.jobsMu.Unlock()
	j := st.jobs[id]
	if j == nil {
		j = &job{}
		st.jobs[id] = j
	}
	if j.successes > 0 {
		c.Duplicate = true
		st.dups++
	}
	if j.retryAt != 0 && at < j.retryAt-int64(undercutTolerance) {
		c.Undercut = true
		st.undercuts++
	}
	j.retryAt = 0
	prior := len(j.calls)
	j.calls = append(j.calls, c)
	st.maxCalls = max(st.maxCalls, len(j.calls))
	return jobCall{st: st, job: j, idx: prior}, prior
}

// outcome is how one request ended, for the job's log.
type outcome struct {
	status     int
	outcome    string
	fault      faultKind
	retryAfter time.Duration
	// retryAt is when the retry is allowed (ns since epoch), for a 429.
	retryAt int64
	model   string // as the request named it
	served  string // the model that answered, when another
}

func (jc jobCall) finish(o outcome) {
	if jc.job == nil {
		return
	}
	st := jc.st
	st.jobsMu.Lock()
	defer st.jobsMu.Unlock()
	c := &jc.job.calls[jc.idx]
	c.Status = o.status
	c.Outcome = o.outcome
	c.Fault = o.fault.String()
	if o.model != "" {
		c.Model = o.model
	}
	c.ServedModel = o.served
	if o.status == 429 {
		c.RetryAfterMS = o.retryAfter.Milliseconds()
		jc.job.retryAt = o.retryAt
	}
	if o.status >= 200 && o.status < 300 && o.outcome == "answered" {
		if jc.job.successes > 0 && !c.Duplicate {
			c.Duplicate = true
			st.dups++
		}
		jc.job.successes++
	}
}

// Stats is what GET /mock/stats returns.
type Stats struct {
	// Since is when the statistics were last reset.
	Since time.Time `json:"since"`
	// TotalRequests counts every API request (not /mock/ ones), whatever its outcome.
	TotalRequests int64 `json:"total_requests"`
	// ByStatus counts status lines sent, by HTTP status ("200", "429", …); a
	// truncated 200 is a 200, a reset or hung request has none.
	ByStatus map[string]int64 `json:"by_status"`
	// Canceled counts requests whose client gave up during Latency.
	Canceled int64 `json:"canceled"`
	// MaxInFlight is the most API requests being served at once: what a
	// client's concurrency really was.
	MaxInFlight int64 `json:"max_in_flight"`
	// Faults counts injected faults by kind; every kind is present.
	Faults map[string]int64 `json:"faults"`
	// Models holds the statistics of every served model.
	Models map[string]ModelStats `json:"models"`
	// JobsSeen counts distinct X-Mimoq-Job-Id values.
	JobsSeen int64 `json:"jobs_seen"`
	// Duplicates counts calls for a job that had already been answered 2xx,
	// and 2xx answers beyond the first for a job (calls in flight together):
	// the API did, or was asked to do, the same work twice.
	Duplicates int64 `json:"duplicates"`
	// MaxCallsPerJob is the most calls any one job made.
	MaxCallsPerJob int64 `json:"max_calls_per_job"`
	// RetryAfterUndercut counts calls that arrived earlier than the Retry-After
	// the job's previous call (a 429) was given, less 50 ms.
	RetryAfterUndercut int64 `json:"retry_after_undercut"`

	// RetryAfterOmitted counts 429s sent without Retry-After (OmitRetryAfter,
	// and every quota 429).
	RetryAfterOmitted int64 `json:"retry_after_omitted"`
	// ContentFiltered counts 421s for a blocked term (injected 421s are in
	// Faults["421"]).
	ContentFiltered int64 `json:"content_filtered"`
	// Burst402 counts the 402s of the burst.
	Burst402 int64 `json:"burst_402"`
	// QuotaRejections counts 429s for a used-up quota; QuotaUsed is the
	// tokens answered in the current quota window.
	QuotaRejections int64 `json:"quota_rejections"`
	QuotaUsed       int64 `json:"quota_used"`
	// Retired counts 400 "Unsupported model" answers by the name requested.
	Retired map[string]int64 `json:"retired"`
	// Forwarded counts answers given by another model than the one named,
	// keyed "named=served".
	Forwarded map[string]int64 `json:"forwarded"`
	// CachedTokens is the prompt-cache tokens reported, all models together.
	CachedTokens int64 `json:"cached_tokens"`
}

// ModelStats are the statistics of one model.
type ModelStats struct {
	// Requests counts requests that named this model.
	Requests int64            `json:"requests"`
	ByStatus map[string]int64 `json:"by_status"`
	// LimitExceeded counts 429s from the mock's own rate limit (injected 429s
	// are in Stats.Faults).
	LimitExceeded int64 `json:"limit_exceeded"`
	// MaxRPMWindow is the most requests in any sliding 60-s window.
	MaxRPMWindow WindowMax `json:"max_rpm_window"`
	// MaxPerSecond is the most requests in any sliding 1-s window.
	MaxPerSecond     WindowMax `json:"max_per_second"`
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	// CachedTokens is the part of PromptTokens reported as cached.
	CachedTokens int64 `json:"cached_tokens"`
	// RPM and TPM are the current limits (0: unlimited).
	RPM int   `json:"rpm"`
	TPM int64 `json:"tpm"`
}

// WindowMax is the most requests in one window size. Both count by arrival
// time, so Latency does not bunch them up.
type WindowMax struct {
	// Received counts every request that named the model.
	Received int `json:"received"`
	// OK counts requests admitted by the rate limit and given no fault: the
	// ones answered 2xx in full (or whose client gave up during Latency). It
	// never exceeds the model's RPM.
	OK int `json:"ok"`
}

// Stats returns the statistics since the last reset.
func (s *Server) Stats() Stats {
	st := s.st.Load()
	set := s.set.Load()
	out := Stats{
		Since:         st.epoch,
		TotalRequests: st.total.Load(),
		ByStatus:      statusKeys(loadAll(st.byStatus[:])),
		Canceled:      st.canceled.Load(),
		MaxInFlight:   st.maxFlight.Load(),
		Faults:        make(map[string]int64, numFaults),
		Models:        make(map[string]ModelStats, len(st.models)),
	}
	for k := faultNone + 1; k < numFaults; k++ {
		out.Faults[faultNames[k]] = st.faults[k].Load()
	}
	out.RetryAfterOmitted = st.retryAfterOmitted.Load()
	out.ContentFiltered = st.contentFiltered.Load()
	out.Burst402 = st.burst402.Load()
	out.QuotaRejections = st.quotaRejections.Load()
	out.QuotaUsed = st.quota.usedAt(st.since(s.clock()), set.quotaWindow)
	st.countsMu.Lock()
	out.Retired = maps.Clone(st.retiredAsked)
	out.Forwarded = maps.Clone(st.forwarded)
	st.countsMu.Unlock()
	if out.Retired == nil {
		out.Retired = map[string]int64{}
	}
	if out.Forwarded == nil {
		out.Forwarded = map[string]int64{}
	}
	for name, ms := range st.models {
		rpm, tpm := set.limitsOf(name)
		m := ModelStats{
			Requests:         ms.requests.Load(),
			ByStatus:         statusKeys(loadAll(ms.byStatus[:])),
			LimitExceeded:    ms.limitExceeded.Load(),
			PromptTokens:     ms.promptTokens.Load(),
			CompletionTokens: ms.completionToks.Load(),
			CachedTokens:     ms.cachedTokens.Load(),
			RPM:              rpm,
			TPM:              tpm,
		}
		out.CachedTokens += m.CachedTokens
		ms.mu.Lock()
		m.MaxRPMWindow = WindowMax{Received: ms.recvMin.max, OK: ms.okMin.max}
		m.MaxPerSecond = WindowMax{Received: ms.recvSec.max, OK: ms.okSec.max}
		ms.mu.Unlock()
		out.Models[name] = m
	}
	st.jobsMu.Lock()
	out.JobsSeen = int64(len(st.jobs))
	out.Duplicates = st.dups
	out.MaxCallsPerJob = int64(st.maxCalls)
	out.RetryAfterUndercut = st.undercuts
	st.jobsMu.Unlock()
	return out
}

// Job returns the call log of one job.
func (s *Server) Job(id string) (JobLog, bool) {
	st := s.st.Load()
	st.jobsMu.Lock()
	defer st.jobsMu.Unlock()
	j, ok := st.jobs[id]
	if !ok {
		return JobLog{}, false
	}
	return JobLog{ID: id, Successes: j.successes, Calls: append([]Call(nil), j.calls...)}, true
}

func loadAll(a []atomic.Int64) []int64 {
	out := make([]int64, len(a))
	for i := range a {
		out[i] = a[i].Load()
	}
	return out
}
