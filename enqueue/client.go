// Package enqueue is mimoq's producer API: submit one chat-completions
// request or a whole batch file, read jobs and batches, wait for them, and
// stream a batch's results. Every request is validated before anything is
// enqueued. The worker (package worker) runs what is submitted here.
//
// The words it speaks — Job, Batch, State, Attempt, Usage — are mimoq's
// shared vocabulary, declared once in internal/job and named here through
// type aliases.
package enqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/catalog"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/webhooks"
)

// The vocabulary of jobs and batches (see internal/job).
type (
	// Job is the record of one job, as `mimoq job get --json` prints it.
	Job = job.Job
	// Batch is the record of one batch.
	Batch = job.Batch
	// State is where a job is in its life.
	State = job.State
	// BatchState is where a batch is in its life.
	BatchState = job.BatchState
	// Attempt is one entry of a job's history.
	Attempt = job.Attempt
	// JobError is the last error of a job that did not succeed.
	JobError = job.Error
	// Usage is the token usage of a job or a batch.
	Usage = job.Usage
	// ResultLine is one line of a batch results file.
	ResultLine = job.ResultLine
	// ResultResponse is the API's answer to one line.
	ResultResponse = job.ResultResponse
	// ResultError is why a line did not succeed.
	ResultError = job.ResultError
)

// The states of a job and of a batch.
const (
	StateQueued    = job.StateQueued
	StateRunning   = job.StateRunning
	StateRetrying  = job.StateRetrying
	StateSucceeded = job.StateSucceeded
	StateDead      = job.StateDead
	StateCanceled  = job.StateCanceled
	StateExpired   = job.StateExpired

	BatchSubmitting = job.BatchSubmitting
	BatchRunning    = job.BatchRunning
	BatchDone       = job.BatchDone
	BatchCanceled   = job.BatchCanceled
	BatchExpired    = job.BatchExpired
)

// The queues a job may be submitted to.
const (
	QueueInteractive = job.QueueInteractive
	QueueBatch       = job.QueueBatch
)

// ErrNotFound is returned (wrapped) when a job or batch does not exist: it
// was never submitted, or it expired after MIMOQ_RESULT_TTL.
var ErrNotFound = records.ErrNotFound

// ClientConfig configures a producer Client.
type ClientConfig struct {
	// Redis is the client for mimoq's keys and asynq's. Required.
	Redis redis.UniversalClient
	// Models validates requests before they are enqueued. Default
	// apiclient.DefaultModels().
	Models apiclient.Models
	// ResultTTL is how long final records (and idempotency keys) are kept.
	// Default 168h (job.DefaultResultTTL).
	ResultTTL time.Duration
	// MaxLineBytes is the longest batch file line accepted. Default
	// DefaultMaxLineBytes.
	MaxLineBytes int
	// WebhookAllowHTTP and WebhookAllowHosts loosen the rules a webhook
	// URL given to Submit or SubmitBatch is checked against (as the
	// workers check every delivery): plain http, and private or loopback
	// hosts (names, addresses or CIDR ranges, comma-separated). By default
	// a webhook must be https on a public address.
	WebhookAllowHTTP  bool
	WebhookAllowHosts string
	// IgnoreLiveCatalog validates against Models only. By default the live
	// catalog the workers publish (GET /models, internal/catalog) is used
	// instead while it is fresh, with the output limits Models gives.
	IgnoreLiveCatalog bool
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Models == nil {
		c.Models = apiclient.DefaultModels()
	}
	if c.ResultTTL <= 0 {
		c.ResultTTL = job.DefaultResultTTL
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	return c
}

func (c ClientConfig) validate() error {
	if c.Redis == nil {
		return errors.New("enqueue: ClientConfig.Redis is required")
	}
	return nil
}

// Client is the producer API: submit jobs and batches, read them, wait for
// them. It is safe for concurrent use.
type Client struct {
	cfg     ClientConfig
	records *records.Store
	guard   *webhooks.Guard
	catalog *catalog.Resolver
}

// NewClient returns a producer client.
func NewClient(cfg ClientConfig) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	guard, err := webhooks.NewGuard(cfg.WebhookAllowHosts, cfg.WebhookAllowHTTP)
	if err != nil {
		return nil, fmt.Errorf("enqueue: WebhookAllowHosts: %w", err)
	}
	c := &Client{cfg: cfg, records: records.New(cfg.Redis, cfg.ResultTTL), guard: guard}
	if !cfg.IgnoreLiveCatalog {
		c.catalog = catalog.NewResolver(cfg.Redis, cfg.Models)
	}
	return c, nil
}

// CheckWebhook refuses, with an *InvalidRequestError wrapping
// ErrInvalidWebhook, a webhook URL the workers would not call: Submit and
// SubmitBatch check theirs with it.
func (c *Client) CheckWebhook(ctx context.Context, url string) error {
	if err := c.guard.CheckTarget(ctx, url); err != nil {
		return &InvalidRequestError{Err: fmt.Errorf("%w %q: %w", ErrInvalidWebhook, clip(url), err)}
	}
	return nil
}

// ErrInvalidWebhook is wrapped by the *InvalidRequestError of a webhook URL
// that is refused.
var ErrInvalidWebhook = errors.New("webhook")

// Close releases the client. It does not close the Redis client it was given.
func (c *Client) Close() error { return nil }

// Models is the configured model catalog (ClientConfig.Models).
func (c *Client) Models() apiclient.Models { return c.cfg.Models }

// Catalog is the model catalog requests are validated against now: the live
// one when the workers published it and it is fresh, else the configured
// one. Source says which ("live" or "configured"); live, when set, says
// where and when it was read.
func (c *Client) Catalog(ctx context.Context) (models apiclient.Models, source string, live *catalog.Catalog, err error) {
	if c.catalog == nil {
		return c.cfg.Models, catalog.SourceConfigured, nil, nil
	}
	in, err := c.catalog.InUse(ctx)
	return in.Models, in.Source, in.Live, err
}

// models is the catalog to validate against; a Redis error falls back to
// the configured list (the write that follows reports Redis itself).
func (c *Client) models(ctx context.Context) apiclient.Models {
	m, _, _, _ := c.Catalog(ctx)
	return m
}

// SubmitOption changes one Submit call.
type SubmitOption func(*submitOptions)

type submitOptions struct {
	queue         string
	idemKey       string
	deadline      time.Time
	webhook       string
	webhookResult bool
}

// WithQueue puts the job on queue q instead of interactive.
func WithQueue(q string) SubmitOption { return func(o *submitOptions) { o.queue = q } }

// WithIdempotencyKey makes Submit idempotent: a second Submit with the same
// key (within MIMOQ_RESULT_TTL) returns the first job's ID and enqueues
// nothing.
func WithIdempotencyKey(key string) SubmitOption {
	return func(o *submitOptions) { o.idemKey = key }
}

// WithDeadline makes the job expire (final state expired) if it has not
// started by t, instead of being called late; a job running at t
// finishes. A deadline in the past is refused.
func WithDeadline(t time.Time) SubmitOption { return func(o *submitOptions) { o.deadline = t } }

// WithWebhook has url told (POST, signed) when the job ends: job.succeeded,
// job.dead, job.expired. The URL is checked at submit: https on a public
// address unless the client's config allows otherwise.
func WithWebhook(url string) SubmitOption { return func(o *submitOptions) { o.webhook = url } }

// WithWebhookResult makes the job's webhook event carry its result (the
// API's answer); without it, the event has the job's record only.
func WithWebhookResult() SubmitOption { return func(o *submitOptions) { o.webhookResult = true } }

// InvalidRequestError reports a request refused before it was enqueued.
type InvalidRequestError struct{ Err error }

func (e *InvalidRequestError) Error() string { return "invalid request: " + e.Err.Error() }
func (e *InvalidRequestError) Unwrap() error { return e.Err }

// checkQueue refuses a queue that is not one of mimoq's.
func checkQueue(q string) error {
	if !slices.Contains(job.Queues(), q) {
		return &InvalidRequestError{Err: fmt.Errorf("queue %q is not one of %v", q, job.Queues())}
	}
	return nil
}

// Submit validates one chat-completions request body and enqueues it. It
// returns the job ID at once; the result comes later through Get or Wait.
// Like any write over a network, a Submit that returns an error may still
// have enqueued the job: retry with an idempotency key to be sure of one.
func (c *Client) Submit(ctx context.Context, body []byte, opts ...SubmitOption) (string, error) {
	o := submitOptions{queue: QueueInteractive}
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkQueue(o.queue); err != nil {
		return "", err
	}
	if !o.deadline.IsZero() && !o.deadline.After(time.Now()) {
		return "", &InvalidRequestError{Err: fmt.Errorf("deadline %s has passed", o.deadline.UTC().Format(time.RFC3339))}
	}
	req, err := apiclient.ParseRequest(body)
	if err != nil {
		return "", &InvalidRequestError{Err: err}
	}
	if err := c.models(ctx).Validate(req); err != nil {
		return "", &InvalidRequestError{Err: err}
	}
	if o.webhook != "" {
		if err := c.CheckWebhook(ctx, o.webhook); err != nil {
			return "", err
		}
	}
	id := records.NewID()
	if o.idemKey != "" {
		if id, err = c.records.IdempotentID(ctx, o.idemKey, id); err != nil {
			return "", err
		}
	}
	if _, err := c.records.Submit(ctx, records.NewJob{ID: id, Queue: o.queue, Model: req.Model, Body: body,
		SubmittedAt: time.Now(), Deadline: o.deadline, Webhook: o.webhook, WebhookIncludeResult: o.webhookResult}); err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	return id, nil
}

// Get returns the job with its state, result and history.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) {
	return c.records.Get(ctx, id, false)
}

// Wait blocks until job id is final (succeeded, dead or canceled) or ctx
// ends. It listens for the worker's completion notice (pub/sub) and polls
// now and then in case a notice was missed, so it neither busy-polls nor
// hangs.
func (c *Client) Wait(ctx context.Context, id string) (*Job, error) { return c.records.Wait(ctx, id) }

// NewID returns a new job or batch ID: a ULID, unique and sortable by time.
func NewID() string { return records.NewID() }
