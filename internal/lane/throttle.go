package lane

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Throttling: what the fleet learns from 429s, kept per model in
//
//	mimoq:{lane:M}:throttle   hash: n (429s in a row), since, last (unix ms of
//	                          the first and last of them), eff (the effective
//	                          requests per minute, absent = the configured
//	                          limit), run (successes since eff last changed)
//	mimoq:{lane:M}:ok:T       string: successful calls in the 10-s bucket T
//	                          (unix seconds / 10), kept 80 s
//
// A 429 without Retry-After cools the lane down for the backoff base,
// doubling with every 429 in a row up to the backoff maximum; a success ends
// the run. A 429 is also news that the API allows less than the fleet sends
// while within it): when two come in a row (a lone 429 among successes is
// taken as a fault) and the effective rate is above what the API accepted
// in the last minute (per minute, over the part of it the lane ran), it is
// cut in half, but never below 95 % of that
// (multiplicative decrease, floored at what is known to pass), at most once
// a second (429s of calls in flight together are one signal), and never
// below a tenth of the configured limit: a limit set ten times too high is
// found, while 429s below that are taken as faults, not the API's rate. A
// 429 that says the quota is used up lowers nothing. After a run
// of successes it climbs back by 1/200 of the configured limit (additive
// increase), never above it. Every change is published, so every Gate
// spaces its permits by the new rate at once.

// okBucket is the width of one success bucket.
const okBucket = 10 * time.Second

// throttleTTL keeps a run of 429s long enough to be reported as a quota
// suspicion after MIMOQ_QUOTA_SUSPECT_AFTER.
const throttleTTL = 24 * time.Hour

func (k keyspace) throttle(model string) string { return k.lane(model) + ":throttle" }
func (k keyspace) ok(model string, bucket int64) string {
	return k.lane(model) + ":ok:" + strconv.FormatInt(bucket, 10)
}

// okKeys are the buckets of the last minute, newest first.
func (k keyspace) okKeys(model string, now time.Time) []string {
	b := now.Unix() / int64(okBucket/time.Second)
	keys := make([]string, 0, 7)
	for i := range int64(7) {
		keys = append(keys, k.ok(model, b-i))
	}
	return keys
}

// note429Script records one 429, returns the cooldown to start (ms) and
// lowers the effective rate.
//
// KEYS: throttle, then the success buckets of the last minute. ARGV: retry
// after ms (0: none given), base ms, max ms, configured rpm (0: unlimited),
// channel, model, ttl ms, "1" when the 429 is about the rate (not a used-up
// quota). Returns {cooldown ms, effective rpm (0: the configured one)}.
var note429Script = redis.NewScript(`
redis.replicate_commands()
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSETNX', KEYS[1], 'since', string.format('%d', nowms))
redis.call('HSET', KEYS[1], 'last', string.format('%d', nowms), 'run', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local cool = tonumber(ARGV[1])
if cool <= 0 then
  cool = tonumber(ARGV[2]) * math.pow(2, math.min(n - 1, 30))
  cool = math.min(cool, tonumber(ARGV[3]))
end
local conf = tonumber(ARGV[4])
local eff = tonumber(redis.call('HGET', KEYS[1], 'eff') or '0') or 0
if conf > 0 then
  if eff <= 0 or eff > conf then eff = conf end
  -- What passed, per minute: the successes of the buckets since the
  -- oldest that has any, over the time they span (a lane that started a
  -- few seconds ago is not judged by a minute it did not run).
  local ok, oldest = 0, -1
  for i = 2, #KEYS do
    local v = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
    if v > 0 then ok, oldest = ok + v, i - 2 end
  end
  if oldest >= 0 then
    ok = math.floor(ok * 60 / ((oldest + 1) * 10))
  end
  local dec = tonumber(redis.call('HGET', KEYS[1], 'dec') or '0') or 0
  -- A lone 429 among successes is a fault, not the API's rate: it takes
  -- two in a row (no success between) to lower the rate.
  if ARGV[8] == '1' and n >= 2 and eff > ok and nowms - dec >= 1000 then
    local new = math.max(math.floor(eff / 2), math.floor(ok * 0.95), math.floor(conf / 10), 1)
    if new < eff then
      eff = new
      redis.call('HSET', KEYS[1], 'eff', eff, 'dec', string.format('%d', nowms))
      redis.call('PUBLISH', ARGV[5], cjson.encode({model = ARGV[6], kind = 'rate', rpm = eff}))
    end
  end
  if eff >= conf then eff = 0 end
end
return {math.floor(cool), eff}
`)

// noteOKScript records n successes: it ends a run of 429s, fills the
// success bucket and raises a lowered effective rate after a run.
//
// KEYS: throttle, bucket. ARGV: n, configured rpm (0: unlimited), channel,
// model, bucket ttl ms.
var noteOKScript = redis.NewScript(`
redis.call('INCRBY', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[1], 'n', 'since', 'last')
local conf = tonumber(ARGV[2])
local eff = tonumber(redis.call('HGET', KEYS[1], 'eff') or '0') or 0
if conf <= 0 or eff <= 0 then
  return 0
end
if eff >= conf then
  redis.call('HDEL', KEYS[1], 'eff', 'run')
  redis.call('PUBLISH', ARGV[3], cjson.encode({model = ARGV[4], kind = 'rate', rpm = 0}))
  return 0
end
local run = redis.call('HINCRBY', KEYS[1], 'run', ARGV[1])
if run < math.max(10, math.floor(eff / 10)) then
  return 0
end
local new = math.min(eff + math.max(1, math.floor(conf / 200)), conf)
redis.call('HSET', KEYS[1], 'run', 0)
local pub = new
if new >= conf then
  redis.call('HDEL', KEYS[1], 'eff')
  pub = 0
else
  redis.call('HSET', KEYS[1], 'eff', new)
end
redis.call('PUBLISH', ARGV[3], cjson.encode({model = ARGV[4], kind = 'rate', rpm = pub}))
return 1
`)

// Note429 records a 429 of model and returns how long the fleet should
// cool the lane down: retryAfter when the API gave one, else the backoff
// base doubled for each 429 in a row, up to the backoff maximum. It also
// lowers the effective rate of the lane (see the comment above), unless
// quota says the 429 is a used-up quota. Start the cooldown with Cooldown.
func (g *Gate) Note429(ctx context.Context, model string, retryAfter time.Duration, quota bool) (time.Duration, error) {
	keys := append([]string{g.ks.throttle(model)}, g.ks.okKeys(model, time.Now())...)
	rate := "1"
	if quota {
		rate = "0"
	}
	vals, err := note429Script.Run(ctx, g.cfg.Redis, keys, max(retryAfter.Milliseconds(), 0),
		g.cfg.CooldownBase.Milliseconds(), g.cfg.CooldownMax.Milliseconds(), max(g.Limit(model).RPM, 0),
		g.ks.events(), model, throttleTTL.Milliseconds(), rate).Int64Slice()
	if err != nil || len(vals) != 2 {
		return retryAfter, fmt.Errorf("note 429 of lane %s: %w", model, err)
	}
	if ln := g.existing(model); ln != nil {
		ln.setEffective(int(vals[1]))
	}
	return time.Duration(vals[0]) * time.Millisecond, nil
}

// NoteOK records n successful calls of model (a worker adds them up and
// calls it about once a second): it ends a run of 429s and lets a lowered
// effective rate climb back.
func (g *Gate) NoteOK(ctx context.Context, model string, n int64) error {
	if n <= 0 {
		return nil
	}
	now := time.Now()
	keys := []string{g.ks.throttle(model), g.ks.ok(model, now.Unix()/int64(okBucket/time.Second))}
	if err := noteOKScript.Run(ctx, g.cfg.Redis, keys, n, max(g.Limit(model).RPM, 0), g.ks.events(), model,
		(8 * okBucket).Milliseconds()).Err(); err != nil && err != redis.Nil {
		return fmt.Errorf("note successes of lane %s: %w", model, err)
	}
	return nil
}

// setEffective sets the effective request rate (0: the configured one);
// the fetcher picks it up before its next reservation.
func (ln *lane) setEffective(rpm int) {
	ln.mu.Lock()
	changed := ln.effRPM != rpm
	ln.effRPM = rpm
	ln.mu.Unlock()
	if changed {
		signal(ln.changed)
	}
}

// QuotaSuspect reports whether the lane has had nothing but 429s for
// longer than after, the last of them within the last two minutes: at the
// rate the Gate keeps, that is a used-up quota (a Token Plan's) more likely
// than a rate limit.
func (s State) QuotaSuspect(after time.Duration, now time.Time) bool {
	return after > 0 && s.Throttled > 0 && !s.Since429.IsZero() && now.Sub(s.Since429) >= after &&
		now.Sub(s.Last429) <= 2*time.Minute
}
