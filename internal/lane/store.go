package lane

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// cooldownScript starts or extends a lane's cooldown; it never shortens one.
// It also moves the GCRA schedule of the request limit to the end of the
// cooldown, so that a process that has not yet heard the event is not given
// a request slot inside the cooldown either: the limiter itself enforces it.
// This writes redis_rate's own key in its own format (the theoretical
// arrival time, seconds since 2017-01-01, as redis_rate v10's Lua keeps it);
// TestCooldownMovesRateSchedule pins that format.
//
// KEYS: cooldown, rate:…:rpm. ARGV: ttl ms, channel, model, "1" when the
// lane has a request limit. Returns the remaining cooldown in ms.
var cooldownScript = redis.NewScript(`
redis.replicate_commands()
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local untilms = nowms + ttl
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur >= untilms then
  return cur - nowms
end
redis.call('SET', KEYS[1], string.format('%d', untilms), 'PX', ttl)
if ARGV[4] == '1' then
  local untiltat = untilms / 1000 - 1483228800
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if tat < untiltat then
    redis.call('SET', KEYS[2], string.format('%.6f', untiltat), 'EX', math.ceil(ttl / 1000) + 1)
  end
end
redis.call('PUBLISH', ARGV[2], cjson.encode({model = ARGV[3], kind = 'cooldown', ttl_ms = ttl}))
return ttl
`)

// pauseScript marks a lane paused and publishes the event, in one step so
// that the order of events is the order of the writes. A pause by an error
// (probe ms > 0) may be probed: the probe key holds the time until the
// first probe. An operator's pause (probe ms "0") of a lane an error paused
// takes it over: it is never probed from then on.
//
// KEYS: state, probe. ARGV: channel, model, reason, by, probe ms (0: the
// lane is not probed), "1" when the pause is an operator's. Returns 1 when
// it changed the state, 0 when the lane was already paused.
var pauseScript = redis.NewScript(`
redis.replicate_commands()
if redis.call('HGET', KEYS[1], 'status') == 'paused' then
  if ARGV[6] == '1' then
    redis.call('HDEL', KEYS[1], 'probe')
    redis.call('HSET', KEYS[1], 'by', ARGV[4])
    redis.call('DEL', KEYS[2])
  end
  return 0
end
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', 'paused', 'since', string.format('%d', nowms), 'reason', ARGV[3], 'by', ARGV[4])
local probe = tonumber(ARGV[5])
if probe > 0 then
  redis.call('HSET', KEYS[1], 'probe', '1')
  redis.call('SET', KEYS[2], 'wait', 'PX', probe)
end
redis.call('PUBLISH', ARGV[1], cjson.encode({model = ARGV[2], kind = 'pause', reason = ARGV[3], by = ARGV[4]}))
return 1
`)

// resumeScript is the reverse of pauseScript.
//
// KEYS: state, probe. ARGV: channel, model. Returns 1 when it changed the
// state.
var resumeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'paused' then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], cjson.encode({model = ARGV[2], kind = 'resume'}))
return 1
`)

// rawState is a lane's state as stored in Redis.
type rawState struct {
	paused      bool
	since       int64 // unix ms
	reason, by  string
	coolUntilMs int64         // unix ms on the Redis clock, 0 if none
	coolTTL     time.Duration // remaining cooldown, 0 if none
	debt        int64         // tokens owed to the limiter, claimed by this read
	probe       bool          // paused by an error, and probed
	probeTTL    time.Duration // until the next probe may start, 0 if due
	// From the throttle hash (throttle.go): 429s in a row, the first and
	// last of them (unix ms), the effective request limit (0: configured).
	n429              int
	since429, last429 int64
	effRPM            int
}

// readStates reads the state of models in one pipeline. With claimDebt it
// also takes over the token debt processes that stopped left for each model
// (a Gate's fetchers pay it with their next reservations).
func readStates(ctx context.Context, rdb redis.UniversalClient, ks keyspace, models []string, claimDebt bool) ([]rawState, error) {
	if len(models) == 0 {
		return nil, nil
	}
	type cmds struct {
		state *redis.SliceCmd
		until *redis.StringCmd
		ttl   *redis.DurationCmd
		debt  *redis.StringCmd
		probe *redis.DurationCmd
		thr   *redis.SliceCmd
	}
	cs := make([]cmds, len(models))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range models {
			cs[i].state = p.HMGet(ctx, ks.state(m), "status", "since", "reason", "by", "probe")
			cs[i].probe = p.PTTL(ctx, ks.probe(m))
			cs[i].thr = p.HMGet(ctx, ks.throttle(m), "n", "since", "last", "eff")
			cs[i].until = p.Get(ctx, ks.cooldown(m))
			cs[i].ttl = p.PTTL(ctx, ks.cooldown(m))
			if claimDebt {
				cs[i].debt = p.GetDel(ctx, ks.debt(m))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read lane state: %w", err)
	}
	out := make([]rawState, len(models))
	for i, c := range cs {
		for _, e := range []error{c.state.Err(), c.until.Err(), c.ttl.Err()} {
			if e != nil && !errors.Is(e, redis.Nil) {
				return nil, fmt.Errorf("read lane state of %s: %w", models[i], e)
			}
		}
		var r rawState
		vals := c.state.Val()
		str := func(j int) string {
			if j < len(vals) {
				if s, ok := vals[j].(string); ok {
					return s
				}
			}
			return ""
		}
		r.paused = str(0) == StatusPaused
		if r.paused {
			r.since, _ = strconv.ParseInt(str(1), 10, 64)
			r.reason, r.by = str(2), str(3)
			r.probe = str(4) == "1"
			r.probeTTL = max(c.probe.Val(), 0)
		}
		tv := c.thr.Val()
		tnum := func(j int) int64 {
			if j < len(tv) {
				if s, ok := tv[j].(string); ok {
					n, _ := strconv.ParseInt(s, 10, 64)
					return n
				}
			}
			return 0
		}
		r.n429, r.since429, r.last429, r.effRPM = int(tnum(0)), tnum(1), tnum(2), int(tnum(3))
		if ttl := c.ttl.Val(); ttl > 0 {
			r.coolTTL = ttl
			r.coolUntilMs, _ = strconv.ParseInt(c.until.Val(), 10, 64)
		}
		if c.debt != nil {
			r.debt, _ = strconv.ParseInt(c.debt.Val(), 10, 64)
		}
		out[i] = r
	}
	return out, nil
}

// startCooldown runs cooldownScript and returns the remaining cooldown.
func startCooldown(ctx context.Context, rdb redis.UniversalClient, ks keyspace, model string, d time.Duration, rpmLimited bool) (time.Duration, error) {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	limited := "0"
	if rpmLimited {
		limited = "1"
	}
	left, err := cooldownScript.Run(ctx, rdb, []string{ks.cooldown(model), rateKeyPrefix + ks.rpm(model)},
		ms, ks.events(), model, limited).Int64()
	if err != nil {
		return 0, fmt.Errorf("start cooldown of lane %s: %w", model, err)
	}
	return time.Duration(left) * time.Millisecond, nil
}
