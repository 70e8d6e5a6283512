package lane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/redistest"
)

// TestLanesOnCluster runs Gates and Lanes on a Redis Cluster, with models
// whose {lane:M} slots are spread over every master: the cooldown script
// (two keys, one slot), redis_rate's GCRA, pause and resume with their
// asynq queues, and the events, which are published on the lane's node and
// must reach Gates subscribed on another (cluster pub/sub is broadcast).
func TestLanesOnCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster := redistest.NewCluster(t)
	client := func() *redis.ClusterClient { return cluster.Client() }
	ks := keyspace{prefix: job.KeyPrefix}

	// One model per master.
	byNode := map[string]string{}
	for i := 0; len(byNode) < 3; i++ {
		m := fmt.Sprintf("model-%d", i)
		slot, err := client().ClusterKeySlot(ctx, ks.state(m)).Result()
		if err != nil {
			t.Fatal(err)
		}
		node := slotOwner(t, client(), slot)
		if _, ok := byNode[node]; !ok {
			byNode[node] = m
		}
	}
	var models []string
	for _, m := range byNode {
		models = append(models, m)
	}
	slices.Sort(models)

	newGate := func(cfg GateConfig) *Gate {
		cfg.Redis = client() // a process of its own
		g, err := NewGate(cfg)
		if err != nil {
			t.Fatalf("NewGate on a cluster: %v", err)
		}
		t.Cleanup(g.Close)
		return g
	}
	cfg := GateConfig{Default: Limit{RPM: 600, TPM: -1}, RefreshInterval: time.Hour} // events only
	a, b := newGate(cfg), newGate(cfg)
	rdb := client()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	queues := []string{enqueue.QueueInteractive, enqueue.QueueBatch}
	lanes := NewLanes(rdb, insp)

	for _, m := range models {
		// Both Gates use the lane first, so that they listen for its events.
		for _, g := range []*Gate{a, b} {
			p, err := g.Wait(ctx, m, 0)
			if err != nil {
				t.Fatalf("Wait %s: %v", m, err)
			}
			p.Done(0)
		}

		// A cooldown by one process reaches the other through pub/sub
		// (its refresh is an hour away) and moves the shared GCRA schedule.
		if err := a.Cooldown(ctx, m, 3*time.Second); err != nil {
			t.Fatalf("Cooldown %s on a cluster: %v", m, err)
		}
		lim := redis_rate.NewLimiter(rdb)
		res, err := lim.Allow(ctx, ks.rpm(m), redis_rate.Limit{Rate: 600, Period: time.Minute, Burst: 1})
		if err != nil || res.Allowed != 0 || res.RetryAfter < 2*time.Second {
			t.Errorf("%s: limiter during a 3s cooldown: %+v, %v; want denied", m, res, err)
		}
		waitFor(t, func() bool {
			ln := b.existing(m)
			ln.mu.Lock()
			defer ln.mu.Unlock()
			return ln.coolUntil.After(time.Now())
		})

		// Pause: the other process refuses at once, the asynq queues pause.
		if changed, err := lanes.Pause(ctx, m, "test"); err != nil || !changed {
			t.Fatalf("Pause %s on a cluster: %v, %v", m, changed, err)
		}
		waitFor(t, func() bool {
			wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			_, err := b.Wait(wctx, m, 0)
			return errors.Is(err, ErrPaused)
		})
		for _, q := range queues {
			info, err := insp.GetQueueInfo(job.AsynqQueue(q, m))
			if err == nil && !info.Paused {
				t.Errorf("asynq queue %s not paused", job.AsynqQueue(q, m))
			}
		}
		if changed, err := lanes.Resume(ctx, m); err != nil || !changed {
			t.Fatalf("Resume %s on a cluster: %v, %v", m, changed, err)
		}
		st, err := lanes.List(ctx, models)
		if err != nil {
			t.Fatalf("List across slots: %v", err)
		}
		for _, s := range st {
			if s.Model == m && s.Status != StatusCoolingDown {
				t.Errorf("%s after resume: %+v; want cooling down still", m, s)
			}
		}
	}

	// The fleet limit holds across two processes on a cluster: 10/s.
	var (
		mu     sync.Mutex
		grants []time.Time
	)
	m := "fleet-model"
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, g := range []*Gate{a, b} {
		for range 10 {
			wg.Go(func() {
				for {
					p, err := g.Wait(wctx, m, 0)
					if err != nil {
						return
					}
					mu.Lock()
					grants = append(grants, time.Now())
					mu.Unlock()
					p.Done(0)
				}
			})
		}
	}
	wg.Wait()
	slices.SortFunc(grants, func(x, y time.Time) int { return x.Compare(y) })
	if worst := maxInWindow(grants, time.Second); worst > 10 || len(grants) < 10 {
		t.Errorf("%d grants, at most %d in a 1-s window; want 10/s held across processes", len(grants), worst)
	}
}

func slotOwner(t *testing.T, rdb *redis.ClusterClient, slot int64) string {
	t.Helper()
	slots, err := rdb.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return ""
}
