package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the private sentinel monitors.
const SentinelMaster = "mymaster"

// Sentinel is one test's private Redis Sentinel deployment: a master, one
// replica and one sentinel (quorum 1), each a private redis-server with the
// production settings (AOF everysec, noeviction). The sentinel is
// redis-server in sentinel mode, so no other binary is needed.
type Sentinel struct {
	t        testing.TB
	Sentinel *Server
	// Data are the two data nodes; which one is master changes with
	// Failover.
	Data [2]*Server
}

// NewSentinel starts a master, a replica and a sentinel watching them, and
// returns once the sentinel knows the replica (so that a failover can
// promote it). args are extra redis-server arguments of both data nodes,
// e.g. "--min-replicas-to-write", "1". It needs redis-server on the PATH:
// without it the test fails, or is skipped under -short.
func NewSentinel(t testing.TB, args ...string) *Sentinel {
	t.Helper()
	path := requireServer(t, "Redis Sentinel")
	// No delay before a diskless full sync: the replica (and the old
	// master after a failover) catches up at once.
	data := append([]string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}, args...)
	master := startPrivate(t, path, Options{Args: data})
	host, port := splitAddr(master.Addr())
	replica := startPrivate(t, path, Options{Args: append(append([]string{}, data...), "--replicaof", host, port)})
	s := &Sentinel{t: t, Data: [2]*Server{master, replica}}

	s.Sentinel = startProcess(t, path, func(dir string, sport int) []string {
		conf := filepath.Join(dir, "sentinel.conf")
		body := strings.Join([]string{
			"port " + strconv.Itoa(sport),
			"bind 127.0.0.1",
			"dir " + dir,
			"logfile " + filepath.Join(dir, "redis.log"),
			fmt.Sprintf("sentinel monitor %s %s %s 1", SentinelMaster, host, port),
			"sentinel down-after-milliseconds " + SentinelMaster + " 2000",
			"sentinel failover-timeout " + SentinelMaster + " 10000",
			"sentinel parallel-syncs " + SentinelMaster + " 1",
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatalf("redistest: write sentinel config: %v", err)
		}
		return []string{conf, "--sentinel"}
	}, "")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.waitReplicas(ctx, replica.Addr()); err != nil {
		t.Fatalf("redistest: sentinel: %v", err)
	}
	return s
}

// Addrs are the sentinels' addresses, as MIMOQ_REDIS_SENTINEL_ADDRS lists
// them.
func (s *Sentinel) Addrs() []string { return []string{s.Sentinel.Addr()} }

// MasterName is the name the sentinels know the master by.
func (s *Sentinel) MasterName() string { return SentinelMaster }

// Client returns a failover client (it follows the master through
// failovers), closed in t.Cleanup.
func (s *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: s.Addrs()})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterAddr asks the sentinel for the current master's address.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	hp, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel answered %v for the master's address", hp)
	}
	return hp[0] + ":" + hp[1], nil
}

// Failover makes the sentinel promote the replica (SENTINEL FAILOVER) and
// waits until the promoted node is master, the sentinel reports it, and
// the old master follows it as a replica with its link up again. It
// returns the old and the new master's addresses.
func (s *Sentinel) Failover(ctx context.Context) (oldMaster, newMaster string, err error) {
	oldMaster, err = s.MasterAddr(ctx)
	if err != nil {
		return "", "", err
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	if err := sc.Failover(ctx, SentinelMaster).Err(); err != nil {
		return "", "", fmt.Errorf("sentinel failover: %w", err)
	}
	for {
		newMaster, err = s.MasterAddr(ctx)
		if err == nil && newMaster != oldMaster && role(ctx, newMaster) == "master" && replicaLinkUp(ctx, oldMaster) {
			return oldMaster, newMaster, nil
		}
		select {
		case <-ctx.Done():
			return "", "", fmt.Errorf("failover from %s not complete: %w", oldMaster, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReplicas waits until the sentinel lists the replica at addr as a
// healthy replica that is in sync.
func (s *Sentinel) waitReplicas(ctx context.Context, addr string) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	defer sc.Close()
	for {
		reps, err := sc.Replicas(ctx, SentinelMaster).Result()
		if err == nil {
			for _, r := range reps {
				if r["ip"]+":"+r["port"] == addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("replica not reported")
			}
			return fmt.Errorf("replica %s not known to the sentinel within the deadline: %w (last answer %v)", addr, err, reps)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// role returns a node's replication role ("master", "slave"), "" on error.
func role(ctx context.Context, addr string) string {
	info := infoReplication(ctx, addr)
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "role:"); ok {
			return v
		}
	}
	return ""
}

// replicaLinkUp reports whether the node at addr is a replica whose link to
// its master is up.
func replicaLinkUp(ctx context.Context, addr string) bool {
	info := infoReplication(ctx, addr)
	return strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
}

func infoReplication(ctx context.Context, addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	info, _ := c.Info(ctx, "replication").Result()
	return info
}
