package worker

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/records"
	"github.com/mimoq/mimoq/internal/webhooks"
)

// WebhookConfig configures the completion webhooks a worker sends.
type WebhookConfig struct {
	// Endpoints are the fleet-wide subscriptions (MIMOQ_WEBHOOK_URLS).
	Endpoints []webhooks.Endpoint
	// Secrets sign every delivery (MIMOQ_WEBHOOK_SECRET, whsec_…). Without
	// one, deliveries are recorded as failed, never sent unsigned.
	Secrets []string
	// AllowHTTP and AllowHosts loosen the target rules (plain HTTP;
	// private or loopback hosts, by name, address or CIDR range).
	AllowHTTP  bool
	AllowHosts string
	// RetryFor is how long a delivery is retried. Default 24h.
	RetryFor time.Duration
	// Concurrency is the deliveries in flight per worker process, on an
	// asynq server of their own: webhooks never take the API lanes' slots
	// or rate. Default 10.
	Concurrency int
}

// webhookCheckInterval is how often an idle webhook server looks for
// deliveries (and due retries).
const webhookCheckInterval = 100 * time.Millisecond

// initWebhooks builds the webhook store, notifier, sender and server.
func (w *Worker) initWebhooks() error {
	c := w.cfg.Webhooks
	guard, err := webhooks.NewGuard(c.AllowHosts, c.AllowHTTP)
	if err != nil {
		return err
	}
	store := webhooks.NewStore(w.cfg.Redis, w.cfg.ResultTTL)
	w.notifier = webhooks.NewNotifier(store, c.Endpoints)
	if w.sender, err = webhooks.NewSender(webhooks.SenderConfig{Store: store, Guard: guard, Secrets: c.Secrets,
		RetryFor: c.RetryFor}); err != nil {
		return err
	}
	concurrency := c.Concurrency
	if concurrency <= 0 {
		concurrency = 10
	}
	w.srvs = append(w.srvs, asynq.NewServerFromRedisClient(w.cfg.Redis, asynq.Config{
		Concurrency:     concurrency,
		Queues:          map[string]int{webhooks.Queue: 1},
		RetryDelayFunc:  webhooks.RetryDelay,
		ShutdownTimeout: w.cfg.ShutdownTimeout,
		// An idle webhook server asks for work ten times a second, not a
		// hundred as the API lanes' do: a delivery may start up to 100 ms
		// later, and the lanes' Redis keeps its time.
		TaskCheckInterval:        webhookCheckInterval,
		DelayedTaskCheckInterval: max(w.cfg.DelayedTaskCheckInterval, webhookCheckInterval),
		Logger:                   asynqLogger{w.cfg.Logger},
		LogLevel:                 asynq.WarnLevel,
	}))
	w.srvNames = append(w.srvNames, webhooks.Queue)
	return nil
}

// notifyJob tells the subscribers of job id's end, state st: the job's own
// webhook (hasOwn) and the fleet endpoints that want it. It runs before the
// job's task is acknowledged, so that a worker dying in between leaves the
// task, and its next delivery tells them (once: events are identified by
// the change they report).
func (w *Worker) notifyJob(ctx context.Context, id string, hasOwn bool, st job.State) error {
	if !st.Final() || !hasOwn && !w.notifier.WantsJobEvents(st) {
		return nil
	}
	return durably(ctx, func(ctx context.Context) error {
		j, err := w.records.Get(ctx, id, false)
		if errors.Is(err, records.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return w.notifier.Job(ctx, j, time.Now())
	})
}

// notifyBatch tells the subscribers of batch id's end, once it is over.
func (w *Worker) notifyBatch(ctx context.Context, id string) error {
	return durably(ctx, func(ctx context.Context) error {
		b, err := w.records.GetBatch(ctx, id)
		if errors.Is(err, records.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if b.Webhook == "" && !w.notifier.WantsBatchEvents() {
			return w.records.MarkAnnounced(ctx, id)
		}
		if err := w.notifier.Batch(ctx, b, time.Now()); err != nil {
			return err
		}
		return w.records.MarkAnnounced(ctx, id)
	})
}

// batchEndLoop tells the subscribers of every batch that ends, whoever
// ended it (a worker's last job, a cancel, the end of a window), as its end
// is announced. The reconciler's pass tells those whose notice was missed.
func (w *Worker) batchEndLoop(ctx context.Context) {
	sub := w.cfg.Redis.PSubscribe(ctx, records.BatchDoneChannel("*"))
	defer sub.Close()
	// The channel survives reconnects (go-redis subscribes again).
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			id := strings.TrimPrefix(msg.Channel, records.BatchDoneChannel(""))
			if err := w.notifyBatch(ctx, id); err != nil && ctx.Err() == nil {
				w.log.Warn().Err(err).Str("batch_id", id).Msg("webhook of a batch's end (the reconciler retries)")
			}
		}
	}
}

// laneEventLoop tells fleet endpoints when a lane is paused or resumed, by
// watching the lanes' states (every worker does; an event is sent once).
func (w *Worker) laneEventLoop(ctx context.Context) {
	if !w.notifier.WantsLaneEvents() {
		return
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	paused := map[string]lane.State{} // the pause this process saw last, per model
	for {
		if states, err := w.lanes.List(ctx, w.modelList()); err == nil {
			for _, s := range states {
				prev, was := paused[s.Model]
				switch {
				case s.Status == lane.StatusPaused && (!was || !prev.PausedSince.Equal(s.PausedSince)):
					if w.laneEvent(ctx, webhooks.LaneEvent{Model: s.Model, Status: "paused", Reason: s.Reason,
						Since: s.PausedSince}) {
						paused[s.Model] = s
					}
				case s.Status != lane.StatusPaused && was:
					if w.laneEvent(ctx, webhooks.LaneEvent{Model: s.Model, Status: "running", Since: prev.PausedSince}) {
						delete(paused, s.Model)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) laneEvent(ctx context.Context, ev webhooks.LaneEvent) bool {
	if err := w.notifier.Lane(ctx, ev, time.Now()); err != nil {
		w.log.Warn().Err(err).Str("model", ev.Model).Msg("webhook of a lane change")
		return false
	}
	return true
}
