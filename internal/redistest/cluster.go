package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster is one test's private Redis Cluster: three masters, no replicas,
// the 16384 slots split evenly among them, each node a private redis-server
// with the production settings (AOF everysec, noeviction).
type Cluster struct {
	t     testing.TB
	Nodes []*Server
	buses []int // cluster bus port of each node
}

// NewCluster starts a private three-master Redis Cluster and stops it in
// t.Cleanup. It needs redis-server on the PATH (MIMOQ_TEST_REDIS_URL cannot
// stand in for a cluster): without it the test fails, or is skipped under
// -short.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	path := requireServer(t, "a Redis Cluster")
	c := &Cluster{t: t}
	for range 3 {
		// The cluster bus port defaults to the port + 10000, which may be
		// taken or above 65535: give it a free one of its own.
		bus, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		c.buses = append(c.buses, bus)
		c.Nodes = append(c.Nodes, startPrivate(t, path, Options{Args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "15000",
			"--cluster-port", strconv.Itoa(bus),
		}}))
	}
	if err := c.create(); err != nil {
		t.Fatalf("redistest: create cluster: %v", err)
	}
	return c
}

// create does what `redis-cli --cluster create … --cluster-replicas 0`
// does: distinct config epochs, an even share of the slots per node, every
// node introduced to the first, then waits until every node sees every slot
// served (cluster_state:ok).
func (c *Cluster) create() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr()})
		defer clients[i].Close()
	}
	per := clusterSlots / len(clients)
	for i, cl := range clients {
		if err := cl.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("node %s: set config epoch: %w", c.Nodes[i].Addr(), err)
		}
		lo, hi := i*per, (i+1)*per-1
		if i == len(clients)-1 {
			hi = clusterSlots - 1
		}
		if err := cl.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("node %s: add slots %d-%d: %w", c.Nodes[i].Addr(), lo, hi, err)
		}
	}
	for i, cl := range clients[1:] {
		host, port := splitAddr(c.Nodes[0].Addr())
		if err := cl.Do(ctx, "CLUSTER", "MEET", host, port, c.buses[0]).Err(); err != nil {
			return fmt.Errorf("node %s: meet: %w", c.Nodes[i+1].Addr(), err)
		}
	}
	for {
		ok := 0
		for _, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(clients))) {
				ok++
			}
		}
		if ok == len(clients) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok within 90s: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addrs are the nodes' host:port addresses, as MIMOQ_REDIS_CLUSTER_ADDRS
// lists them.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// Client returns a cluster client, closed in t.Cleanup.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// requireServer returns the path of redis-server, or fails the test (skips
// it under -short) naming what needed it.
func requireServer(t testing.TB, what string) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	if testing.Short() {
		t.Skip("redistest: " + what + " needs redis-server on the PATH (skipped under -short)")
	}
	t.Fatal("redistest: " + what + " needs redis-server on the PATH (Debian: apt-get install redis-server)")
	return ""
}

func splitAddr(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
