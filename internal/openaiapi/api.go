// Package openaiapi is the OpenAI-compatible API of `mimoq serve`, under
// /openai/v1: Files, Batches, Chat Completions and Models in the shapes the
// official OpenAI SDKs read, so that a script written for OpenAI's Batch API
// runs against mimoq with only its base URL (and key) changed.
//
// Nothing here is a second queue: a batch created through POST /batches is
// an ordinary mimoq batch (mimoq batch status, the DLQ, the web page and lane
// pauses all see it), a chat completion is an ordinary interactive job that
// the handler waits for. What OpenAI's objects carry beyond mimoq's records —
// the input file, the endpoint, the window, the metadata, the errors of a
// file that failed validation — is kept in a record of its own per batch.
// Input files live in Redis (package files), so that every replica behind a
// load balancer reads every file; output and error files are generated from
// a batch's results when they are read, never stored twice.
//
// Errors come in OpenAI's shape, with the statuses the SDKs map to their
// error classes:
//
//	{"error":{"message":"…","type":"invalid_request_error","param":null,"code":"…"}}
package openaiapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/files"
	"github.com/mimoq/mimoq/internal/job"
)

// Prefix is where the routes are mounted.
const Prefix = "/openai/v1"

// DefaultSyncTimeout is how long POST /chat/completions waits for its job
// (MIMOQ_SYNC_TIMEOUT).
const DefaultSyncTimeout = 10 * time.Minute

// DefaultCompletionWindow is the window of a batch created without one (the
// only value OpenAI accepts).
const DefaultCompletionWindow = 24 * time.Hour

// MinCompletionWindow is the shortest window accepted.
const MinCompletionWindow = enqueue.MinCompletionWindow

// maxLineErrors is how many invalid lines a failed batch lists in errors.
const maxLineErrors = 1000

// Config configures the API.
type Config struct {
	// Client submits and reads jobs and batches. Required.
	Client *enqueue.Client
	// Files keeps uploaded files. Required.
	Files *files.Store
	// Redis holds the OpenAI side of each batch. Required.
	Redis redis.UniversalClient
	// ResultTTL is how long a batch's OpenAI record is kept, as its mimoq
	// record. Default job.DefaultResultTTL.
	ResultTTL time.Duration
	// SyncTimeout is how long POST /chat/completions waits for its job.
	// Default DefaultSyncTimeout.
	SyncTimeout time.Duration
	// WriteTimeout is the write deadline of an answer once it is ready (the
	// server's). Default 1m.
	WriteTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.ResultTTL <= 0 {
		c.ResultTTL = job.DefaultResultTTL
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = time.Minute
	}
	return c
}

// API is the OpenAI-compatible API. It is safe for concurrent use.
type API struct {
	cfg     Config
	batches *batchStore
	// draining ends when the server shuts down: chat completions still
	// waiting answer at once (503, retry with the same Idempotency-Key).
	draining context.Context
}

// New returns the API for cfg. draining, when not nil, ends when the server
// begins to shut down.
func New(cfg Config, draining context.Context) (*API, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.Client == nil:
		return nil, errors.New("openaiapi: Config.Client is required")
	case cfg.Files == nil:
		return nil, errors.New("openaiapi: Config.Files is required")
	case cfg.Redis == nil:
		return nil, errors.New("openaiapi: Config.Redis is required")
	}
	if draining == nil {
		draining = context.Background()
	}
	return &API{cfg: cfg, batches: &batchStore{rdb: cfg.Redis, ttl: cfg.ResultTTL}, draining: draining}, nil
}

// Routes returns the API's handlers by http.ServeMux pattern, every one
// under Prefix. The caller checks the bearer token before them.
func (a *API) Routes() map[string]http.Handler {
	routes := map[string]http.HandlerFunc{
		"POST /files":               a.createFile,
		"GET /files":                a.listFiles,
		"GET /files/{id}":           a.getFile,
		"GET /files/{id}/content":   a.fileContent,
		"DELETE /files/{id}":        a.deleteFile,
		"POST /batches":             a.createBatch,
		"GET /batches":              a.listBatches,
		"GET /batches/{id}":         a.getBatch,
		"POST /batches/{id}/cancel": a.cancelBatch,
		"POST /chat/completions":    a.chatCompletions,
		"GET /models":               a.listModels,
		"GET /models/{id}":          a.getModel,
	}
	out := make(map[string]http.Handler, len(routes))
	for pattern, h := range routes {
		method, path, _ := strings.Cut(pattern, " ")
		out[method+" "+Prefix+path] = h
	}
	return out
}
