// Package server is the HTTP API of `mimoq serve`: producers in any language
// submit one request or a whole batch file and pick up the result later;
// operators list and requeue dead letters. Every route but /healthz and
// /readyz takes a bearer token (MIMOQ_API_TOKENS), checked in constant time;
// errors come in the shape of the API mimoq fronts:
//
//	{"error":{"code":"invalid_request","message":"…","type":"error","param":"…"}}
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/auth"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/ops"
)

// Config configures a Server.
type Config struct {
	// Tokens are the accepted bearer tokens. Required: the server refuses to
	// start without one (serving without authentication is not offered).
	Tokens auth.Tokens
	// Client submits and reads jobs and batches. Required.
	Client *enqueue.Client
	// Redis is pinged by /readyz. Required.
	Redis redis.UniversalClient
	// DLQ is the dead-letter store. Default dlq.New(Redis).
	DLQ *dlq.Store
	// Ops requeues dead letters. Default ops.New(Redis).
	Ops *ops.Ops
	// Routes are more handlers by http.ServeMux pattern (the OpenAI-compatible
	// API), each behind the bearer token like the API's own.
	Routes map[string]http.Handler
	// UI, when set, is mounted at /ui and /monitoring. It does its own
	// authentication (a session cookie), so the bearer check is not applied.
	UI http.Handler
	// Registry, when set, receives the server's request metrics and is
	// served at /metrics (bearer token required). Default none: no /metrics.
	Registry *prometheus.Registry
	// Logger gets one line per request and the errors behind 5xx answers.
	// Default: discard.
	Logger zerolog.Logger

	// MaxJobBytes caps the body of POST /v1/jobs and POST /v1/dlq/requeue.
	// Default 8 MiB: a request with 1 MiB messages plus the envelope fits.
	MaxJobBytes int64
	// MaxBatchBytes caps the JSONL body of POST /v1/batches. Default 256 MiB.
	MaxBatchBytes int64
	// MaxWait caps the ?wait= of GET /v1/jobs/{id}. Default 60s.
	MaxWait time.Duration
	// MaxWaiters caps concurrent long polls (each holds a Redis pub/sub
	// connection); beyond it ?wait= answers at once with the current state.
	// Default 1024.
	MaxWaiters int
	// SpoolDir is where batch uploads are spooled before they are
	// validated and enqueued (they are read twice). Default os.TempDir().
	SpoolDir string

	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included: long
	// enough for a MaxBatchBytes upload on a slow link. Default 10m.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response; it must exceed MaxWait.
	// Results streaming and batch submission extend their own deadline.
	// Default MaxWait + 30s.
	WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 2m.
	IdleTimeout time.Duration
	// ShutdownTimeout is the grace Serve gives in-flight requests once its
	// context ends; long polls are answered at once. Default 30s.
	ShutdownTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.DLQ == nil && c.Redis != nil {
		c.DLQ = dlq.New(c.Redis)
	}
	if c.Ops == nil && c.Redis != nil {
		c.Ops = ops.New(c.Redis)
	}
	if c.MaxJobBytes <= 0 {
		c.MaxJobBytes = job.DefaultMaxJobBytes
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = job.DefaultMaxBatchBytes
	}
	if c.MaxWait <= 0 {
		c.MaxWait = job.DefaultMaxWait
	}
	if c.MaxWaiters <= 0 {
		c.MaxWaiters = 1024
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Minute
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = c.MaxWait + 30*time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Tokens.Len() == 0:
		return errors.New("server: Config.Tokens is empty: at least one bearer token is required")
	case c.Client == nil:
		return errors.New("server: Config.Client is required")
	case c.Redis == nil:
		return errors.New("server: Config.Redis is required")
	case c.WriteTimeout <= c.MaxWait:
		return fmt.Errorf("server: Config.WriteTimeout (%s) must exceed MaxWait (%s)", c.WriteTimeout, c.MaxWait)
	}
	if fi, err := os.Stat(c.SpoolDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("server: Config.SpoolDir %q is not a directory", c.SpoolDir)
	}
	return nil
}

// Server is the HTTP API. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	mux     *http.ServeMux
	metrics *metrics // nil without Config.Registry
	waiters chan struct{}

	// draining ends when Serve begins to shut down: long polls answer at
	// once and /readyz reports 503.
	draining     context.Context
	stopDraining context.CancelFunc
	drainOnce    sync.Once
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), waiters: make(chan struct{}, cfg.MaxWaiters)}
	s.draining, s.stopDraining = context.WithCancel(context.Background())
	if cfg.Registry != nil {
		m, err := newMetrics(cfg.Registry, cfg.Redis)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)

	api := func(pattern string, h http.HandlerFunc) { m.Handle(pattern, s.requireToken(h)) }
	api("POST /v1/jobs", s.submitJob)
	api("GET /v1/jobs/{id}", s.getJob)
	api("POST /v1/batches", s.submitBatch)
	api("GET /v1/batches", s.listBatches)
	api("GET /v1/batches/{id}", s.getBatch)
	api("GET /v1/batches/{id}/results", s.batchResults)
	api("POST /v1/batches/{id}/cancel", s.cancelBatch)
	api("GET /v1/dlq", s.listDLQ)
	api("GET /v1/dlq/{id}", s.getDLQ)
	api("POST /v1/dlq/requeue", s.requeueDLQ)
	for pattern, h := range s.cfg.Routes {
		m.Handle(pattern, s.requireToken(h))
	}
	if s.cfg.Registry != nil {
		api("GET /metrics", s.metricsHandler().ServeHTTP)
	}
	if s.cfg.UI != nil {
		for _, p := range []string{"/ui", "/ui/", "/monitoring", "/monitoring/"} {
			m.Handle(p, s.cfg.UI)
		}
	}
}

// Handler returns the server's routes wrapped in request logging, metrics,
// panic recovery and the JSON answers for unknown routes and methods.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve answers requests on ln until ctx ends, then shuts down: long polls
// answer at once with the job's current state, other requests get
// ShutdownTimeout to finish, and connections still open after it are closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(s.log.With().Str("component", "http").Logger(), "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn().Err(err).Dur("shutdown_timeout", s.cfg.ShutdownTimeout).Msg("closing connections still open")
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Drain makes long polls answer at once and /readyz report 503, so that a
// load balancer stops sending traffic before the server stops. Serve calls
// it when its context ends.
func (s *Server) Drain() { s.drainOnce.Do(s.stopDraining) }
