package mockapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// chatCall is one request to the chat-completions endpoint in flight.
type chatCall struct {
	s     *Server
	st    *state
	set   *settings
	w     http.ResponseWriter
	r     *http.Request
	id    string // x-request-id
	rng   splitmix
	job   jobCall
	model string      // the served model: a forwarded name's target
	asked string      // the model the request named
	ms    *modelState // nil until the request names a served model
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	st, set := s.st.Load(), s.set.Load()
	defer st.enter()()
	c := &chatCall{s: s, st: st, set: set, w: w, r: r, id: w.Header().Get(HeaderRequestID)}
	if jobID := r.Header.Get(HeaderJobID); jobID != "" {
		now := s.clock()
		attempt, _ := strconv.Atoi(strings.TrimSpace(r.Header.Get(HeaderAttempt)))
		var prior int
		c.job, prior = st.arrive(jobID, Call{Time: now, Attempt: attempt, RequestID: c.id, Outcome: "in_flight"}, st.since(now))
		c.rng = newStream(set.seed, jobID, uint64(prior))
	} else {
		c.rng = newStream(set.seed, "", st.seq.Add(1))
	}
	c.serve()
}

func (c *chatCall) serve() {
	if c.r.Method != http.MethodPost {
		c.fail(&apiError{status: http.StatusMethodNotAllowed, code: codeInvalidRequest,
			message: fmt.Sprintf("Method %s is not allowed on %s: use POST.", c.r.Method, c.r.URL.Path)}, faultNone)
		return
	}
	if !authorized(c.r, c.set.key) {
		c.fail(&apiError{status: http.StatusUnauthorized, code: codeAuthFailed, message: "Invalid API Key provided."}, faultNone)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.s.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			c.fail(&apiError{status: http.StatusRequestEntityTooLarge, code: codeInvalidRequest,
				message: fmt.Sprintf("The request body is too large: the limit is %d bytes.", tooLarge.Limit)}, faultNone)
			return
		}
		c.st.canceled.Add(1)
		c.finish(outcome{outcome: "canceled"})
		return
	}
	req, e := c.s.parseChat(body, c.set)
	if req != nil {
		c.model, c.asked = req.model.name, req.asked
		c.ms = c.st.models[c.model]
		c.ms.requests.Add(1)
	}
	if e != nil {
		if e.retired != "" {
			c.st.count(&c.st.retiredAsked, e.retired)
		}
		c.received()
		c.fail(e, faultNone)
		return
	}
	if c.refuse(req) {
		return
	}

	created := c.s.clock()
	rp := generate(req, created)
	// Every request draws its fault, admitted or not, so that a job's stream
	// of random numbers does not depend on the rate limit.
	fault := c.set.rates.pick(c.rng.float())
	latency := jittered(&c.rng, c.set.latency, c.set.jitter)
	rpm, tpm := c.set.limitsOf(c.model)
	c.ms.mu.Lock()
	at := c.st.since(c.s.clock())
	c.ms.recvMin.add(at)
	c.ms.recvSec.add(at)
	wait, reason := c.ms.lim.admit(at, rpm, tpm, int64(rp.prompt+rp.completion))
	if wait == 0 && fault == faultNone {
		c.ms.okMin.add(at)
		c.ms.okSec.add(at)
	}
	c.ms.mu.Unlock()

	if wait > 0 {
		c.ms.limitExceeded.Add(1)
		c.fail(rateLimited(c.model, reason, rpm, tpm, rp.prompt+rp.completion, wait), faultNone)
		return
	}
	if fault != faultNone {
		c.st.faults[fault].Add(1)
		c.inject(fault, req, rp, created)
		return
	}
	if !c.sleep(latency, nil) {
		c.st.canceled.Add(1)
		c.finish(outcome{outcome: "canceled"})
		return
	}
	c.answer(req, rp)
}

// answer writes the completion of an admitted request and counts what it
// used: the prompt cache's share, the tokens, the quota, a forward.
func (c *chatCall) answer(req *chatRequest, rp *reply) {
	if c.set.promptCache {
		c.ms.mu.Lock()
		rp.cached = c.ms.cache.lookup(req.prefixes(), c.s.cacheEntries)
		c.ms.mu.Unlock()
		c.ms.cachedTokens.Add(int64(rp.cached))
	}
	c.ms.promptTokens.Add(int64(rp.prompt))
	c.ms.completionToks.Add(int64(rp.completion))
	if c.set.quotaTokens > 0 {
		c.st.quota.spend(c.st.since(c.s.clock()), c.set.quotaWindow, int64(rp.prompt+rp.completion))
	}
	if c.asked != c.model {
		c.st.count(&c.st.forwarded, c.asked+"="+c.model)
	}
	created := c.s.clock()
	if req.stream {
		c.writeStream(rp, created, false)
	} else {
		c.writeBody(rp, created, false)
	}
	c.finish(outcome{status: http.StatusOK, outcome: "answered"})
}

// refuse answers, before the rate limiter sees it, a request the API refuses
// whatever the load: content the filter blocks (421), a call in a burst of
// spurious 402s, a call once the quota is used up (429). Billing comes before
// admission: such a call spends none of the rate limit.
func (c *chatCall) refuse(req *chatRequest) bool {
	var e *apiError
	switch {
	case c.filtered(req):
		c.st.contentFiltered.Add(1)
		e = contentFiltered()
	case c.set.burst.take(c.s.clock()):
		c.st.burst402.Add(1)
		e = insufficientFunds()
	case c.set.quotaTokens > 0 && !c.st.quota.left(c.st.since(c.s.clock()), c.set.quotaWindow, c.set.quotaTokens):
		c.st.quotaRejections.Add(1)
		e = quotaExhausted()
	default:
		return false
	}
	c.received()
	c.fail(e, faultNone)
	return true
}

// received counts a request that named a served model but is answered before
// the rate limiter sees it, in the windows of requests received.
func (c *chatCall) received() {
	if c.ms == nil {
		return
	}
	c.ms.mu.Lock()
	at := c.st.since(c.s.clock())
	c.ms.recvMin.add(at)
	c.ms.recvSec.add(at)
	c.ms.mu.Unlock()
}

// filtered reports whether the content filter refuses the request: a message
// contains a blocked term.
func (c *chatCall) filtered(req *chatRequest) bool {
	if len(c.set.blocked) == 0 {
		return false
	}
	for _, m := range req.messages {
		text := strings.ToLower(m.text)
		for _, term := range c.set.blocked {
			if strings.Contains(text, term) {
				return true
			}
		}
	}
	return false
}

// authorized accepts "Authorization: Bearer <key>" or "api-key: <key>".
func authorized(r *http.Request, want string) bool {
	key := []byte(want)
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(auth[7:])), key) == 1 {
			return true
		}
	}
	if k := r.Header.Get("Api-Key"); k != "" {
		return subtle.ConstantTimeCompare([]byte(k), key) == 1
	}
	return false
}

func rateLimited(model, reason string, rpm int, tpm int64, cost int, wait time.Duration) *apiError {
	var msg string
	switch reason {
	case "requests":
		msg = fmt.Sprintf("Rate limit reached for %s on requests per min (RPM): Limit %d. Please try again in %s.", model, rpm, wait.Round(time.Millisecond))
	case "request_too_large":
		msg = fmt.Sprintf("Request too large for %s on tokens per min (TPM): Limit %d, Requested %d.", model, tpm, cost)
	default:
		msg = fmt.Sprintf("Rate limit reached for %s on tokens per min (TPM): Limit %d, Requested %d. Please try again in %s.", model, tpm, cost, wait.Round(time.Millisecond))
	}
	return &apiError{status: http.StatusTooManyRequests, code: codeRateLimitExceeded, message: msg, retryAfter: wait}
}

// fail writes an error response in the configured shape (or its own) and
// records it.
func (c *chatCall) fail(e *apiError, fault faultKind) {
	shape := shapeFor(c.set.shape, e.status, &c.rng)
	if e.status == http.StatusTooManyRequests && c.set.omitRetryAfter {
		e.noRetryAfter = true
	}
	now := c.s.clock()
	writeError(c.w, e, shape, c.set.shape == ShapeMixed, now, &c.rng)
	o := outcome{status: e.status, outcome: "answered", fault: fault}
	if e.status == http.StatusTooManyRequests {
		if e.noRetryAfter {
			// Nothing to undercut: the client was given no time to wait.
			c.st.retryAfterOmitted.Add(1)
		} else {
			o.retryAfter, o.retryAt = e.retryAfter, c.st.since(now)+int64(e.retryAfter)
		}
	}
	c.finish(o)
}

// finish records how the request ended.
func (c *chatCall) finish(o outcome) {
	o.model = c.asked
	if c.asked != c.model {
		o.served = c.model
	}
	if o.status > 0 {
		c.st.countStatus(o.status)
		if c.ms != nil {
			c.ms.countStatus(o.status)
		}
	} else {
		c.st.total.Add(1)
	}
	c.job.finish(o)
	if e := c.s.log.Debug(); e.Enabled() {
		e.Str("request_id", c.id).Str("model", c.model).Int("status", o.status).
			Str("outcome", o.outcome).Str("fault", o.fault.String()).
			Str("job_id", c.r.Header.Get(HeaderJobID)).Msg("mock request")
	}
}

// sleep waits d, or until the client gives up (false) or, when stop is not
// nil, until the mock closes.
func (c *chatCall) sleep(d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return c.r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.r.Context().Done():
		return false
	case <-stop:
		return true
	}
}

// inject plays one fault.
func (c *chatCall) inject(k faultKind, req *chatRequest, rp *reply, created time.Time) {
	switch k {
	case faultReset:
		c.finish(outcome{outcome: "reset", fault: k})
		closeConn(c.w, false, true)
	case faultHang:
		c.sleep(c.set.hangFor, c.s.done)
		c.finish(outcome{outcome: "hung", fault: k})
		closeConn(c.w, false, false)
	case faultTruncate:
		c.finish(outcome{status: http.StatusOK, outcome: "truncated", fault: k})
		if req.stream {
			c.writeStream(rp, created, true)
		} else {
			c.writeBody(rp, created, true)
		}
		closeConn(c.w, true, false)
	default:
		c.fail(faultError(k, c.set.faultRetryAfter), k)
	}
}

// writeBody writes a chat.completion; truncated, it declares the whole length
// and writes half.
func (c *chatCall) writeBody(rp *reply, created time.Time, truncated bool) {
	body := rp.body(newHexID(), c.model, created)
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.w.WriteHeader(http.StatusOK)
	if truncated {
		body = body[:len(body)/2]
	}
	_, _ = c.w.Write(body)
}

// writeStream writes server-sent events; truncated, it stops halfway, with no [DONE].
func (c *chatCall) writeStream(rp *reply, created time.Time, truncated bool) {
	chunks := rp.chunks(newHexID(), c.model, created, rp.includeUsage)
	if truncated {
		chunks = chunks[:len(chunks)/2]
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	for _, ch := range chunks {
		if _, err := fmt.Fprintf(c.w, "data: %s\n\n", ch); err != nil {
			return
		}
		_ = rc.Flush()
	}
	if !truncated {
		_, _ = io.WriteString(c.w, "data: [DONE]\n\n")
	}
}

// closeConn ends the connection without a complete answer: with flush, what
// was written goes out first (else nothing does, not even a status line);
// with rst, SO_LINGER 0 makes the close a TCP reset.
func closeConn(w http.ResponseWriter, flush, rst bool) {
	rc := http.NewResponseController(w)
	if flush {
		_ = rc.Flush()
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		// HTTP/2 or a wrapped writer: abort the stream instead.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
