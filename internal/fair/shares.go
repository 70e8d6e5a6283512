package fair

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/records"
)

// FlowShare is one flow of a lane (a batch, or a tenant's batches) as
// `mimoq stats`, /metrics and the web page show it.
type FlowShare struct {
	Flow    string   `json:"flow"`             // "b:<batch id>" or "t:<tenant>"
	Tenant  string   `json:"tenant,omitempty"` // for a tenant's flow
	Batches []string `json:"batches"`
	Weight  int      `json:"weight"`
	// Backlog counts its jobs waiting for their turn.
	Backlog int64 `json:"backlog"`
	// Released counts its jobs released to the lane in the last minute,
	// and Share is their part of all the lane released then (0 to 1).
	Released int64   `json:"released_last_minute"`
	Share    float64 `json:"share"`
}

// LaneShares is how one lane is shared.
type LaneShares struct {
	Queue    string      `json:"queue"`
	Model    string      `json:"model"`
	Backlog  int64       `json:"backlog"`
	Released int64       `json:"released_last_minute"`
	Flows    []FlowShare `json:"flows"`
}

// batchField is the field of a fed count that counts one batch's jobs (the
// flows' fields start with "b:" or "t:").
func batchField(id string) string { return "batch:" + id }

// ReadShares reads the backlogs and shares of lanes; lanes without a
// backlog, and without jobs released in the last minute, are left out.
func ReadShares(ctx context.Context, rdb redis.UniversalClient, store *records.Store, lanes []Lane) ([]LaneShares, error) {
	now := time.Now()
	pipe := rdb.Pipeline()
	members := make([]*redis.StringSliceCmd, len(lanes))
	fed := make([][]*redis.MapStringStringCmd, len(lanes))
	for i, l := range lanes {
		members[i] = pipe.SMembers(ctx, records.LaneBatchesKey(l.asynqQueue()))
		fed[i] = fedCounts(ctx, pipe, l.asynqQueue(), now)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("fair: read shares: %w", err)
	}
	var out []LaneShares
	for i, l := range lanes {
		released := sumCounts(fed[i])
		bs, err := store.ReadBacklogs(ctx, l.Model, members[i].Val())
		if err != nil {
			return nil, err
		}
		ls := LaneShares{Queue: l.Queue, Model: l.Model}
		flows := map[string]*FlowShare{}
		for _, b := range bs {
			if b.Ended() {
				continue
			}
			f := flows[b.Flow()]
			if f == nil {
				f = &FlowShare{Flow: b.Flow(), Tenant: b.Tenant}
				flows[f.Flow] = f
			}
			f.Batches = append(f.Batches, b.BatchID)
			f.Weight = max(f.Weight, b.Weight)
			f.Backlog += b.Len
			ls.Backlog += b.Len
		}
		for k, n := range released {
			if strings.HasPrefix(k, batchField("")) {
				continue
			}
			ls.Released += n
			if f := flows[k]; f != nil {
				f.Released = n
			}
		}
		if ls.Backlog == 0 && ls.Released == 0 {
			continue
		}
		for _, f := range flows {
			if ls.Released > 0 {
				f.Share = float64(f.Released) / float64(ls.Released)
			}
			slices.Sort(f.Batches)
			ls.Flows = append(ls.Flows, *f)
		}
		slices.SortFunc(ls.Flows, func(a, b FlowShare) int { return cmp.Compare(a.Flow, b.Flow) })
		out = append(out, ls)
	}
	return out, nil
}

// BatchReleased is how many jobs of batch id were released to lanes in the
// last minute, over lanes.
func BatchReleased(ctx context.Context, rdb redis.UniversalClient, lanes []Lane, id string) (int64, error) {
	now := time.Now()
	pipe := rdb.Pipeline()
	var cmds []*redis.StringCmd
	for _, l := range lanes {
		for n := range int64(fedBuckets) {
			cmds = append(cmds, pipe.HGet(ctx, fedKey(l.asynqQueue(), bucketOf(now)-n), batchField(id)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("fair: read released: %w", err)
	}
	var total int64
	for _, c := range cmds {
		if n, err := strconv.ParseInt(c.Val(), 10, 64); err == nil {
			total += n
		}
	}
	return total, nil
}

// bucketOf is the number of the fed count interval t falls in.
func bucketOf(t time.Time) int64 { return t.UnixNano() / int64(fedBucket) }

// fedCounts queues the reads of lane q's fed counts of the last minute.
func fedCounts(ctx context.Context, pipe redis.Pipeliner, q string, now time.Time) []*redis.MapStringStringCmd {
	cmds := make([]*redis.MapStringStringCmd, fedBuckets)
	for n := range cmds {
		cmds[n] = pipe.HGetAll(ctx, fedKey(q, bucketOf(now)-int64(n)))
	}
	return cmds
}

// sumCounts adds up fed counts per field.
func sumCounts(cmds []*redis.MapStringStringCmd) map[string]int64 {
	out := map[string]int64{}
	for _, c := range cmds {
		for k, v := range c.Val() {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				out[k] += n
			}
		}
	}
	return out
}
