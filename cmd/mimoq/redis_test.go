package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/redistest"
)

func TestRedisTopology(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  env
		want string // String() of the topology, or "" when an error is expected
		err  []string
	}{
		{name: "default", want: "Redis at 127.0.0.1:6379 (MIMOQ_REDIS_URL)"},
		{name: "url", env: env{RedisURL: "redis://r.example:6380/2"}, want: "Redis at r.example:6380 (MIMOQ_REDIS_URL)"},
		{name: "url with separate password", env: env{RedisURL: "rediss://r.example:6380/0", RedisUsername: "mimoq", RedisPassword: "pw"},
			want: "Redis at r.example:6380 (MIMOQ_REDIS_URL)"},
		{name: "sentinel", env: env{RedisSentinelAddrs: "s1:26379, s2:26379,s3:26379", RedisSentinelMaster: "mymaster"},
			want: `Redis master "mymaster" through the sentinels at s1:26379,s2:26379,s3:26379 (MIMOQ_REDIS_SENTINEL_ADDRS)`},
		{name: "cluster", env: env{RedisClusterAddrs: "c1:6379,c2:6379", RedisPassword: "pw", RedisTLS: true},
			want: "Redis Cluster at c1:6379,c2:6379 (MIMOQ_REDIS_CLUSTER_ADDRS)"},

		{name: "url and cluster", env: env{RedisURL: "redis://a:6379", RedisClusterAddrs: "c1:6379"},
			err: []string{"MIMOQ_REDIS_URL and MIMOQ_REDIS_CLUSTER_ADDRS are both set"}},
		{name: "sentinel and cluster", env: env{RedisSentinelAddrs: "s:26379", RedisSentinelMaster: "m", RedisClusterAddrs: "c1:6379"},
			err: []string{"MIMOQ_REDIS_SENTINEL_ADDRS and MIMOQ_REDIS_CLUSTER_ADDRS are both set"}},
		{name: "all three", env: env{RedisURL: "redis://a:6379", RedisSentinelAddrs: "s:26379", RedisClusterAddrs: "c1:6379"},
			err: []string{"MIMOQ_REDIS_URL, MIMOQ_REDIS_SENTINEL_ADDRS and MIMOQ_REDIS_CLUSTER_ADDRS are all set"}},
		{name: "sentinel without master", env: env{RedisSentinelAddrs: "s:26379"}, err: []string{"MIMOQ_REDIS_SENTINEL_MASTER is not"}},
		{name: "master without sentinels", env: env{RedisSentinelMaster: "mymaster"},
			err: []string{"MIMOQ_REDIS_SENTINEL_MASTER is set but MIMOQ_REDIS_SENTINEL_ADDRS is not"}},
		{name: "sentinel password with cluster", env: env{RedisClusterAddrs: "c:6379", RedisSentinelPassword: "pw"},
			err: []string{"MIMOQ_REDIS_SENTINEL_PASSWORD is set but MIMOQ_REDIS_SENTINEL_ADDRS is not"}},
		{name: "bad cluster address", env: env{RedisClusterAddrs: "c1:6379,c2"}, err: []string{"MIMOQ_REDIS_CLUSTER_ADDRS", `"c2"`}},
		{name: "bad port", env: env{RedisSentinelAddrs: "s:0", RedisSentinelMaster: "m"}, err: []string{"MIMOQ_REDIS_SENTINEL_ADDRS", `"s:0"`}},
		{name: "empty list", env: env{RedisClusterAddrs: " , "}, err: []string{"MIMOQ_REDIS_CLUSTER_ADDRS: no address"}},
		{name: "bad url", env: env{RedisURL: "http://u:secret-pw@h:1"}, err: []string{"invalid MIMOQ_REDIS_URL"}},
		{name: "password twice", env: env{RedisURL: "redis://:a@h:6379", RedisPassword: "b"},
			err: []string{"MIMOQ_REDIS_PASSWORD is set and MIMOQ_REDIS_URL holds a password too"}},
		{name: "tls with redis url", env: env{RedisURL: "redis://h:6379", RedisTLS: true}, err: []string{"rediss://"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			topo, err := tt.env.redisTopology()
			if len(tt.err) > 0 {
				var ue *usageError
				if !errors.As(err, &ue) {
					t.Fatalf("got %v (%T); want a usage error", err, err)
				}
				for _, w := range tt.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "secret-pw") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := topo.String(); got != tt.want {
				t.Errorf("topology %q; want %q", got, tt.want)
			}
		})
	}
}

func TestRedisTopologyOptions(t *testing.T) {
	t.Parallel()
	e := env{RedisURL: "rediss://r.example:6380/3", RedisUsername: "u", RedisPassword: "p"}
	topo, err := e.redisTopology()
	if err != nil {
		t.Fatal(err)
	}
	o := topo.single
	if o.Username != "u" || o.Password != "p" || o.DB != 3 || o.TLSConfig == nil || o.DialTimeout != redisDialTimeout || o.MaxRetries != redisMaxRetries {
		t.Errorf("single options %+v", o)
	}
	e = env{RedisSentinelAddrs: "s1:1,s2:2", RedisSentinelMaster: "m", RedisSentinelPassword: "sp", RedisPassword: "dp", RedisTLS: true}
	topo, err = e.redisTopology()
	if err != nil {
		t.Fatal(err)
	}
	f := topo.failover
	if f.SentinelPassword != "sp" || f.Password != "dp" || f.TLSConfig == nil || f.ReadTimeout != redisReadTimeout || len(f.SentinelAddrs) != 2 {
		t.Errorf("failover options %+v", f)
	}
	e = env{RedisClusterAddrs: "c1:1", RedisUsername: "u", RedisPassword: "p"}
	topo, err = e.redisTopology()
	if err != nil {
		t.Fatal(err)
	}
	if c := topo.cluster; c.Username != "u" || c.Password != "p" || c.TLSConfig != nil || c.WriteTimeout != redisWriteTimeout {
		t.Errorf("cluster options %+v", c)
	}
}

// TestRedisClientTopologies connects through each topology as the commands
// do and checks that the client reaches the right Redis.
func TestRedisClientTopologies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	check := func(t *testing.T, e env, verify func(redis.UniversalClient)) {
		t.Helper()
		c, err := e.redisClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "mimoq:topology", "ok", 0).Err(); err != nil {
			t.Fatal(err)
		}
		verify(c)
	}
	t.Run("url with separate password", func(t *testing.T) {
		t.Parallel()
		s := redistest.NewWithOptions(t, redistest.Options{Password: "pw-1"})
		check(t, env{RedisURL: "redis://" + s.Addr() + "/0", RedisPassword: "pw-1"}, func(c redis.UniversalClient) {
			if _, ok := c.(*redis.Client); !ok {
				t.Errorf("client %T; want *redis.Client", c)
			}
		})
		_, err := (&env{RedisURL: "redis://" + s.Addr() + "/0", RedisPassword: "wrong"}).redisClient(ctx)
		if err == nil || !strings.Contains(err.Error(), "MIMOQ_REDIS_URL") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("wrong password: %v; want an error naming MIMOQ_REDIS_URL, without the password", err)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		s := redistest.NewSentinel(t)
		check(t, env{RedisSentinelAddrs: strings.Join(s.Addrs(), ","), RedisSentinelMaster: s.MasterName()}, func(c redis.UniversalClient) {
			master, err := s.MasterAddr(ctx)
			if err != nil {
				t.Fatal(err)
			}
			direct := redis.NewClient(&redis.Options{Addr: master})
			defer direct.Close()
			if v, err := direct.Get(ctx, "mimoq:topology").Result(); err != nil || v != "ok" {
				t.Errorf("the master %s holds %q, %v; want the key written through the sentinel", master, v, err)
			}
		})
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cl := redistest.NewCluster(t)
		check(t, env{RedisClusterAddrs: strings.Join(cl.Addrs()[:1], ",")}, func(c redis.UniversalClient) {
			cc, ok := c.(*redis.ClusterClient)
			if !ok {
				t.Fatalf("client %T; want *redis.ClusterClient", c)
			}
			// One seed address is enough: the client learns every node.
			var n atomic.Int32 // ForEachMaster calls in parallel
			_ = cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { n.Add(1); return nil })
			if n := n.Load(); n != 3 {
				t.Errorf("client sees %d masters; want 3", n)
			}
		})
	})
}

// TestRedisUnreachable: an address where nothing listens fails at once,
// with an error naming the variable and the address, for every topology.
func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	dead := deadAddr(t)
	for _, tt := range []struct {
		env  env
		want string
	}{
		{env{RedisURL: "redis://:pw@" + dead + "/0"}, "cannot reach Redis at " + dead + " (MIMOQ_REDIS_URL)"},
		{env{RedisSentinelAddrs: dead, RedisSentinelMaster: "mymaster", RedisSentinelPassword: "pw"},
			`cannot reach Redis master "mymaster" through the sentinels at ` + dead + " (MIMOQ_REDIS_SENTINEL_ADDRS)"},
		{env{RedisClusterAddrs: dead, RedisPassword: "pw"}, "cannot reach Redis Cluster at " + dead + " (MIMOQ_REDIS_CLUSTER_ADDRS)"},
	} {
		t.Run(tt.want[:30], func(t *testing.T) {
			t.Parallel()
			// Generous: the client gives up after its own 5-s ping timeout.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := tt.env.redisClient(ctx)
			if err == nil {
				c.Close()
				t.Fatal("connected to an address where nothing listens")
			}
			if ctx.Err() != nil {
				t.Fatalf("redisClient hung until the test's deadline: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q; want it to contain %q and no password", err, tt.want)
			}
		})
	}
}

// TestTwoTopologiesIsUsageError runs the command line: two topologies set
// is exit status 2 with a message naming both variables.
func TestTwoTopologiesIsUsageError(t *testing.T) {
	t.Setenv("MIMOQ_REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("MIMOQ_REDIS_SENTINEL_ADDRS", "127.0.0.1:2")
	t.Setenv("MIMOQ_REDIS_SENTINEL_MASTER", "mymaster")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"job", "get", "01JD0000000000000000000000"}, strings.NewReader(""), &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit status %d; want 2 (stderr %q)", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "MIMOQ_REDIS_URL and MIMOQ_REDIS_SENTINEL_ADDRS are both set") {
		t.Errorf("stderr %q does not name both variables", stderr.String())
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	s := redistest.NewWithOptions(t, redistest.Options{NoAppendOnly: true})
	addr := s.Addr()
	s.Kill()
	return addr
}
