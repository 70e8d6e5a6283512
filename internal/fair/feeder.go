package fair

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
)

// Lane is one mimoq queue of one model: one asynq queue.
type Lane struct {
	Queue, Model string
}

// asynqQueue is the lane's asynq queue.
func (l Lane) asynqQueue() string { return job.AsynqQueue(l.Queue, l.Model) }

// Keys of a lane's feeder, in the lane's slot (the asynq queue's name is
// the hash tag, as in records.LaneBatchesKey):
//
//	mimoq:fair:{<asynq queue>}:lease       string: the process feeding the lane, for a few seconds
//	mimoq:fair:{<asynq queue>}:passes      hash: Passes
//	mimoq:fair:{<asynq queue>}:fed:<n>     hash: flow (and "batch:<id>") → jobs released in the n-th 10-s interval
func laneKey(q string) string         { return job.KeyPrefix + "fair:{" + q + "}" }
func leaseKey(q string) string        { return laneKey(q) + ":lease" }
func passesKey(q string) string       { return laneKey(q) + ":passes" }
func fedKey(q string, n int64) string { return laneKey(q) + ":fed:" + strconv.FormatInt(n, 10) }

// fedBucket is the span of one count of released jobs; a minute is
// fedBuckets of them.
const (
	fedBucket  = 10 * time.Second
	fedBuckets = 6
)

// Config configures a Feeder.
type Config struct {
	Redis   redis.UniversalClient
	Records *records.Store
	// ID names this process as a lane's feeder (in its lease).
	ID string
	// Lanes lists the lanes this process may feed (those it consumes).
	Lanes func() []Lane
	// Depth is how many jobs the feeder keeps in a lane's asynq queue:
	// enough for the fleet's workers to never wait between two feeds,
	// few enough that a batch arriving is not stuck behind them.
	Depth func(model string) int
	// Lease is how long a feeder keeps a lane without renewing it (3 s):
	// the longest a lane waits for another process when its feeder dies.
	Lease time.Duration
	// Busy and Idle are the pauses between rounds while some lane has a
	// backlog (50 ms) and while none has (250 ms).
	Busy, Idle time.Duration
	Logger     zerolog.Logger
}

// Feeder releases the jobs of the backlogs of its lanes into their asynq
// queues, fairly (Plan), for the whole fleet: each lane is fed by one
// process at a time, the holder of its lease.
type Feeder struct {
	cfg Config
}

// New returns a feeder; Run runs it.
func New(cfg Config) (*Feeder, error) {
	if cfg.Redis == nil || cfg.Records == nil || cfg.Lanes == nil || cfg.Depth == nil || cfg.ID == "" {
		return nil, errors.New("fair: feeder needs Redis, Records, Lanes, Depth and ID")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 3 * time.Second
	}
	if cfg.Busy <= 0 {
		cfg.Busy = 50 * time.Millisecond
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 250 * time.Millisecond
	}
	return &Feeder{cfg: cfg}, nil
}

// Run feeds until ctx ends. A failed round (Redis away) is logged and
// tried again.
func (f *Feeder) Run(ctx context.Context) {
	failing := false
	for {
		busy, err := f.Round(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			f.cfg.Logger.Warn().Err(err).Msg("fair feeder round failed; retrying")
			failing = true
		case err == nil && failing:
			f.cfg.Logger.Info().Msg("fair feeder recovered")
			failing = false
		}
		pause := f.cfg.Idle
		if busy && err == nil {
			pause = f.cfg.Busy
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// leaseScript takes or renews a lane's lease for ARGV[1] for ARGV[2] ms.
// KEYS: lease. Returns 1 when the caller holds it.
var leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// Round feeds every lane that has a backlog and whose lease this process
// holds or takes, once. busy says some lane had a backlog.
func (f *Feeder) Round(ctx context.Context) (busy bool, err error) {
	lanes := f.cfg.Lanes()
	if len(lanes) == 0 {
		return false, nil
	}
	pipe := f.cfg.Redis.Pipeline()
	members := make([]*redis.StringSliceCmd, len(lanes))
	for i, l := range lanes {
		members[i] = pipe.SMembers(ctx, records.LaneBatchesKey(l.asynqQueue()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("fair: list backlogs: %w", err)
	}
	var mine []int
	pipe = f.cfg.Redis.Pipeline()
	leases := map[int]*redis.Cmd{}
	for i, l := range lanes {
		if len(members[i].Val()) > 0 {
			busy = true
			leases[i] = leaseScript.Eval(ctx, pipe, []string{leaseKey(l.asynqQueue())}, f.cfg.ID, f.cfg.Lease.Milliseconds())
		}
	}
	if len(leases) == 0 {
		return false, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return busy, fmt.Errorf("fair: lease: %w", err)
	}
	for i, c := range leases {
		if n, _ := c.Int(); n == 1 {
			mine = append(mine, i)
		}
	}
	slices.Sort(mine)
	// A lane that fails does not hold up the others it leases.
	var errs []error
	for _, i := range mine {
		if err := f.feed(ctx, lanes[i], members[i].Val()); err != nil {
			errs = append(errs, err)
		}
	}
	return busy, errors.Join(errs...)
}

// dropChunk is how many parked tasks of an ended backlog one round deletes.
const dropChunk = 2000

// feed fills lane l's asynq queue up to its depth from the backlogs of
// batches ids.
func (f *Feeder) feed(ctx context.Context, l Lane, ids []string) error {
	bs, err := f.cfg.Records.ReadBacklogs(ctx, l.Model, ids)
	if err != nil {
		return err
	}
	var over, active []*records.Backlog
	for _, b := range bs {
		switch {
		case b.Over():
			over = append(over, b)
		case b.Len > 0 && b.Ended():
			if _, err := f.cfg.Records.Drop(ctx, l.Queue, b, dropChunk); err != nil {
				return err
			}
		case b.Len > 0:
			active = append(active, b)
		}
	}
	if err := f.cfg.Records.Forget(ctx, l.Queue, over); err != nil {
		return err
	}
	if len(active) == 0 {
		return nil
	}
	q := l.asynqQueue()
	pipe := f.cfg.Redis.Pipeline()
	pending := pipe.LLen(ctx, asynqwire.PendingKey(q))
	stored := pipe.HGetAll(ctx, passesKey(q))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("fair: read lane %s: %w", q, err)
	}
	want := f.cfg.Depth(l.Model) - int(pending.Val())
	if want <= 0 {
		return nil
	}
	passes := Passes{}
	for k, v := range stored.Val() {
		if p, err := strconv.ParseFloat(v, 64); err == nil {
			passes[k] = p
		}
	}
	order := Plan(active, passes, want)
	released, err := f.cfg.Records.Release(ctx, l.Queue, active, order)
	if err != nil {
		return err
	}
	fed := map[string]int{}
	total := 0
	for i, n := range released {
		if n > 0 {
			fed[active[i].Flow()] += n
			fed[batchField(active[i].BatchID)] += n
			total += n
		}
	}
	now := time.Now()
	pipe = f.cfg.Redis.TxPipeline()
	pipe.Del(ctx, passesKey(q))
	if len(passes) > 0 {
		vals := make([]any, 0, 2*len(passes))
		for k, p := range passes {
			vals = append(vals, k, strconv.FormatFloat(p, 'g', -1, 64))
		}
		pipe.HSet(ctx, passesKey(q), vals...)
	}
	if total > 0 {
		bk := fedKey(q, bucketOf(now))
		for flow, n := range fed {
			pipe.HIncrBy(ctx, bk, flow, int64(n))
		}
		pipe.Expire(ctx, bk, 2*fedBuckets*fedBucket)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("fair: save lane %s: %w", q, err)
	}
	return nil
}
