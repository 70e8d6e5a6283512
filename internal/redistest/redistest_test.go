package redistest_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/redistest"
)

func TestIsolatedServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := redistest.New(t), redistest.New(t)
	if a.URL() == b.URL() {
		t.Fatalf("two tests share one Redis: %s", a.URL())
	}
	if err := a.Client().Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client().Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("key leaked between servers: exists=%d err=%v", n, err)
	}
}

func TestRestartKeepsAppendOnlyData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.New(t)
	if s.Dir() == "" {
		t.Skip("shared Redis from " + redistest.EnvURL + " cannot be restarted")
	}
	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	if err := s.Client().Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded while the server was down")
	}
	s.Restart()
	got, err := s.Client().Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart: got %q, %v; want v", got, err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.NewCluster(t)
	cl := c.Client()
	// Keys in every slot range: the cluster serves all of them.
	for i := range 100 {
		k := "k" + strconv.Itoa(i)
		if err := cl.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	var mu sync.Mutex
	masters := map[string]bool{}
	err := cl.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			t.Errorf("master %s holds no key of 100", m.Options().Addr)
		}
		mu.Lock()
		masters[m.Options().Addr] = true
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(masters) != 3 {
		t.Errorf("%d masters, want 3", len(masters))
	}
	// A multi-key command across slots is refused: this is a real cluster.
	if err := cl.Do(ctx, "MGET", "a", "b").Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("MGET across slots: %v; want CROSSSLOT", err)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := redistest.NewSentinel(t)
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 1, time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v; want the replica to acknowledge", n, err)
	}
	oldM, newM, err := s.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover %s -> %s", oldM, newM)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after failover: %q, %v", got, err)
	}
	if err := c.Set(ctx, "k2", "v2", 0).Err(); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	if addr, _ := s.MasterAddr(ctx); addr != newM {
		t.Errorf("sentinel reports master %s, want %s", addr, newM)
	}
}
