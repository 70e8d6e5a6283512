package lane

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// lane is one model's permit fetcher in one process: a FIFO of waiters and
// the goroutine (run) that serves them from the fleet-wide limiter.
//
// Request limit: GCRA at rate RPM/(1+headroom) per minute with burst
// 1+Lookahead. A granted call's slot is max(old TAT, now), which is
// ResetAfter - interval from now; the fetcher hands the permit out at that
// time, never earlier, so permits leave evenly spaced however far ahead they
// were reserved. It reserves a slot for the waiter at the head only. A slot
// it wakes up for too late (maxLate) is dropped rather than handed out on
// top of the next one.
//
// Token limit: GCRA at rate TPM/(1+headroom) per minute with burst TPM/60
// (one second's worth). A reservation larger than the burst could never be
// granted, so one call reserves at most the burst; the rest is debt, paid by
// the following reservations. Tokens are reserved before the request slot,
// so that a denial never wastes a slot; reserved tokens are kept while the
// fetcher waits for the slot. Done folds (reserved - used) into a local
// balance that the next reservation uses first: a credit can save a call,
// a debt makes the next call larger. While the bucket is far from empty, one
// call also reserves for the next waiters; when it is not, the fetcher
// sleeps until its last view of the bucket says the tokens are there, so a
// binding token limit costs about one call per permit, not a denial and a
// retry.
type lane struct {
	g     *Gate
	model string

	rpmOn, tpmOn bool
	// confRPM is the configured request limit; curRPM the one rpm,
	// interval and maxLate were made for (the effective one, see
	// throttle.go); period the GCRA period.
	confRPM, curRPM int
	period          time.Duration
	rpm, tpm        redis_rate.Limit
	rpmKey          string
	tpmKey          string
	interval        time.Duration // between two request slots
	burst           int64         // most tokens one limiter call reserves
	tokenRate       float64       // tokens per second
	maxLate         time.Duration // a slot handed out later than this is dropped

	arrive  chan struct{} // a waiter arrived
	changed chan struct{} // the state changed (pause, resume, cooldown)

	mu        sync.Mutex
	queue     list.List // of *waiter
	closed    bool
	loaded    bool   // the state was read from Redis at least once
	gen       uint64 // bumped by every event, to discard older reads
	paused    bool
	reason    string
	coolUntil time.Time
	bal       int64 // tokens reserved in Redis and not yet used (< 0: owed)
	effRPM    int   // the effective request limit, 0: the configured one

	calls, denied, permits, refused, dropped, waitNanos atomic.Int64
}

type waiter struct {
	est   int64
	start time.Time
	elem  *list.Element // nil once taken off the queue
	ch    chan grant    // buffered: the fetcher never blocks on it
}

type grant struct {
	p   *Permit
	err error
}

func newLane(g *Gate, model string, l Limit) *lane {
	ln := &lane{
		g:       g,
		model:   model,
		rpmKey:  g.ks.rpm(model),
		tpmKey:  g.ks.tpm(model),
		arrive:  make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
	}
	period := time.Duration(float64(time.Minute) * (1 + g.cfg.Headroom))
	ln.period = period
	if l.RPM > 0 {
		ln.rpmOn = true
		ln.confRPM = l.RPM
		ln.setRate(l.RPM)
	}
	if l.TPM > 0 {
		ln.tpmOn = true
		ln.burst = max(l.TPM/60, 1)
		ln.tpm = redis_rate.Limit{Rate: int(l.TPM), Period: period, Burst: int(ln.burst)}
		ln.tokenRate = float64(l.TPM) / period.Seconds()
	}
	return ln
}

// setRate makes the request limit rpm (the fetcher's own fields).
func (ln *lane) setRate(rpm int) {
	ln.curRPM = rpm
	ln.rpm = redis_rate.Limit{Rate: rpm, Period: ln.period, Burst: 1 + ln.g.cfg.Lookahead}
	// As the Lua computes it: period / rate, in float seconds.
	ln.interval = time.Duration(ln.period.Seconds() / float64(rpm) * float64(time.Second))
	// Half of the jitter a 1-s window absorbs (Headroom seconds) is left
	// for the way from here to the API.
	ln.maxLate = min(max(time.Duration(ln.g.cfg.Headroom*float64(time.Second))/2, time.Millisecond), ln.interval/2)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (ln *lane) wait(ctx context.Context, est int64) (*Permit, error) {
	w := &waiter{est: est, start: time.Now(), ch: make(chan grant, 1)}
	ln.mu.Lock()
	switch {
	case ln.closed:
		ln.mu.Unlock()
		return nil, ErrClosed
	case ln.paused:
		reason := ln.reason
		ln.mu.Unlock()
		ln.refused.Add(1)
		return nil, &PausedError{Model: ln.model, Reason: reason}
	}
	w.elem = ln.queue.PushBack(w)
	ln.mu.Unlock()
	signal(ln.arrive)

	select {
	case gr := <-w.ch:
		return gr.p, gr.err
	case <-ctx.Done():
		ln.mu.Lock()
		if w.elem != nil {
			ln.queue.Remove(w.elem)
			w.elem = nil
			ln.mu.Unlock()
			return nil, ctx.Err()
		}
		ln.mu.Unlock()
		// The fetcher took the waiter off the queue: its answer is on the way.
		if gr := <-w.ch; gr.p != nil {
			gr.p.Cancel()
		}
		return nil, ctx.Err()
	}
}

// settle folds the difference between reserved and used tokens into the
// balance. A credit is capped at one burst: reservations are not banked
// for later bursts.
func (ln *lane) settle(diff int64) {
	if !ln.tpmOn || diff == 0 {
		return
	}
	ln.mu.Lock()
	ln.bal = min(ln.bal+diff, ln.burst)
	ln.mu.Unlock()
}

func (ln *lane) stats() LaneStats {
	ln.mu.Lock()
	waiting := ln.queue.Len()
	ln.mu.Unlock()
	ln.mu.Lock()
	debt := max(-ln.bal, 0)
	ln.mu.Unlock()
	return LaneStats{
		Debt:         debt,
		LimiterCalls: ln.calls.Load(),
		Denied:       ln.denied.Load(),
		Permits:      ln.permits.Load(),
		Refused:      ln.refused.Load(),
		Dropped:      ln.dropped.Load(),
		WaitSeconds:  time.Duration(ln.waitNanos.Load()).Seconds(),
		Waiting:      waiting,
	}
}

// run is the fetcher: it serves the waiters of this lane until ctx ends.
func (ln *lane) run(ctx context.Context) {
	defer ln.g.wg.Done()
	defer ln.failAll(ErrClosed, true)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// sleep waits for d (forever if d < 0), a state change, ctx, and, when
	// onArrive, a new waiter.
	sleep := func(d time.Duration, onArrive bool) {
		var tc <-chan time.Time
		if d >= 0 {
			timer.Reset(d)
			tc = timer.C
			defer timer.Stop()
		}
		var ac chan struct{}
		if onArrive {
			ac = ln.arrive
		}
		select {
		case <-tc:
		case <-ac:
		case <-ln.changed:
		case <-ctx.Done():
		}
	}

	var (
		slot    time.Time // the request slot reserved, when hasSlot
		hasSlot bool
		backoff time.Duration
		// The limiter said "not before": a wake-up for another reason
		// (a state change) must not spend a call that is sure to be denied.
		rpmRetryAt time.Time
		tokens     tokenView
	)
	dropSlot := func() {
		if hasSlot {
			ln.dropped.Add(1)
			hasSlot = false
		}
	}
	failed := func(err error) {
		backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
		if ctx.Err() == nil {
			ln.g.log.Warn().Err(err).Str("model", ln.model).Dur("retry_in", backoff).Msg("lane limiter call failed")
		}
		sleep(backoff, false)
	}

	for ctx.Err() == nil {
		ln.mu.Lock()
		var head *waiter
		if el := ln.queue.Front(); el != nil {
			head = el.Value.(*waiter)
		}
		loaded, paused, coolUntil, bal, eff := ln.loaded, ln.paused, ln.coolUntil, ln.bal, ln.effRPM
		ln.mu.Unlock()
		if ln.rpmOn {
			want := ln.confRPM
			if eff > 0 && eff < want {
				want = eff
			}
			if want != ln.curRPM {
				ln.setRate(want)
			}
		}

		if head == nil {
			if hasSlot {
				if d := time.Until(slot) + ln.maxLate; d > 0 {
					sleep(d, true)
					continue
				}
				dropSlot()
			}
			sleep(-1, true)
			continue
		}
		if !loaded {
			if err := ln.load(ctx); err != nil {
				failed(err)
			}
			continue
		}
		if paused {
			dropSlot()
			ln.dropCredit()
			ln.failAll(nil, false)
			continue
		}
		if d := time.Until(coolUntil); d > 0 {
			dropSlot()
			ln.dropCredit()
			sleep(d, false)
			continue
		}

		// Tokens first: a denial there must not cost a request slot.
		if ln.tpmOn && !hasSlot {
			if need := min(head.est, ln.burst) - bal; need > 0 {
				chunk := min(need, ln.burst)
				now := time.Now()
				if tokens.known {
					if short := float64(chunk) - tokens.at(now, ln.tokenRate, ln.burst); short > 0 {
						sleep(time.Duration(short/ln.tokenRate*float64(time.Second))+time.Millisecond, false)
						continue
					}
					// Reserve for the next waiters too while the bucket has
					// plenty: it saves their calls.
					chunk += ln.prefetch(chunk, min(tokens.at(now, ln.tokenRate, ln.burst), float64(ln.burst/2)))
				}
				sent := time.Now()
				res, err := ln.allow(ctx, ln.tpmKey, ln.tpm, chunk)
				if err != nil {
					failed(err)
					continue
				}
				backoff = 0
				mid := sent.Add(time.Since(sent) / 2)
				if res.Allowed == 0 {
					// What the bucket held, from how long until chunk fits;
					// the next turn sleeps until what is needed fits.
					tokens = tokenView{known: true, avail: float64(chunk) - res.RetryAfter.Seconds()*ln.tokenRate, when: mid}
					continue
				}
				tokens = tokenView{known: true, avail: float64(res.Remaining), when: mid}
				ln.mu.Lock()
				ln.bal += chunk
				ln.mu.Unlock()
				continue
			}
		}

		if ln.rpmOn && !hasSlot {
			if d := time.Until(rpmRetryAt); d > 0 {
				sleep(d, false)
				continue
			}
			res, err := ln.allow(ctx, ln.rpmKey, ln.rpm, 1)
			if err != nil {
				failed(err)
				continue
			}
			backoff = 0
			if res.Allowed == 0 {
				rpmRetryAt = time.Now().Add(res.RetryAfter)
				sleep(res.RetryAfter, false)
				continue
			}
			// The slot is the old TAT, one interval before the new one.
			// Counted from the reply, not from halfway through the round
			// trip: a slot may then start a little late, never early.
			slot = time.Now().Add(res.ResetAfter - ln.interval)
			hasSlot = true
		}

		if hasSlot {
			d := time.Until(slot)
			if d > 0 {
				sleep(d, false)
				continue
			}
			if -d > ln.maxLate {
				// Woken too late (a GC pause, an overloaded machine): handing
				// the slot out now would crowd the next one.
				dropSlot()
				continue
			}
		}

		ln.mu.Lock()
		el := ln.queue.Front()
		if el == nil || ln.paused || time.Now().Before(ln.coolUntil) {
			ln.mu.Unlock()
			continue
		}
		w := ln.queue.Remove(el).(*waiter)
		w.elem = nil
		if ln.tpmOn {
			ln.bal -= w.est
		}
		ln.mu.Unlock()
		hasSlot = false
		waited := time.Since(w.start)
		ln.permits.Add(1)
		ln.waitNanos.Add(int64(waited))
		p := &Permit{Model: ln.model, Tokens: w.est, Waited: waited, ln: ln}
		if ln.rpmOn {
			p.Interval = ln.interval
		}
		w.ch <- grant{p: p}
	}
}

// tokenView is what this process last learned of the token bucket: how many
// tokens it held at a time. The bucket refills at tokenRate and other
// processes only take from it, so the view is an upper bound: sleeping until
// it shows enough never sleeps too long, and saves a call sure to be denied.
type tokenView struct {
	known bool
	avail float64
	when  time.Time
}

func (v tokenView) at(now time.Time, rate float64, burst int64) float64 {
	return min(v.avail+now.Sub(v.when).Seconds()*rate, float64(burst))
}

// prefetch returns the tokens to reserve, besides base for the head, for
// the waiters after it (as many as the request lookahead), as long as the
// total stays within limit.
func (ln *lane) prefetch(base int64, limit float64) int64 {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	var extra int64
	el := ln.queue.Front()
	if el != nil {
		el = el.Next()
	}
	for i := 0; el != nil && i < ln.g.cfg.Lookahead; i++ {
		est := el.Value.(*waiter).est
		if float64(base+extra+est) > limit {
			break
		}
		extra += est
		el = el.Next()
	}
	return extra
}

func (ln *lane) allow(ctx context.Context, key string, l redis_rate.Limit, n int64) (*redis_rate.Result, error) {
	ln.calls.Add(1)
	res, err := ln.g.limiter.AllowN(ctx, key, l, int(n))
	if err == nil && res.Allowed == 0 {
		ln.denied.Add(1)
	}
	return res, err
}

// dropCredit forgets unused reserved tokens when the lane stops (pause,
// cooldown): they were reserved for a time that has passed.
func (ln *lane) dropCredit() {
	ln.mu.Lock()
	ln.bal = min(ln.bal, 0)
	ln.mu.Unlock()
}

// failAll answers every waiter with err, or with a *PausedError when err is
// nil. With close, the lane takes no more waiters.
func (ln *lane) failAll(err error, close bool) {
	ln.mu.Lock()
	if close {
		ln.closed = true
	}
	if err == nil {
		err = &PausedError{Model: ln.model, Reason: ln.reason}
	}
	var ws []*waiter
	for el := ln.queue.Front(); el != nil; el = ln.queue.Front() {
		w := ln.queue.Remove(el).(*waiter)
		w.elem = nil
		ws = append(ws, w)
	}
	ln.mu.Unlock()
	if _, ok := err.(*PausedError); ok {
		ln.refused.Add(int64(len(ws)))
	}
	for _, w := range ws {
		w.ch <- grant{err: err}
	}
}

// load reads the lane's state from Redis, unless an event arrives meanwhile
// (then the caller loads again).
func (ln *lane) load(ctx context.Context) error {
	ln.mu.Lock()
	gen := ln.gen
	ln.mu.Unlock()
	st, err := readStates(ctx, ln.g.cfg.Redis, ln.g.ks, []string{ln.model}, true)
	if err != nil {
		return err
	}
	ln.applyRead(st[0], gen, time.Now())
	return nil
}

// applyRead sets the state read from Redis, unless an event was applied
// since the read began (gen changed): the event may be newer.
func (ln *lane) applyRead(st rawState, gen uint64, now time.Time) {
	ln.mu.Lock()
	ln.bal -= st.debt // claimed by the read: it is this process's to pay now
	if ln.gen != gen {
		ln.mu.Unlock()
		return
	}
	wasCooling := ln.coolUntil.After(now)
	changed := !ln.loaded || ln.paused != st.paused || (!wasCooling && st.coolTTL > 0)
	ln.loaded = true
	ln.paused, ln.reason = st.paused, st.reason
	if ln.effRPM != st.effRPM {
		ln.effRPM = st.effRPM
		changed = true
	}
	ln.coolUntil = time.Time{}
	if st.coolTTL > 0 {
		ln.coolUntil = now.Add(st.coolTTL)
	}
	ln.mu.Unlock()
	// Only a real change wakes the fetcher: a periodic re-read must not
	// turn its sleeps into polling.
	if changed {
		signal(ln.changed)
	}
}

// applyEvent applies a pause, resume or cooldown event.
func (ln *lane) applyEvent(ev event, now time.Time) {
	ln.mu.Lock()
	ln.gen++
	switch ev.Kind {
	case "pause":
		ln.paused, ln.reason = true, ev.Reason
	case "resume":
		ln.paused, ln.reason = false, ""
	case "cooldown":
		if until := now.Add(time.Duration(ev.TTLMs) * time.Millisecond); until.After(ln.coolUntil) {
			ln.coolUntil = until
		}
	case "rate":
		ln.effRPM = ev.RPM
	}
	ln.mu.Unlock()
	signal(ln.changed)
}
