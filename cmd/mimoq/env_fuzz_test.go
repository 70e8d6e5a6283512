package main

import (
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mimoq/mimoq/internal/lane"
)

// Markers the fuzzer cannot write itself: each stands for a secret, and no
// error or description may ever show one.
const (
	fuzzAPIKey   = "sk-fuzzkey-7f3a91"
	fuzzToken    = "tok-fuzztoken-52e0"
	fuzzRedisPW  = "pw-fuzzredis-c41d"
	fuzzRedisPW2 = "pw-fuzzredis2-09bb"
)

// envVars are every variable loadEnv reads; each fuzz run starts with all
// of them unset, whatever the developer's environment holds.
var envVars = []string{
	"MIMOQ_REDIS_URL", "MIMOQ_REDIS_SENTINEL_ADDRS", "MIMOQ_REDIS_SENTINEL_MASTER", "MIMOQ_REDIS_SENTINEL_USERNAME",
	"MIMOQ_REDIS_SENTINEL_PASSWORD", "MIMOQ_REDIS_CLUSTER_ADDRS", "MIMOQ_REDIS_USERNAME", "MIMOQ_REDIS_PASSWORD",
	"MIMOQ_REDIS_TLS", "MIMOQ_REDIS_CA_FILE", "MIMO_API_KEY", "MIMO_BASE_URL", "MIMOQ_CONCURRENCY", "MIMOQ_RPM", "MIMOQ_TPM",
	"MIMOQ_MODEL_LIMITS", "MIMOQ_MAX_ATTEMPTS", "MIMOQ_BACKOFF_BASE", "MIMOQ_BACKOFF_MAX", "MIMOQ_REQUEST_TIMEOUT",
	"MIMOQ_SHUTDOWN_TIMEOUT", "MIMOQ_RESULT_TTL", "MIMOQ_HTTP_ADDR", "MIMOQ_MODELS", "MIMOQ_API_TOKENS",
	"MIMOQ_LOG_LEVEL", "MIMOQ_LOG_FORMAT",
}

// FuzzLoadEnv sets the environment from fuzzed values and reads it as every
// command does: loadEnv, then the model list, the per-model limits and the
// Redis topology. Whatever the values, it must not panic; a refusal must be
// a usage error (exit status 2) of one line that names the variable; and no
// error or topology description may show the API key, a token or a Redis
// password.
func FuzzLoadEnv(f *testing.F) {
	type seed struct {
		redisUser, redisHost, redisRest, sentinel, cluster, redisPW string
		durBase, durMax, number, limits, models, tokens, level      string
		tls                                                         bool
	}
	for _, s := range []seed{
		{redisHost: "127.0.0.1:6379", redisRest: "/0", durBase: "1s", durMax: "60s", number: "50", level: "info"},
		{redisUser: "default", redisHost: "redis", redisRest: "/15?dial_timeout=3s", durBase: "20ms", durMax: "200ms", number: "1",
			limits: "mimo-v2.6-pro=50:2000000,mimo-v2.6-flash=200:0", models: "mimo-v2.6-pro=131072,mimo-v2.6-tts", tokens: "a,b", level: "debug"},
		{redisHost: "[::1]:6380", redisRest: "/abc", durBase: "5 parsecs", durMax: "-1s", number: "lots"},
		{redisHost: "h:notaport", redisRest: "/0?unknown=PW", durMax: "1e9h", number: "-5", limits: "=:", models: ",,,"},
		{redisHost: "PW", redisRest: "/PW", sentinel: "s1:26379,s2:26379", durBase: "0", number: "99999999999999999999"},
		{cluster: "n1:6379,n2:PW", redisPW: "PW", tls: true, level: "LOUD"},
		{redisHost: "127.0.0.1:6379", redisRest: "/0", redisPW: "PW", tls: true},
		{redisHost: "%zz", redisRest: "#frag", number: "0x10", limits: "mimo-v2.6-pro=abc"},
	} {
		f.Add(s.redisUser, s.redisHost, s.redisRest, s.sentinel, s.cluster, s.redisPW, s.durBase, s.durMax,
			s.number, s.limits, s.models, s.tokens, s.level, s.tls)
	}
	f.Fuzz(func(t *testing.T, redisUser, redisHost, redisRest, sentinel, cluster, redisPW, durBase, durMax,
		number, limits, models, tokens, level string, tls bool) {
		for _, v := range []string{redisUser, redisHost, redisRest, sentinel, cluster, redisPW, durBase, durMax, number, limits, models, tokens, level} {
			if strings.ContainsRune(v, 0) {
				t.Skip("an environment variable cannot hold NUL")
			}
		}
		// PW in a field plants the Redis password there (a user who put it
		// in the wrong place); the URL's own password is always set.
		plant := func(s string) string { return strings.ReplaceAll(s, "PW", fuzzRedisPW2) }
		for _, k := range envVars {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
		scheme := "redis"
		if tls {
			scheme = "rediss"
		}
		u := scheme + "://" + url.UserPassword(redisUser, fuzzRedisPW).String() + "@" + plant(redisHost) + plant(redisRest)
		set := func(k, v string) {
			if v != "" {
				t.Setenv(k, v)
			}
		}
		if sentinel == "" && cluster == "" {
			set("MIMOQ_REDIS_URL", u)
		}
		set("MIMOQ_REDIS_SENTINEL_ADDRS", plant(sentinel))
		set("MIMOQ_REDIS_CLUSTER_ADDRS", plant(cluster))
		set("MIMOQ_REDIS_PASSWORD", plant(redisPW))
		set("MIMO_API_KEY", fuzzAPIKey)
		set("MIMOQ_API_TOKENS", strings.ReplaceAll(tokens, "TOK", fuzzToken))
		set("MIMOQ_BACKOFF_BASE", durBase)
		set("MIMOQ_BACKOFF_MAX", durMax)
		set("MIMOQ_CONCURRENCY", number)
		set("MIMOQ_MODEL_LIMITS", limits)
		set("MIMOQ_MODELS", models)
		set("MIMOQ_LOG_LEVEL", level)

		check := func(what string, err error, vars ...string) {
			t.Helper()
			if err == nil {
				return
			}
			msg := err.Error()
			for _, s := range []string{fuzzAPIKey, fuzzToken, fuzzRedisPW, fuzzRedisPW2} {
				if strings.Contains(msg, s) {
					t.Fatalf("%s: the error shows a secret: %q", what, msg)
				}
			}
			if strings.ContainsAny(msg, "\n\r") || !utf8.ValidString(msg) && utf8.ValidString(redisHost+redisRest+number+limits+models+level+durBase+durMax) {
				t.Fatalf("%s: the error is not one line of text: %q", what, msg)
			}
			named := len(vars) == 0
			for _, v := range vars {
				named = named || strings.Contains(msg, v)
			}
			if !named {
				t.Fatalf("%s: the error names none of %v: %q", what, vars, msg)
			}
		}
		e, err := loadEnv()
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("loadEnv: %T %v; want a usage error", err, err)
			}
			check("loadEnv", err, "MIMOQ_", "MIMO_")
			return
		}
		if e.APIKey.String() == fuzzAPIKey {
			t.Fatal("the API key prints itself")
		}
		_, err = e.models()
		check("models", err, "MIMOQ_MODELS")
		_, err = lane.ParseLimits(e.ModelLimits)
		check("limits", err) // the caller names MIMOQ_MODEL_LIMITS
		topo, err := e.redisTopology()
		check("redis topology", err, "MIMOQ_REDIS")
		if err == nil {
			desc := topo.String()
			for _, s := range []string{fuzzRedisPW, fuzzRedisPW2} {
				if strings.Contains(desc, s) {
					t.Fatalf("the topology description shows a password: %q", desc)
				}
			}
		}
	})
}
