package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// defaultRedisURL is MIMOQ_REDIS_URL's default, used when no Redis
// topology is configured at all.
const defaultRedisURL = "redis://127.0.0.1:6379/0"

// The variables that choose a Redis topology; exactly one may be set.
const (
	varRedisURL      = "MIMOQ_REDIS_URL"
	varSentinelAddrs = "MIMOQ_REDIS_SENTINEL_ADDRS"
	varClusterAddrs  = "MIMOQ_REDIS_CLUSTER_ADDRS"
)

// Timeouts of every Redis client mimoq builds: a Redis that is not there
// fails a command within seconds instead of hanging it.
const (
	redisDialTimeout  = 3 * time.Second
	redisReadTimeout  = 5 * time.Second
	redisWriteTimeout = 5 * time.Second
	redisPingTimeout  = 5 * time.Second
	// Workers and waiters must outlive a Redis restart or failover: go-redis
	// retries a failed command (with backoff, on a new connection, to the
	// new master) this many times.
	redisMaxRetries = 5
	// redisProtocol is RESP2. mimoq and asynq use no RESP3 feature, and
	// go-redis checks a RESP3 connection for push notifications around
	// every command: RESP2 costs about an eighth less CPU per job
	// (internal/bench, the end-to-end drain).
	redisProtocol = 2
)

// redisTopology is the Redis deployment the MIMOQ_REDIS_* variables
// describe, with the options of its client. Exactly one of single, failover
// and cluster is set.
type redisTopology struct {
	// variable is the variable that chose the topology, for messages.
	variable string
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// redisTopology reads the MIMOQ_REDIS_* variables: MIMOQ_REDIS_URL (one
// Redis, the default), MIMOQ_REDIS_SENTINEL_ADDRS with
// MIMOQ_REDIS_SENTINEL_MASTER (Sentinel), or MIMOQ_REDIS_CLUSTER_ADDRS
// (Cluster). Setting more than one, or a variable that belongs to a
// topology not chosen, is a usage error naming the variables.
func (e *env) redisTopology() (*redisTopology, error) {
	var set []string
	for _, v := range []struct{ name, val string }{
		{varRedisURL, e.RedisURL}, {varSentinelAddrs, e.RedisSentinelAddrs}, {varClusterAddrs, e.RedisClusterAddrs},
	} {
		if strings.TrimSpace(v.val) != "" {
			set = append(set, v.name)
		}
	}
	if len(set) > 1 {
		both := "both"
		if len(set) > 2 {
			both = "all"
		}
		return nil, usagef("%s are %s set: choose one Redis topology (a single Redis, Sentinel or Cluster)", joinAnd(set), both)
	}
	kind := varRedisURL
	if len(set) == 1 {
		kind = set[0]
	}
	if kind != varSentinelAddrs {
		for _, v := range []struct{ name, val string }{
			{"MIMOQ_REDIS_SENTINEL_MASTER", e.RedisSentinelMaster},
			{"MIMOQ_REDIS_SENTINEL_USERNAME", e.RedisSentinelUsername},
			{"MIMOQ_REDIS_SENTINEL_PASSWORD", e.RedisSentinelPassword.Value()},
		} {
			if v.val != "" {
				return nil, usagef("%s is set but %s is not: list the sentinels in %s", v.name, varSentinelAddrs, varSentinelAddrs)
			}
		}
	}
	roots, err := e.redisRootCAs()
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if e.RedisTLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots} // ServerName: each node's host
	} else if roots != nil && kind != varRedisURL {
		return nil, usagef("%s is set but MIMOQ_REDIS_TLS is not: set MIMOQ_REDIS_TLS=true for TLS to %s", varRedisCAFile, kind)
	}

	switch kind {
	case varSentinelAddrs:
		addrs, err := parseAddrs(varSentinelAddrs, e.RedisSentinelAddrs)
		if err != nil {
			return nil, err
		}
		if e.RedisSentinelMaster == "" {
			return nil, usagef("%s is set but MIMOQ_REDIS_SENTINEL_MASTER is not: name the master the sentinels monitor (e.g. mymaster)", varSentinelAddrs)
		}
		return &redisTopology{variable: varSentinelAddrs, failover: &redis.FailoverOptions{
			MasterName: e.RedisSentinelMaster, SentinelAddrs: addrs,
			SentinelUsername: e.RedisSentinelUsername, SentinelPassword: e.RedisSentinelPassword.Value(),
			Username: e.RedisUsername, Password: e.RedisPassword.Value(), TLSConfig: tlsConfig,
			DialTimeout: redisDialTimeout, ReadTimeout: redisReadTimeout, WriteTimeout: redisWriteTimeout,
			MaxRetries: redisMaxRetries, Protocol: redisProtocol,
		}}, nil
	case varClusterAddrs:
		addrs, err := parseAddrs(varClusterAddrs, e.RedisClusterAddrs)
		if err != nil {
			return nil, err
		}
		return &redisTopology{variable: varClusterAddrs, cluster: &redis.ClusterOptions{
			Addrs: addrs, Username: e.RedisUsername, Password: e.RedisPassword.Value(), TLSConfig: tlsConfig,
			DialTimeout: redisDialTimeout, ReadTimeout: redisReadTimeout, WriteTimeout: redisWriteTimeout,
			MaxRetries: redisMaxRetries, Protocol: redisProtocol,
		}}, nil
	}

	raw := e.RedisURL
	if strings.TrimSpace(raw) == "" {
		raw = defaultRedisURL
	}
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, usagef("invalid %s: %v", varRedisURL, redactURLError(err, raw))
	}
	switch {
	case e.RedisTLS && opt.TLSConfig == nil:
		return nil, usagef("MIMOQ_REDIS_TLS is set but %s is not a rediss:// URL: write rediss:// for TLS to a single Redis", varRedisURL)
	case roots != nil && opt.TLSConfig == nil:
		return nil, usagef("%s is set but %s is not a rediss:// URL: write rediss:// for TLS", varRedisCAFile, varRedisURL)
	case e.RedisPassword != "" && opt.Password != "":
		return nil, usagef("MIMOQ_REDIS_PASSWORD is set and %s holds a password too: give it in one place", varRedisURL)
	case e.RedisUsername != "" && opt.Username != "":
		return nil, usagef("MIMOQ_REDIS_USERNAME is set and %s holds a user name too: give it in one place", varRedisURL)
	}
	if e.RedisPassword != "" {
		opt.Password = e.RedisPassword.Value()
	}
	if e.RedisUsername != "" {
		opt.Username = e.RedisUsername
	}
	if roots != nil {
		opt.TLSConfig.RootCAs = roots
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = redisDialTimeout, redisReadTimeout, redisWriteTimeout
	opt.MaxRetries = redisMaxRetries
	if opt.Protocol == 0 { // unless the URL says ?protocol=
		opt.Protocol = redisProtocol
	}
	return &redisTopology{variable: varRedisURL, single: opt}, nil
}

// varRedisCAFile names the PEM file of the certificate authorities that
// Redis's TLS certificate is checked against.
const varRedisCAFile = "MIMOQ_REDIS_CA_FILE"

// redisRootCAs reads MIMOQ_REDIS_CA_FILE: the CAs that Redis's TLS
// certificate must chain to (a private CA, as managed Redis services and
// self-run TLS setups use), instead of the system's. nil when it is not set.
// Certificates are always verified; there is no way to turn that off.
func (e *env) redisRootCAs() (*x509.CertPool, error) {
	if e.RedisCAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(e.RedisCAFile)
	if err != nil {
		return nil, usagef("invalid %s: %v", varRedisCAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usagef("invalid %s=%s: no PEM certificate in it", varRedisCAFile, e.RedisCAFile)
	}
	return pool, nil
}

// client builds the topology's client: a plain client, a failover client
// that follows the master the sentinels name, or a cluster client. All are
// a redis.UniversalClient, which asynq and every mimoq package take.
func (t *redisTopology) client() redis.UniversalClient {
	switch {
	case t.failover != nil:
		return redis.NewFailoverClient(t.failover)
	case t.cluster != nil:
		return redis.NewClusterClient(t.cluster)
	}
	return redis.NewClient(t.single)
}

// String names the topology and where it is, never a password.
func (t *redisTopology) String() string {
	switch {
	case t.failover != nil:
		return fmt.Sprintf("Redis master %q through the sentinels at %s (%s)", t.failover.MasterName, strings.Join(t.failover.SentinelAddrs, ","), t.variable)
	case t.cluster != nil:
		return fmt.Sprintf("Redis Cluster at %s (%s)", strings.Join(t.cluster.Addrs, ","), t.variable)
	}
	return fmt.Sprintf("Redis at %s (%s)", t.single.Addr, t.variable)
}

// redisClient connects to the Redis the environment names (see
// redisTopology) and checks that it answers, so that an address pointing
// nowhere fails within seconds with a clear error instead of hanging.
// Errors name the variable and the addresses, never a password.
func (e *env) redisClient(ctx context.Context) (redis.UniversalClient, error) {
	topo, err := e.redisTopology()
	if err != nil {
		return nil, err
	}
	c := topo.client()
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cannot reach %s: %v", topo, err)
	}
	return c, nil
}

// parseAddrs splits a comma-separated list of host:port addresses.
func parseAddrs(name, list string) ([]string, error) {
	var out []string
	for a := range strings.SplitSeq(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return nil, usagef("invalid %s entry %q: want host:port, e.g. redis-0.redis:6379", name, a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, usagef("invalid %s: no address in %q", name, list)
	}
	return out, nil
}

// joinAnd joins names as "A and B" or "A, B and C".
func joinAnd(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// redactURLError keeps a URL (and so its password) out of a parse error.
// net/url quotes the URL it failed on, not always as given (without its
// #fragment, say), so its own reason is kept without the URL, and any
// user:password@ left is masked as well.
func redactURLError(err error, raw string) error {
	if raw == "" {
		return errors.New("empty URL")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := strings.ReplaceAll(err.Error(), raw, "<url>")
	return errors.New(userinfoRE.ReplaceAllString(msg, "${1}<redacted>@"))
}

// userinfoRE matches the user:password@ of a URL in a message.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s"]*@`)

// redisLog routes go-redis's own log lines (reconnect attempts and the like)
// into zerolog, instead of unstructured lines on stderr.
type redisLog struct{ l zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Debug().Str("component", "go-redis").Msg(fmt.Sprintf(format, v...))
}
