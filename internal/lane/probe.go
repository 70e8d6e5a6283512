package lane

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimProbeScript gives the next probe of a lane paused by an error to one
// process of the fleet: the first to ask once the probe key has expired.
// The key it sets both names the prober and holds off the next probe for
// the interval.
//
// KEYS: state, probe. ARGV: by, interval ms. Returns 1 when the caller won.
var claimProbeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'paused' or redis.call('HGET', KEYS[1], 'probe') ~= '1' then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
`)

// ClaimProbe reports whether the caller (by) may probe model's lane now:
// the lane is paused by an error, is probed, and its next probe is due. A
// true answer holds off every other probe for interval, fleet-wide.
func (l *Lanes) ClaimProbe(ctx context.Context, model, by string, interval time.Duration) (bool, error) {
	n, err := claimProbeScript.Run(ctx, l.rdb, []string{l.ks.state(model), l.ks.probe(model)}, by,
		max(interval.Milliseconds(), 1)).Int()
	if err != nil {
		return false, fmt.Errorf("claim probe of lane %s: %w", model, err)
	}
	return n == 1, nil
}
