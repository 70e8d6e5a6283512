package webhooks

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/enqueue/webhook"
	"github.com/mimoq/mimoq/internal/redistest"
)

var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("a test signing key of 32 bytes!!"))

// receiver is an HTTP endpoint answering with the statuses given, then 200,
// and keeping what it got.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []*http.Request
	bodies   [][]byte
	calls    atomic.Int64
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got, r.bodies = append(r.got, req), append(r.bodies, body)
		status := http.StatusOK
		if n := int(r.calls.Add(1)); n <= len(r.statuses) {
			status = r.statuses[n-1]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte("answer"))
	}))
	t.Cleanup(r.Close)
	return r
}

type senderBundle struct {
	ctx    context.Context
	store  *Store
	sender *Sender
}

func setupSender(t *testing.T, retryFor time.Duration) *senderBundle {
	rdb := redistest.New(t).Client()
	guard, err := NewGuard("127.0.0.1", true)
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(rdb, time.Hour)
	s, err := NewSender(SenderConfig{Store: st, Guard: guard, Secrets: []string{testSecret}, RetryFor: retryFor})
	if err != nil {
		t.Fatal(err)
	}
	return &senderBundle{ctx: context.Background(), store: st, sender: s}
}

func event(id string) Envelope {
	return Envelope{ID: EventID(id), Type: "job.succeeded", CreatedAt: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC),
		Data: []byte(`{"id":"J","state":"succeeded"}`)}
}

// run plays asynq: the delivery's task runs until it needs no retry.
func (b *senderBundle) run(t *testing.T, id string, max int) {
	t.Helper()
	task := asynq.NewTask(TaskType, []byte(`{"delivery_id":"`+id+`"}`))
	for range max {
		err := b.sender.ProcessTask(b.ctx, task)
		var a *again
		if !errors.As(err, &a) {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("delivery %s still retrying after %d tries", id, max)
}

func TestDeliveryRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	b := setupSender(t, time.Hour)
	rcv := newReceiver(t, 500, 500)
	ev := event("job J succeeded")
	for range 2 { // created twice (a redelivered job): one delivery
		if err := b.store.Create(b.ctx, []NewDelivery{{Event: ev, URL: rcv.URL + "/hook", Source: "job"}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	id := DeliveryID(ev.ID, rcv.URL+"/hook")
	b.run(t, id, 10)
	d, err := b.store.Get(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != StateDelivered || len(d.Attempts) != 3 || d.Attempts[0].Status != 500 || d.Attempts[2].Status != 200 {
		t.Fatalf("delivery %+v: want delivered on the third try", d)
	}
	if rcv.calls.Load() != 3 {
		t.Errorf("receiver called %d times", rcv.calls.Load())
	}
	// Every try carries the same webhook-id and a signature that verifies.
	for i, req := range rcv.got {
		if got, err := webhook.Verify(req.Header, rcv.bodies[i], []string{testSecret}, 0, time.Now()); err != nil || got != id {
			t.Errorf("try %d: verify %q, %v", i+1, got, err)
		}
	}
	list, _, err := b.store.List(b.ctx, "", "", 10)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Errorf("list: %+v, %v", list, err)
	}
}

func TestDeliveryGoneEndsTheSubscription(t *testing.T) {
	t.Parallel()
	b := setupSender(t, time.Hour)
	rcv := newReceiver(t, http.StatusGone)
	url := rcv.URL + "/hook"
	if err := b.store.Create(b.ctx, []NewDelivery{{Event: event("a"), URL: url, Source: "fleet"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	b.run(t, DeliveryID(event("a").ID, url), 3)
	// The next event for that endpoint is not sent.
	if err := b.store.Create(b.ctx, []NewDelivery{{Event: event("b"), URL: url, Source: "fleet"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	b.run(t, DeliveryID(event("b").ID, url), 3)
	for _, e := range []string{"a", "b"} {
		d, _ := b.store.Get(b.ctx, DeliveryID(event(e).ID, url))
		if d.State != StateGone {
			t.Errorf("delivery of %s: %s, want gone", e, d.State)
		}
	}
	if rcv.calls.Load() != 1 {
		t.Errorf("receiver called %d times after answering 410, want once", rcv.calls.Load())
	}
	// A resend opens the endpoint again.
	id := DeliveryID(event("b").ID, url)
	if err := b.store.Resend(b.ctx, id); err != nil {
		t.Fatal(err)
	}
	b.run(t, id, 3)
	if d, _ := b.store.Get(b.ctx, id); d.State != StateDelivered {
		t.Errorf("resent delivery: %s", d.State)
	}
}

func TestDeliveryGivenUpIsKept(t *testing.T) {
	t.Parallel()
	b := setupSender(t, time.Millisecond)
	rcv := newReceiver(t, 503, 503, 503)
	url := rcv.URL + "/hook"
	if err := b.store.Create(b.ctx, []NewDelivery{{Event: event("c"), URL: url, Source: "batch"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	id := DeliveryID(event("c").ID, url)
	b.run(t, id, 3)
	d, err := b.store.Get(b.ctx, id)
	if err != nil || d.State != StateFailed || len(d.Attempts) != 1 {
		t.Fatalf("delivery %+v, %v: want failed after its retry period, kept", d, err)
	}
	failed, _, err := b.store.List(b.ctx, StateFailed, "", 10)
	if err != nil || len(failed) != 1 {
		t.Errorf("failed deliveries: %+v, %v", failed, err)
	}
}

func TestDeliveryToAPrivateTargetIsRefusedAtConnect(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client()
	guard, _ := NewGuard("", true) // loopback not allowed
	st := NewStore(rdb, time.Hour)
	s, _ := NewSender(SenderConfig{Store: st, Guard: guard, Secrets: []string{testSecret}})
	rcv := newReceiver(t)
	url := rcv.URL + "/hook"
	ctx := context.Background()
	if err := st.Create(ctx, []NewDelivery{{Event: event("d"), URL: url, Source: "job"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	id := DeliveryID(event("d").ID, url)
	if err := s.ProcessTask(ctx, asynq.NewTask(TaskType, []byte(`{"delivery_id":"`+id+`"}`))); err != nil {
		t.Fatal(err)
	}
	d, _ := st.Get(ctx, id)
	if d.State != StateFailed || rcv.calls.Load() != 0 {
		t.Errorf("delivery to loopback: %s, receiver called %d times; want failed, never called", d.State, rcv.calls.Load())
	}
}
