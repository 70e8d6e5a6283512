package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
)

// TaskType and Queue are the asynq task type and queue of deliveries: a
// queue of their own, served by its own asynq server in each worker, so that
// webhooks never take the API lanes' slots or rate.
const (
	TaskType = "mimoq:webhook"
	Queue    = "webhooks"
)

// The states of a delivery.
const (
	StatePending   = "pending"   // not delivered yet; its task will try (again)
	StateDelivered = "delivered" // the receiver answered 2xx
	StateFailed    = "failed"    // no 2xx within the retry period: kept, re-sendable
	StateGone      = "gone"      // the receiver answered 410: the subscription ended
)

// Key layout, every key in the {webhooks} slot:
//
//	mimoq:{webhooks}:dlv:<id>  hash: one delivery (event, URL, state, attempts)
//	mimoq:{webhooks}:idx       sorted set: delivery IDs by creation (ms)
//	mimoq:{webhooks}:gone      set: fleet endpoint URLs that answered 410
const base = job.KeyPrefix + "{webhooks}:"

func deliveryKey(id string) string { return base + "dlv:" + id }

const (
	indexKey = base + "idx"
	goneKey  = base + "gone"
)

// Envelope is the body of every delivery.
type Envelope struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// Attempt is one try of a delivery.
type Attempt struct {
	At        time.Time `json:"at"`
	Status    int       `json:"status,omitempty"` // the receiver's HTTP status, 0 when it gave none
	LatencyMs int64     `json:"latency_ms"`
	Error     string    `json:"error,omitempty"`
	Answer    string    `json:"answer,omitempty"` // the start of the receiver's answer
}

// Delivery is one event sent to one URL, as `mimoq webhook show` prints it.
type Delivery struct {
	ID        string    `json:"id"`
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	URL       string    `json:"url"`
	Source    string    `json:"source"` // job, batch or fleet: who subscribed
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	NextAt    time.Time `json:"next_at,omitzero"`
	Attempts  []Attempt `json:"attempts,omitempty"`
	Body      string    `json:"body,omitempty"`
}

// LastAnswer sums up the delivery's last attempt: the receiver's status
// and latency, or the error; "" before the first.
func (d *Delivery) LastAnswer() string {
	if len(d.Attempts) == 0 {
		return ""
	}
	a := d.Attempts[len(d.Attempts)-1]
	if a.Status != 0 {
		return fmt.Sprintf("%d in %d ms", a.Status, a.LatencyMs)
	}
	return a.Error
}

// EventID is the ID of the event that reports change (e.g. "job J
// succeeded, generation 0"): the same however often the change is
// reported, so that a redelivered job creates no second event.
func EventID(change string) string { return "evt_" + digest(change) }

// DeliveryID is the ID of event eventID's delivery to url: its
// webhook-id header, the same on every retry.
func DeliveryID(eventID, url string) string { return "msg_" + digest(eventID+"\x00"+url) }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:12])
}

// Store keeps deliveries in Redis and hands their tasks to asynq.
type Store struct {
	rdb redis.UniversalClient
	ttl time.Duration // how long a delivery's record is kept
}

// NewStore returns the store; records are kept for ttl (default
// job.DefaultResultTTL).
func NewStore(rdb redis.UniversalClient, ttl time.Duration) *Store {
	if ttl <= 0 {
		ttl = job.DefaultResultTTL
	}
	return &Store{rdb: rdb, ttl: ttl}
}

// createScript writes a delivery unless it exists. KEYS: delivery, index.
// ARGV: id, created ms, ttl (s), then field/value pairs. Returns 1 when it
// wrote it.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`)

// NewDelivery is an event to send to one URL.
type NewDelivery struct {
	Event  Envelope
	URL    string
	Source string
}

// Create writes deliveries that do not exist yet, then their tasks (a task
// whose ID asynq holds is left alone), so that creating the same events
// again — a job redelivered after its outcome was stored — sends nothing
// twice.
func (s *Store) Create(ctx context.Context, ds []NewDelivery, now time.Time) error {
	if len(ds) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	tasks := make([]asynqwire.Task, 0, len(ds))
	for _, d := range ds {
		body, err := json.Marshal(d.Event)
		if err != nil {
			return fmt.Errorf("webhook event %s: %w", d.Event.ID, err)
		}
		id := DeliveryID(d.Event.ID, d.URL)
		createScript.Eval(ctx, pipe, []string{deliveryKey(id), indexKey}, id, now.UnixMilli(), int64(s.ttl/time.Second),
			"id", id, "event_id", d.Event.ID, "type", d.Event.Type, "url", d.URL, "source", d.Source,
			"state", StatePending, "created_at", now.UTC().Format(time.RFC3339Nano), "body", body)
		tasks = append(tasks, task(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("write webhook deliveries: %w", err)
	}
	if _, err := asynqwire.EnqueueMany(ctx, s.rdb, tasks); err != nil {
		return fmt.Errorf("enqueue webhook deliveries: %w", err)
	}
	return nil
}

func task(id string) asynqwire.Task {
	return asynqwire.Task{Type: TaskType, Payload: []byte(`{"delivery_id":"` + id + `"}`), ID: id, Queue: Queue,
		MaxRetry: 1 << 30, Timeout: 2 * Timeout}
}

// Get reads delivery id.
func (s *Store) Get(ctx context.Context, id string) (*Delivery, error) {
	f, err := s.rdb.HGetAll(ctx, deliveryKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read webhook delivery %s: %w", id, err)
	}
	if len(f) == 0 {
		return nil, fmt.Errorf("webhook delivery %s: %w", id, ErrNotFound)
	}
	return fromFields(f)
}

// ErrNotFound is returned (wrapped) for a delivery that does not exist (or
// whose record expired).
var ErrNotFound = errors.New("not found")

func fromFields(f map[string]string) (*Delivery, error) {
	d := &Delivery{ID: f["id"], EventID: f["event_id"], Type: f["type"], URL: f["url"], Source: f["source"],
		State: f["state"], Body: f["body"]}
	d.CreatedAt, _ = time.Parse(time.RFC3339Nano, f["created_at"])
	if ms, _ := strconv.ParseInt(f["next_ms"], 10, 64); ms > 0 && d.State == StatePending {
		d.NextAt = time.UnixMilli(ms).UTC()
	}
	if a := f["attempts"]; a != "" {
		if err := json.Unmarshal([]byte(a), &d.Attempts); err != nil {
			return nil, fmt.Errorf("webhook delivery %s: bad attempts: %w", d.ID, err)
		}
	}
	return d, nil
}

// List returns deliveries, newest first, page by page (cursor "" starts;
// next "" ends); state, when set, keeps only deliveries in that state.
func (s *Store) List(ctx context.Context, state, cursor string, limit int) ([]*Delivery, string, error) {
	if limit <= 0 {
		limit = 50
	}
	max := "+inf"
	if cursor != "" {
		if _, err := strconv.ParseInt(cursor, 10, 64); err != nil {
			return nil, "", fmt.Errorf("list webhook deliveries: cursor %q is not one this store gave", cursor)
		}
		max = "(" + cursor
	}
	var out []*Delivery
	for len(out) < limit {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, indexKey, &redis.ZRangeBy{Max: max, Min: "-inf", Count: int64(limit)}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
		}
		if len(zs) == 0 {
			return out, "", nil
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(zs))
		for i, z := range zs {
			cmds[i] = pipe.HGetAll(ctx, deliveryKey(z.Member.(string)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", fmt.Errorf("list webhook deliveries: %w", err)
		}
		var gone []any
		for i, c := range cmds {
			f := c.Val()
			if len(f) == 0 {
				gone = append(gone, zs[i].Member)
				continue
			}
			d, err := fromFields(f)
			if err != nil {
				return nil, "", err
			}
			if state == "" || d.State == state {
				d.Body = ""
				out = append(out, d)
			}
		}
		if len(gone) > 0 {
			_ = s.rdb.ZRem(ctx, indexKey, gone...).Err() // expired records leave the index
		}
		last := zs[len(zs)-1]
		max = "(" + strconv.FormatInt(int64(last.Score), 10)
		if len(zs) < limit {
			return out, "", nil
		}
	}
	last := out[len(out)-1]
	return out, strconv.FormatInt(last.CreatedAt.UnixMilli(), 10), nil
}

// attemptScript records a try of a delivery: its outcome appended, its new
// state. KEYS: delivery. ARGV: attempt JSON, new state, next try (ms) or
// ”. A delivery no longer pending (resent, or finished by another try) is
// left alone: returns 0.
var attemptScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if f[1] ~= 'pending' then return 0 end
local a = ARGV[1]
if f[2] and f[2] ~= '' then a = string.sub(f[2], 1, -2) .. ',' .. ARGV[1] .. ']' else a = '[' .. a .. ']' end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'attempts', a, 'next_ms', ARGV[3])
return 1
`)

func (s *Store) recordAttempt(ctx context.Context, id string, a Attempt, state string, next time.Time) error {
	b, _ := json.Marshal(a)
	nextMs := ""
	if !next.IsZero() {
		nextMs = strconv.FormatInt(next.UnixMilli(), 10)
	}
	if err := attemptScript.Run(ctx, s.rdb, []string{deliveryKey(id)}, b, state, nextMs).Err(); err != nil {
		return fmt.Errorf("record webhook attempt %s: %w", id, err)
	}
	return nil
}

// Resend makes a delivery pending again and gives it a task: a failed one
// (its retry period ran out), one whose endpoint answered 410 (which opens
// the endpoint again), or a delivered one sent once more. Its earlier
// attempts stay in its record.
func (s *Store) Resend(ctx context.Context, id string) error {
	d, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, deliveryKey(id), "state", StatePending, "next_ms", "", "resent_ms", time.Now().UnixMilli())
	if d.State == StateGone {
		pipe.SRem(ctx, goneKey, d.URL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("resend webhook delivery %s: %w", id, err)
	}
	if _, err := asynqwire.EnqueueMany(ctx, s.rdb, []asynqwire.Task{task(id)}); err != nil {
		return fmt.Errorf("resend webhook delivery %s: %w", id, err)
	}
	return nil
}

// Gone reports whether url answered 410 to a fleet-wide event (its
// subscription ended until a resend opens it again).
func (s *Store) Gone(ctx context.Context, url string) (bool, error) {
	return s.rdb.SIsMember(ctx, goneKey, url).Result()
}
