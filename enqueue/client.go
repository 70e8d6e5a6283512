package enqueue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/apiclient"
)

// DefaultMaxRetry is the asynq retry budget of every task. mimoq counts API
// attempts itself (MIMOQ_MAX_ATTEMPTS, in the job record); asynq's counter
// also grows on crash recoveries, shutdown requeues and paused-lane requeues,
// none of which may turn a job into a dead letter. The budget only stops a
// task that crashes its worker forever.
const DefaultMaxRetry = 1000

// ClientConfig configures a producer Client.
type ClientConfig struct {
	// Redis is the client for mimoq's keys and asynq's. Required.
	Redis redis.UniversalClient
	// Models validates requests before they are enqueued. Default
	// apiclient.DefaultModels().
	Models apiclient.Models
	// Queues are the queue names a job may be submitted to. Default
	// interactive and batch.
	Queues []string
	// Prefix starts mimoq's Redis keys. Default DefaultPrefix.
	Prefix string
	// ResultTTL is how long final records (and idempotency keys) are kept.
	// Default 168h.
	ResultTTL time.Duration
	// MaxRetry is the asynq retry budget of each task. Default DefaultMaxRetry.
	MaxRetry int
	// MaxLineBytes is the longest batch file line accepted. Default
	// DefaultMaxLineBytes.
	MaxLineBytes int
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Models == nil {
		c.Models = apiclient.DefaultModels()
	}
	if len(c.Queues) == 0 {
		c.Queues = []string{QueueInteractive, QueueBatch}
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.ResultTTL <= 0 {
		c.ResultTTL = 168 * time.Hour
	}
	if c.MaxRetry <= 0 {
		c.MaxRetry = DefaultMaxRetry
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

// Client is the producer API: submit jobs, read them, wait for them.
type Client struct {
	cfg     ClientConfig
	asynq   *asynq.Client
	records *Records
}

// NewClient returns a producer client. Close it when done.
func NewClient(cfg ClientConfig) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Client{
		cfg:     cfg,
		asynq:   asynq.NewClientFromRedisClient(cfg.Redis),
		records: NewRecords(cfg.Redis, cfg.Prefix, cfg.ResultTTL),
	}, nil
}

// Close releases the client. It does not close the Redis client it was given.
func (c *Client) Close() error { return c.asynq.Close() }

// Records gives access to the job records behind the client.
func (c *Client) Records() *Records { return c.records }

// SubmitOption changes one Submit call.
type SubmitOption func(*submitOptions)

type submitOptions struct {
	queue    string
	idemKey  string
	batchID  string
	customID string
}

// WithQueue puts the job on queue q instead of interactive.
func WithQueue(q string) SubmitOption { return func(o *submitOptions) { o.queue = q } }

// WithIdempotencyKey makes Submit idempotent: a second Submit with the same
// key (within MIMOQ_RESULT_TTL) returns the first job's ID and enqueues
// nothing.
func WithIdempotencyKey(key string) SubmitOption {
	return func(o *submitOptions) { o.idemKey = key }
}

// InvalidRequestError reports a request refused before it was enqueued.
type InvalidRequestError struct{ Err error }

func (e *InvalidRequestError) Error() string { return "invalid request: " + e.Err.Error() }
func (e *InvalidRequestError) Unwrap() error { return e.Err }

// Submit validates one chat-completions request body and enqueues it. It
// returns the job ID at once; the result comes later through Get or Wait.
func (c *Client) Submit(ctx context.Context, body []byte, opts ...SubmitOption) (string, error) {
	o := submitOptions{queue: QueueInteractive}
	for _, opt := range opts {
		opt(&o)
	}
	if !slices.Contains(c.cfg.Queues, o.queue) {
		return "", &InvalidRequestError{Err: fmt.Errorf("queue %q is not one of %v", o.queue, c.cfg.Queues)}
	}
	req, err := apiclient.ParseRequest(body)
	if err != nil {
		return "", &InvalidRequestError{Err: err}
	}
	if err := c.cfg.Models.Validate(req); err != nil {
		return "", &InvalidRequestError{Err: err}
	}
	id := NewID()
	if o.idemKey != "" {
		h := sha256.Sum256([]byte(o.idemKey))
		prev, err := c.cfg.Redis.SetArgs(ctx, c.records.keys.idem(hex.EncodeToString(h[:16])), id,
			redis.SetArgs{Mode: "NX", Get: true, TTL: c.cfg.ResultTTL}).Result()
		switch {
		case err == nil:
			id = prev // the key was taken: the job exists (or is being submitted)
		case !errors.Is(err, redis.Nil):
			return "", fmt.Errorf("submit: idempotency key: %w", err)
		}
	}
	p := &Payload{JobID: id, BatchID: o.batchID, CustomID: o.customID, Queue: o.queue, Model: req.Model,
		Body: json.RawMessage(body), SubmittedAt: time.Now().UTC()}
	if err := c.enqueue(ctx, p); err != nil {
		return "", err
	}
	return id, nil
}

// enqueue writes the job record and the asynq task, in that order, so that a
// worker always finds the record. The task ID is the job ID: a second enqueue
// of the same job is asynq's ErrTaskIDConflict, i.e. "already enqueued".
func (c *Client) enqueue(ctx context.Context, p *Payload) error {
	st, created, err := c.records.Create(ctx, p)
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	if !created && st.Final() {
		return nil
	}
	if err := c.enqueueTask(ctx, p); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("submit: %w", err)
	}
	return nil
}

// enqueueTask writes job p's asynq task; asynq.ErrTaskIDConflict (wrapped)
// means asynq holds a task with the job's ID already.
func (c *Client) enqueueTask(ctx context.Context, p *Payload) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("enqueue job %s: %w", p.JobID, err)
	}
	_, err = c.asynq.EnqueueContext(ctx, asynq.NewTask(TaskType, data),
		asynq.TaskID(p.JobID), asynq.Queue(AsynqQueue(p.Queue, p.Model)), asynq.MaxRetry(c.cfg.MaxRetry))
	if err != nil {
		return fmt.Errorf("enqueue job %s: %w", p.JobID, err)
	}
	return nil
}

// Requeue enqueues the task of an existing job again: a dead letter being
// requeued, whose record the caller has reset to queued. Unlike Submit it
// reports asynq.ErrTaskIDConflict (wrapped), so that the caller can tell a
// task still in asynq (e.g. one finishing its dying delivery) from a new one.
func (c *Client) Requeue(ctx context.Context, p *Payload) error {
	return c.enqueueTask(ctx, p)
}

// Get returns the job with its state, result and history.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) { return c.records.Get(ctx, id) }

// Wait blocks until job id is final (succeeded, dead or canceled) or ctx ends.
// It listens for the worker's completion notice (pub/sub) and polls now and
// then in case a notice was missed, so it neither busy-polls nor hangs.
func (c *Client) Wait(ctx context.Context, id string) (*Job, error) {
	sub := c.cfg.Redis.Subscribe(ctx, DoneChannel(c.cfg.Prefix, id))
	defer sub.Close()
	// Receive the subscription confirmation first, so that a completion
	// published after the Get below cannot be missed.
	if _, err := sub.Receive(ctx); err != nil {
		return nil, fmt.Errorf("wait for job %s: %w", id, err)
	}
	msgs := sub.Channel()
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	for {
		j, err := c.records.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if j.State.Final() {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, fmt.Errorf("wait for job %s: %w", id, ctx.Err())
		case <-msgs:
		case <-poll.C:
		}
	}
}

// NewID returns a new job or batch ID: a ULID, unique and sortable by time.
func NewID() string { return ulid.Make().String() }
