package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue/webhook"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/price"
	"github.com/mimoq/mimoq/internal/webhooks"
	"github.com/mimoq/mimoq/worker"
)

// env is every environment variable of the SPEC. It is read only here, in cmd/.
type env struct {
	// The Redis topology: exactly one of MIMOQ_REDIS_URL (default
	// redis://127.0.0.1:6379/0 when none is set), MIMOQ_REDIS_SENTINEL_ADDRS
	// or MIMOQ_REDIS_CLUSTER_ADDRS; see redisTopology.
	RedisURL              string `envconfig:"MIMOQ_REDIS_URL"`
	RedisSentinelAddrs    string `envconfig:"MIMOQ_REDIS_SENTINEL_ADDRS"`
	RedisSentinelMaster   string `envconfig:"MIMOQ_REDIS_SENTINEL_MASTER"`
	RedisSentinelUsername string `envconfig:"MIMOQ_REDIS_SENTINEL_USERNAME"`
	RedisSentinelPassword secret `envconfig:"MIMOQ_REDIS_SENTINEL_PASSWORD"`
	RedisClusterAddrs     string `envconfig:"MIMOQ_REDIS_CLUSTER_ADDRS"`
	// Credentials of the data nodes (the master and replicas, or the
	// cluster's nodes); with MIMOQ_REDIS_URL they may stand in for the URL's.
	RedisUsername string `envconfig:"MIMOQ_REDIS_USERNAME"`
	RedisPassword secret `envconfig:"MIMOQ_REDIS_PASSWORD"`
	// RedisTLS turns TLS on for Sentinel and Cluster (a single Redis says
	// rediss:// instead).
	RedisTLS bool `envconfig:"MIMOQ_REDIS_TLS"`
	// RedisCAFile is a PEM file of the CAs Redis's TLS certificate is
	// checked against, instead of the system's (a private CA).
	RedisCAFile string `envconfig:"MIMOQ_REDIS_CA_FILE"`

	APIKey          secret        `envconfig:"MIMO_API_KEY"`
	BaseURL         string        `envconfig:"MIMO_BASE_URL" default:"https://api.xiaomimimo.com/v1"`
	Concurrency     int           `envconfig:"MIMOQ_CONCURRENCY" default:"50"`
	RPM             int           `envconfig:"MIMOQ_RPM" default:"100"`
	TPM             int64         `envconfig:"MIMOQ_TPM" default:"10000000"`
	ModelLimits     string        `envconfig:"MIMOQ_MODEL_LIMITS"`
	MaxAttempts     int           `envconfig:"MIMOQ_MAX_ATTEMPTS" default:"5"`
	BackoffBase     time.Duration `envconfig:"MIMOQ_BACKOFF_BASE" default:"1s"`
	BackoffMax      time.Duration `envconfig:"MIMOQ_BACKOFF_MAX" default:"60s"`
	RequestTimeout  time.Duration `envconfig:"MIMOQ_REQUEST_TIMEOUT" default:"5m"`
	ShutdownTimeout time.Duration `envconfig:"MIMOQ_SHUTDOWN_TIMEOUT" default:"30s"`
	ResultTTL       time.Duration `envconfig:"MIMOQ_RESULT_TTL" default:"168h"`
	HTTPAddr        string        `envconfig:"MIMOQ_HTTP_ADDR"`
	Models          string        `envconfig:"MIMOQ_MODELS"`
	// CatalogInterval is how often a worker reads GET /models (0: never,
	// MIMOQ_MODELS only); LaneProbeInterval how often a lane paused by an
	// error lets one job through (0: never).
	CatalogInterval   time.Duration `envconfig:"MIMOQ_CATALOG_INTERVAL" default:"10m"`
	LaneProbeInterval time.Duration `envconfig:"MIMOQ_LANE_PROBE_INTERVAL" default:"5m"`
	// QuotaSuspectAfter is how long a lane gets only 429s under its rate
	// before stats shows it as "quota?" (0: never).
	QuotaSuspectAfter time.Duration `envconfig:"MIMOQ_QUOTA_SUSPECT_AFTER" default:"10m"`
	// Prices overrides the built-in list prices (model=input:cached:output
	// USD per 1M tokens, comma list).
	Prices      string        `envconfig:"MIMOQ_PRICES"`
	APITokens   []secret      `envconfig:"MIMOQ_API_TOKENS"`
	SyncTimeout time.Duration `envconfig:"MIMOQ_SYNC_TIMEOUT" default:"10m"`
	// Webhooks: the fleet's endpoints, the signing secrets, the target
	// rules and how long a delivery is retried.
	WebhookURLs       string        `envconfig:"MIMOQ_WEBHOOK_URLS"`
	WebhookSecret     []secret      `envconfig:"MIMOQ_WEBHOOK_SECRET"`
	WebhookAllowHTTP  bool          `envconfig:"MIMOQ_WEBHOOK_ALLOW_HTTP"`
	WebhookAllowHosts string        `envconfig:"MIMOQ_WEBHOOK_ALLOW_HOSTS"`
	WebhookRetryFor   time.Duration `envconfig:"MIMOQ_WEBHOOK_RETRY_FOR" default:"24h"`
	LogLevel          string        `envconfig:"MIMOQ_LOG_LEVEL" default:"info"`
	LogFormat         string        `envconfig:"MIMOQ_LOG_FORMAT" default:"auto"`
}

// secret is a string that never prints itself: a stray %v or a JSON log field
// shows a placeholder, never the value.
type secret string

func (s secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// MarshalText keeps a secret out of any structured log or JSON dump.
func (s secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Decode lets envconfig fill a secret; it never echoes the value on error.
func (s *secret) Decode(v string) error { *s = secret(v); return nil }

// Value returns the secret itself, for the one place that must send it.
func (s secret) Value() string { return string(s) }

// loadEnv reads the environment. A bad value is a usage error that names the variable.
func loadEnv() (*env, error) {
	var e env
	if err := envconfig.Process("", &e); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return nil, usagef("invalid %s=%q: %v", pe.KeyName, pe.Value, pe.Err)
		}
		return nil, usagef("read environment: %v", err)
	}
	if err := e.validate(); err != nil {
		return nil, &usageError{err: err}
	}
	return &e, nil
}

func (e *env) validate() error {
	switch {
	case e.Concurrency < 1:
		return fmt.Errorf("invalid MIMOQ_CONCURRENCY=%d: must be at least 1", e.Concurrency)
	case e.RPM < 0:
		return fmt.Errorf("invalid MIMOQ_RPM=%d: must not be negative", e.RPM)
	case e.TPM < 0:
		return fmt.Errorf("invalid MIMOQ_TPM=%d: must not be negative", e.TPM)
	case e.MaxAttempts < 1:
		return fmt.Errorf("invalid MIMOQ_MAX_ATTEMPTS=%d: must be at least 1", e.MaxAttempts)
	case e.BackoffBase <= 0:
		return fmt.Errorf("invalid MIMOQ_BACKOFF_BASE=%s: must be positive", e.BackoffBase)
	case e.BackoffMax < e.BackoffBase:
		return fmt.Errorf("invalid MIMOQ_BACKOFF_MAX=%s: must not be below MIMOQ_BACKOFF_BASE (%s)", e.BackoffMax, e.BackoffBase)
	case e.RequestTimeout <= 0:
		return fmt.Errorf("invalid MIMOQ_REQUEST_TIMEOUT=%s: must be positive", e.RequestTimeout)
	case e.ShutdownTimeout < 0:
		return fmt.Errorf("invalid MIMOQ_SHUTDOWN_TIMEOUT=%s: must not be negative", e.ShutdownTimeout)
	case e.ResultTTL <= 0:
		return fmt.Errorf("invalid MIMOQ_RESULT_TTL=%s: must be positive", e.ResultTTL)
	case e.SyncTimeout <= 0:
		return fmt.Errorf("invalid MIMOQ_SYNC_TIMEOUT=%s: must be positive", e.SyncTimeout)
	case e.WebhookRetryFor <= 0:
		return fmt.Errorf("invalid MIMOQ_WEBHOOK_RETRY_FOR=%s: must be positive", e.WebhookRetryFor)
	case e.CatalogInterval < 0:
		return fmt.Errorf("invalid MIMOQ_CATALOG_INTERVAL=%s: must not be negative (0 turns the live catalog off)", e.CatalogInterval)
	case e.CatalogInterval > 0 && e.CatalogInterval < time.Second:
		return fmt.Errorf("invalid MIMOQ_CATALOG_INTERVAL=%s: must be at least 1s (0 turns the live catalog off)", e.CatalogInterval)
	case e.QuotaSuspectAfter < 0:
		return fmt.Errorf("invalid MIMOQ_QUOTA_SUSPECT_AFTER=%s: must not be negative (0 turns it off)", e.QuotaSuspectAfter)
	case e.LaneProbeInterval < 0:
		return fmt.Errorf("invalid MIMOQ_LANE_PROBE_INTERVAL=%s: must not be negative (0 turns probes off)", e.LaneProbeInterval)
	}
	if _, err := price.Parse(e.Prices); err != nil {
		return fmt.Errorf("invalid MIMOQ_PRICES: %v", err)
	}
	if _, err := e.webhookEndpoints(); err != nil {
		return err
	}
	for i, s := range e.WebhookSecret {
		if _, err := webhook.Key(s.Value()); err != nil {
			return fmt.Errorf("invalid MIMOQ_WEBHOOK_SECRET: entry %d is not whsec_ followed by base64", i+1)
		}
	}
	if _, err := webhooks.NewGuard(e.WebhookAllowHosts, e.WebhookAllowHTTP); err != nil {
		return fmt.Errorf("invalid MIMOQ_WEBHOOK_ALLOW_HOSTS: %v", err)
	}
	if _, err := zerolog.ParseLevel(strings.ToLower(e.LogLevel)); err != nil || e.LogLevel == "" {
		return fmt.Errorf("invalid MIMOQ_LOG_LEVEL=%q: want trace, debug, info, warn or error", e.LogLevel)
	}
	switch e.LogFormat {
	case "auto", "json", "console":
	default:
		return fmt.Errorf("invalid MIMOQ_LOG_FORMAT=%q: want auto, json or console", e.LogFormat)
	}
	return nil
}

// webhookEndpoints parses MIMOQ_WEBHOOK_URLS.
func (e *env) webhookEndpoints() ([]webhooks.Endpoint, error) {
	eps, err := webhooks.ParseEndpoints(e.WebhookURLs, e.WebhookAllowHTTP)
	if err != nil {
		return nil, fmt.Errorf("invalid MIMOQ_WEBHOOK_URLS: %v", err)
	}
	return eps, nil
}

// webhookConfig is the worker's webhook configuration.
func (e *env) webhookConfig() worker.WebhookConfig {
	eps, _ := e.webhookEndpoints() // validated by loadEnv
	secrets := make([]string, len(e.WebhookSecret))
	for i, s := range e.WebhookSecret {
		secrets[i] = s.Value()
	}
	return worker.WebhookConfig{Endpoints: eps, Secrets: secrets, AllowHTTP: e.WebhookAllowHTTP,
		AllowHosts: e.WebhookAllowHosts, RetryFor: e.WebhookRetryFor}
}

// models returns the configured model list (MIMOQ_MODELS) or the default one.
func (e *env) models() (apiclient.Models, error) {
	if e.Models == "" {
		return apiclient.DefaultModels(), nil
	}
	m, err := apiclient.ParseModels(e.Models)
	if err != nil {
		return nil, usagef("invalid MIMOQ_MODELS: %v", err)
	}
	return m, nil
}

// modelLimits returns the model list and the per-model rate limits
// (MIMOQ_MODELS, MIMOQ_MODEL_LIMITS) that long-running commands share.
func (e *env) modelLimits() (apiclient.Models, map[string]lane.Limit, error) {
	models, err := e.models()
	if err != nil {
		return nil, nil, err
	}
	limits, err := lane.ParseLimits(e.ModelLimits)
	if err != nil {
		return nil, nil, usagef("invalid MIMOQ_MODEL_LIMITS: %v", err)
	}
	for m, l := range limits {
		limits[m] = lane.Limit{RPM: unlimitedIfZero(l.RPM), TPM: int64(unlimitedIfZero(int(l.TPM)))}
	}
	return models, limits, nil
}

// defaultLimit is every model's limit (MIMOQ_RPM, MIMOQ_TPM).
func (e *env) defaultLimit() lane.Limit {
	return lane.Limit{RPM: unlimitedIfZero(e.RPM), TPM: int64(unlimitedIfZero(int(e.TPM)))}
}

// unlimitedIfZero maps the SPEC's 0 (unlimited) to lane's -1; lane reads a
// zero Limit as "the default".
func unlimitedIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// prices returns the price table: the list prices with MIMOQ_PRICES over them.
func (e *env) prices() (*price.Table, error) {
	t, err := price.Parse(e.Prices)
	if err != nil {
		return nil, usagef("invalid MIMOQ_PRICES: %v", err)
	}
	return t, nil
}

// offIfZero maps the SPEC's 0 (never) to the worker's negative.
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// httpAddr returns MIMOQ_HTTP_ADDR or the command's own default.
func (e *env) httpAddr(def string) string {
	if e.HTTPAddr != "" {
		return e.HTTPAddr
	}
	return def
}

// logger builds the root logger: console on a terminal, JSON otherwise (auto).
func (e *env) logger(w io.Writer) zerolog.Logger {
	level, _ := zerolog.ParseLevel(strings.ToLower(e.LogLevel))
	console := e.LogFormat == "console"
	if e.LogFormat == "auto" {
		if f, ok := w.(*os.File); ok {
			console = isatty.IsTerminal(f.Fd())
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
