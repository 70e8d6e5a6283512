package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue/webhook"
)

// DefaultRetryFor is how long a delivery is retried before it is given up
// (kept as failed, re-sendable).
const DefaultRetryFor = 24 * time.Hour

// SenderConfig configures a Sender.
type SenderConfig struct {
	// Store holds the deliveries. Required.
	Store *Store
	// Guard decides which targets are called. Required.
	Guard *Guard
	// Secrets sign every delivery ("whsec_…"): every secret signs, so that
	// a receiver holding any of them verifies during a rotation.
	Secrets []string
	// RetryFor is how long a delivery is retried. Default DefaultRetryFor.
	RetryFor time.Duration
}

// Sender delivers webhooks: the handler of the webhooks queue's tasks.
type Sender struct {
	store    *Store
	client   *http.Client
	keys     [][]byte
	retryFor time.Duration
	now      func() time.Time
}

// NewSender checks cfg and returns a sender.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if cfg.Store == nil || cfg.Guard == nil {
		return nil, errors.New("webhooks: SenderConfig.Store and Guard are required")
	}
	s := &Sender{store: cfg.Store, client: cfg.Guard.Client(), retryFor: cfg.RetryFor, now: time.Now}
	if s.retryFor <= 0 {
		s.retryFor = DefaultRetryFor
	}
	for i, sec := range cfg.Secrets {
		k, err := webhook.Key(sec)
		if err != nil {
			return nil, fmt.Errorf("MIMOQ_WEBHOOK_SECRET entry %d is not whsec_ followed by base64", i+1)
		}
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// again asks asynq to run a delivery's task again after delay.
type again struct{ delay time.Duration }

func (a *again) Error() string { return fmt.Sprintf("webhook delivery retried in %s", a.delay) }

// RetryDelay is the webhooks server's asynq RetryDelayFunc.
func RetryDelay(_ int, err error, _ *asynq.Task) time.Duration {
	var a *again
	if errors.As(err, &a) {
		return a.delay
	}
	return 5 * time.Second // storage trouble: try again soon
}

// backoff is the wait after attempt n (1-based): 1 s doubling to an hour,
// with up to a quarter of jitter.
func backoff(n int) time.Duration {
	d := time.Hour
	if n < 12 {
		d = min(time.Second<<(n-1), time.Hour)
	}
	return d + time.Duration(rand.Float64()*float64(d)/4)
}

// ProcessTask sends one delivery.
func (s *Sender) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p struct {
		ID string `json:"delivery_id"`
	}
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.ID == "" {
		return fmt.Errorf("decode webhook task: %v: %w", err, asynq.SkipRetry)
	}
	d, err := s.store.Get(ctx, p.ID)
	if errors.Is(err, ErrNotFound) {
		return nil // expired
	}
	if err != nil {
		return err
	}
	if d.State != StatePending {
		return nil
	}
	now := s.now()
	if d.Source == "fleet" {
		if gone, err := s.store.Gone(ctx, d.URL); err != nil {
			return err
		} else if gone {
			return s.store.recordAttempt(ctx, d.ID, Attempt{At: now, Error: "the endpoint answered 410 Gone to an earlier event"}, StateGone, time.Time{})
		}
	}
	if len(s.keys) == 0 {
		return s.store.recordAttempt(ctx, d.ID, Attempt{At: now, Error: "no MIMOQ_WEBHOOK_SECRET on the worker: deliveries are never sent unsigned"},
			StateFailed, time.Time{})
	}
	a := s.send(ctx, d, now)
	switch {
	case a.Status >= 200 && a.Status < 300:
		return s.store.recordAttempt(ctx, d.ID, a.Attempt, StateDelivered, time.Time{})
	case a.Status == http.StatusGone:
		if d.Source == "fleet" {
			if err := s.store.rdb.SAdd(ctx, goneKey, d.URL).Err(); err != nil {
				return err
			}
		}
		return s.store.recordAttempt(ctx, d.ID, a.Attempt, StateGone, time.Time{})
	case errors.Is(a.err, ErrBlockedTarget):
		return s.store.recordAttempt(ctx, d.ID, a.Attempt, StateFailed, time.Time{})
	}
	next := now.Add(backoff(len(d.Attempts) + 1))
	if next.Sub(d.CreatedAt) > s.retryFor {
		return s.store.recordAttempt(ctx, d.ID, a.Attempt, StateFailed, time.Time{})
	}
	if err := s.store.recordAttempt(ctx, d.ID, a.Attempt, StatePending, next); err != nil {
		return err
	}
	return &again{delay: time.Until(next)}
}

// attempt is an Attempt with the error it came from.
type attempt struct {
	Attempt
	err error
}

// send makes one try of delivery d.
func (s *Sender) send(ctx context.Context, d *Delivery, now time.Time) attempt {
	body := []byte(d.Body)
	sigs := make([]string, len(s.keys))
	for i, k := range s.keys {
		sigs[i] = webhook.Sign(k, d.ID, now, body)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var a attempt
	a.At = now.UTC()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		a.Error, a.err = err.Error(), err
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mimoq-webhooks")
	req.Header.Set(webhook.HeaderID, d.ID)
	req.Header.Set(webhook.HeaderTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(webhook.HeaderSignature, strings.Join(sigs, " "))
	start := time.Now()
	resp, err := s.client.Do(req)
	a.LatencyMs = time.Since(start).Milliseconds()
	if err != nil {
		a.Error, a.err = err.Error(), err
		return a
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	a.Status, a.Answer = resp.StatusCode, string(answer)
	if len(a.Answer) > 300 {
		a.Answer = a.Answer[:300]
	}
	return a
}
