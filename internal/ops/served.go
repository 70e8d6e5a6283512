package ops

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// servedKey counts answers by another model than the one requested, per
// "requested\x00served" pair, fleet-wide (mimoq stats).
const servedKey = job.KeyPrefix + "served_models"

// ServedPair is one requested model answered by another.
type ServedPair struct {
	Requested string `json:"requested"`
	Served    string `json:"served"`
	Count     int64  `json:"count"`
}

// CountServed counts one answer for requested given by served.
func CountServed(ctx context.Context, rdb redis.Cmdable, requested, served string) error {
	if err := rdb.HIncrBy(ctx, servedKey, requested+"\x00"+served, 1).Err(); err != nil {
		return fmt.Errorf("count served model: %w", err)
	}
	return nil
}

// servedPairs reads the counts, largest first.
func (o *Ops) servedPairs(ctx context.Context) ([]ServedPair, error) {
	m, err := o.rdb.HGetAll(ctx, servedKey).Result()
	if err != nil {
		return nil, fmt.Errorf("read served models: %w", err)
	}
	out := make([]ServedPair, 0, len(m))
	for k, v := range m {
		req, served, ok := strings.Cut(k, "\x00")
		if !ok {
			continue
		}
		var n int64
		_, _ = fmt.Sscan(v, &n)
		out = append(out, ServedPair{Requested: req, Served: served, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Count > b.Count || a.Count == b.Count && a.Requested+a.Served < b.Requested+b.Served
	})
	return out, nil
}
