package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mimoq/mimoq/internal/job"
)

// Notifier turns mimoq's state changes into deliveries: one per subscriber
// (the job's or batch's own URL, and every fleet endpoint that wants the
// event). Events are identified by the change they report, so reporting a
// change again (a redelivered job, several workers seeing one batch end)
// sends nothing twice.
type Notifier struct {
	store *Store
	fleet []Endpoint
}

// NewNotifier returns a notifier writing to store for the fleet's
// endpoints (MIMOQ_WEBHOOK_URLS).
func NewNotifier(store *Store, fleet []Endpoint) *Notifier {
	return &Notifier{store: store, fleet: fleet}
}

// WantsJobEvents reports whether a fleet endpoint subscribes to events of
// jobs in state st: without one, only jobs with their own subscription
// need to be told.
func (n *Notifier) WantsJobEvents(st job.State) bool {
	return n.fleetWants(JobEventType(st))
}

// WantsBatchEvents reports whether a fleet endpoint subscribes to any
// batch event.
func (n *Notifier) WantsBatchEvents() bool {
	for _, t := range []string{"batch.completed", "batch.failed", "batch.cancelled", "batch.expired"} {
		if n.fleetWants(t) {
			return true
		}
	}
	return false
}

// WantsLaneEvents reports whether a fleet endpoint subscribes to lane
// events.
func (n *Notifier) WantsLaneEvents() bool {
	return n.fleetWants("lane.paused") || n.fleetWants("lane.resumed")
}

func (n *Notifier) fleetWants(event string) bool {
	for _, e := range n.fleet {
		if e.Wants(event) {
			return true
		}
	}
	return false
}

// JobEventType is the event of a job that ended in st.
func JobEventType(st job.State) string { return "job." + string(st) }

// BatchEventType is the event of a batch that ended as b is: completed, or
// failed when no job of it succeeded and some died, cancelled (OpenAI's
// spelling), expired.
func BatchEventType(b *job.Batch) string {
	switch b.State {
	case job.BatchCanceled:
		return "batch.cancelled"
	case job.BatchExpired:
		return "batch.expired"
	}
	if b.Succeeded == 0 && b.Dead > 0 {
		return "batch.failed"
	}
	return "batch.completed"
}

// Job reports that job j ended (j is final). The event carries the job as
// the HTTP API shows it, without its request, and without its result
// unless its subscription asked for it.
func (n *Notifier) Job(ctx context.Context, j *job.Job, now time.Time) error {
	if !j.State.Final() {
		return nil
	}
	typ := JobEventType(j.State)
	data := *j
	data.Request = nil
	if !j.WebhookIncludeResult {
		data.Result = nil
	}
	change := fmt.Sprintf("job %s %s %s", j.ID, j.State, j.FinishedAt.UTC().Format(time.RFC3339Nano))
	return n.send(ctx, typ, change, &data, j.Webhook, "job", now)
}

// Batch reports that batch b ended (b is over).
func (n *Notifier) Batch(ctx context.Context, b *job.Batch, now time.Time) error {
	if !b.Over() {
		return nil
	}
	typ := BatchEventType(b)
	change := fmt.Sprintf("batch %s %s %s", b.ID, b.State, b.FinishedAt.UTC().Format(time.RFC3339Nano))
	return n.send(ctx, typ, change, b, b.Webhook, "batch", now)
}

// LaneEvent is the data of a lane.paused or lane.resumed event.
type LaneEvent struct {
	Model  string    `json:"model"`
	Status string    `json:"status"` // paused, running
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"paused_since,omitzero"`
}

// Lane reports that a model's lane was paused (since) or resumed after a
// pause that began at since: fleet endpoints only.
func (n *Notifier) Lane(ctx context.Context, ev LaneEvent, now time.Time) error {
	typ := "lane.resumed"
	if ev.Status == "paused" {
		typ = "lane.paused"
	}
	change := fmt.Sprintf("lane %s %s %s", ev.Model, typ, ev.Since.UTC().Format(time.RFC3339Nano))
	return n.send(ctx, typ, change, ev, "", "", now)
}

// send writes event typ (reporting change, with data) for the subscriber
// own (of kind source, "" for none) and the fleet endpoints that want it.
func (n *Notifier) send(ctx context.Context, typ, change string, data any, own, source string, now time.Time) error {
	var ds []NewDelivery
	var ev Envelope
	for _, url := range n.targets(typ, own) {
		if ev.ID == "" {
			raw, err := json.Marshal(data)
			if err != nil {
				return fmt.Errorf("webhook event %s: %w", typ, err)
			}
			ev = Envelope{ID: EventID(change), Type: typ, CreatedAt: now.UTC(), Data: raw}
		}
		src := "fleet"
		if url == own {
			src = source
		}
		ds = append(ds, NewDelivery{Event: ev, URL: url, Source: src})
	}
	return n.store.Create(ctx, ds, now)
}

// targets are the URLs that get event typ: own, then the fleet endpoints
// that want it, each once.
func (n *Notifier) targets(typ, own string) []string {
	var out []string
	if own != "" {
		out = append(out, own)
	}
	for _, e := range n.fleet {
		if e.Wants(typ) && e.URL != own {
			out = append(out, e.URL)
		}
	}
	return out
}
