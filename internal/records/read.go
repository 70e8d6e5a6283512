package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// Get reads job id with its result and history; withRequest adds the
// request body.
func (s *Store) Get(ctx context.Context, id string, withRequest bool) (*job.Job, error) {
	pipe := s.rdb.Pipeline()
	h := pipe.HGetAll(ctx, jobKey(id))
	var body *redis.StringCmd
	if withRequest {
		body = pipe.Get(ctx, bodyKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	f := h.Val()
	if len(f) == 0 {
		return nil, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	j := &job.Job{
		ID: f["id"], BatchID: f["batch_id"], CustomID: f["custom_id"], Queue: f["queue"], Model: f["model"],
		State: job.State(f["state"]), Attempts: atoi(f["attempts"]), Requeues: atoi(f["requeues"]),
		StatusCode: atoi(f["status_code"]), RequestID: f["request_id"],
	}
	if j.ID == "" {
		j.ID = id
	}
	j.SubmittedAt, _ = time.Parse(timeLayout, f["submitted_at"])
	j.UpdatedAt, _ = time.Parse(timeLayout, f["updated_at"])
	j.FinishedAt, _ = time.Parse(timeLayout, f["finished_at"])
	j.Webhook, j.WebhookIncludeResult = f["webhook"], f["webhook_result"] == "1"
	if ms := atoi(f["deadline_ms"]); ms > 0 {
		j.Deadline = time.UnixMilli(int64(ms)).UTC()
	}
	if ms := atoi(f["retry_at"]); ms > 0 && j.State == job.StateRetrying {
		j.RetryAt = time.UnixMilli(int64(ms)).UTC()
	}
	if v := f["result"]; v != "" {
		j.Result = json.RawMessage(v)
	}
	j.ServedModel = f["served_model"]
	if pico, _ := strconv.ParseInt(f["cost_pico"], 10, 64); pico > 0 {
		j.Cost = &job.Cost{USD: job.PicoToUSD(pico)}
	}
	if body != nil && body.Val() != "" {
		j.Request = json.RawMessage(body.Val())
		if !json.Valid(j.Request) {
			// Damaged in Redis (bodies are validated at submit): kept as
			// a JSON string, so that the record, its dead letter and its
			// JSON stay readable and nothing is lost.
			j.Request, _ = json.Marshal(body.Val())
		}
	}
	if v := f["usage"]; v != "" {
		j.Usage = new(job.Usage)
		if err := json.Unmarshal([]byte(v), j.Usage); err != nil {
			return nil, fmt.Errorf("job %s: bad usage field: %w", id, err)
		}
	}
	if v := f["error"]; v != "" {
		j.Error = new(job.Error)
		if err := json.Unmarshal([]byte(v), j.Error); err != nil {
			return nil, fmt.Errorf("job %s: bad error field: %w", id, err)
		}
		if b := f["error_body"]; b != "" && json.Valid([]byte(b)) {
			j.Error.Body = json.RawMessage(b)
		}
	}
	if v := f["history"]; v != "" {
		if err := json.Unmarshal([]byte(v), &j.History); err != nil {
			return nil, fmt.Errorf("job %s: bad history: %w", id, err)
		}
	}
	return j, nil
}

// State reads only the state of job id.
func (s *Store) State(ctx context.Context, id string) (job.State, error) {
	st, err := s.rdb.HGet(ctx, jobKey(id), "state").Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("get job %s: %w", id, err)
	}
	return job.State(st), nil
}

// GetBatch reads batch id's record and counts.
func (s *Store) GetBatch(ctx context.Context, id string) (*job.Batch, error) {
	f, err := s.rdb.HGetAll(ctx, batchKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("get batch %s: %w", id, err)
	}
	if len(f) == 0 {
		return nil, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	b := batchFromFields(f, time.Now())
	if !b.Over() {
		if b.Backlog, err = s.BatchBacklog(ctx, id); err != nil {
			return nil, fmt.Errorf("get batch %s: %w", id, err)
		}
	}
	return b, nil
}

// batchCreatedMs is the creation time of batch id, part of its job IDs.
func (s *Store) batchCreatedMs(ctx context.Context, id string) (int64, int, error) {
	h, err := s.rdb.HMGet(ctx, batchKey(id), "created_ms", "total").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("get batch %s: %w", id, err)
	}
	if h[0] == nil {
		return 0, 0, fmt.Errorf("batch %s: %w", id, ErrNotFound)
	}
	return int64(atoi(toStr(h[0]))), atoi(toStr(h[1])), nil
}

func batchFromFields(f map[string]string, now time.Time) *job.Batch {
	num := func(k string) int64 { n, _ := strconv.ParseInt(f[k], 10, 64); return n }
	b := &job.Batch{
		ID: f["id"], State: job.BatchState(f["state"]), Queue: f["queue"], Source: f["source"],
		Total: atoi(f["total"]), Enqueued: atoi(f["enqueued"]), Succeeded: atoi(f["succeeded"]),
		Dead: atoi(f["dead"]), Canceled: atoi(f["canceled"]), Expired: atoi(f["expired"]),
		Usage: job.Usage{PromptTokens: num("prompt_tokens"), CachedTokens: num("cached_tokens"),
			CompletionTokens: num("completion_tokens"), ReasoningTokens: num("reasoning_tokens"),
			TotalTokens: num("total_tokens")},
	}
	b.CreatedAt, _ = time.Parse(timeLayout, f["created_at"])
	b.SubmittedAt, _ = time.Parse(timeLayout, f["submitted_at"])
	b.CanceledAt, _ = time.Parse(timeLayout, f["canceled_at"])
	b.ExpiresAt, _ = time.Parse(timeLayout, f["expires_at"])
	b.ExpiredAt, _ = time.Parse(timeLayout, f["expired_at"])
	b.Webhook = f["webhook"]
	b.Weight, b.Tenant = atoi(f["weight"]), f["tenant"]
	b.FinishedAt, _ = time.Parse(timeLayout, f["finished_at"])
	finished := b.Succeeded + b.Dead + b.Canceled + b.Expired
	b.Pending = max(b.Total-finished, 0)
	start := b.SubmittedAt
	if start.IsZero() {
		start = b.CreatedAt
	}
	end := now
	if !b.FinishedAt.IsZero() {
		end = b.FinishedAt
	}
	if el := end.Sub(start).Seconds(); el > 0 && finished > 0 {
		b.Rate = float64(finished) / el
		if b.Pending > 0 {
			b.ETA = now.Add(time.Duration(float64(b.Pending) / b.Rate * float64(time.Second))).UTC()
		}
	}
	return b
}

// ListBatches returns batches, newest first, page by page (cursor "" starts;
// next "" ends). Batches whose records expired are left out (the reconciler
// drops them from the index).
func (s *Store) ListBatches(ctx context.Context, cursor string, limit int) ([]*job.Batch, string, error) {
	if limit <= 0 {
		limit = 50
	}
	maxScore, afterID := "+inf", ""
	if cursor != "" {
		ms, id, ok := strings.Cut(cursor, "/")
		if _, err := strconv.ParseInt(ms, 10, 64); !ok || err != nil {
			return nil, "", fmt.Errorf("list batches: cursor %q: %w", cursor, ErrBadCursor)
		}
		maxScore, afterID = ms, id
	}
	var out []*job.Batch
	for {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, batchesKey, &redis.ZRangeBy{
			Max: maxScore, Min: "-inf", Count: int64(limit + 64)}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list batches: %w", err)
		}
		// Members of equal score come in reverse lexical order: skip up to
		// and including the cursor's.
		if afterID != "" {
			ms, _ := strconv.ParseFloat(maxScore, 64)
			i := 0
			for i < len(zs) && zs[i].Score == ms && zs[i].Member.(string) >= afterID {
				i++
			}
			zs = zs[i:]
		}
		full := len(zs) >= limit-len(out)
		if full {
			zs = zs[:limit-len(out)]
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(zs))
		for i, z := range zs {
			cmds[i] = pipe.HGetAll(ctx, batchKey(z.Member.(string)))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, "", fmt.Errorf("list batches: %w", err)
		}
		now := time.Now()
		for _, cmd := range cmds {
			if f := cmd.Val(); len(f) > 0 {
				out = append(out, batchFromFields(f, now))
			}
		}
		if len(zs) == 0 || !full {
			return out, "", nil
		}
		last := zs[len(zs)-1]
		next := fmt.Sprintf("%d/%s", int64(last.Score), last.Member)
		if len(out) >= limit {
			return out, next, nil
		}
		maxScore, afterID = strconv.FormatInt(int64(last.Score), 10), last.Member.(string)
	}
}

// resultFields are the record fields a result line is built from, in this
// order.
var resultFields = []string{"state", "custom_id", "result", "status_code", "request_id", "error", "attempts",
	"error_body", "never_enqueued"}

// Results streams one result line per request of batch id, in input order,
// to fn: the final ones (all of them once the batch is over), or with
// errorsOnly only those that did not succeed.
func (s *Store) Results(ctx context.Context, id string, errorsOnly bool, fn func(*job.ResultLine) error) error {
	createdMs, total, err := s.batchCreatedMs(ctx, id)
	if err != nil {
		return err
	}
	// A line without a record was either never enqueued (an interrupted
	// submit: not final, left out) or final and expired.
	written, err := s.rdb.Get(ctx, batchLinesKey(id)).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("batch %s results: %w", id, err)
	}
	for start := 0; start < total; start += 500 {
		n := min(500, total-start)
		pipe := s.rdb.Pipeline()
		ids := make([]string, n)
		cmds := make([]*redis.SliceCmd, n)
		served := make([]*redis.StringCmd, n) // issue 12: the model that answered, when another
		for i := range n {
			ids[i] = batchJobID(id, createdMs, start+i)
			cmds[i] = pipe.HMGet(ctx, jobKey(ids[i]), resultFields...)
			served[i] = pipe.HGet(ctx, jobKey(ids[i]), "served_model")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("batch %s results: %w", id, err)
		}
		for i, cmd := range cmds {
			v := cmd.Val()
			if v[0] == nil && !bitSet(written, start+i) {
				continue
			}
			line := resultLine(ids[i], v)
			if line == nil || (errorsOnly && line.Error == nil) {
				continue
			}
			if line.Response != nil {
				line.ServedModel = served[i].Val()
			}
			if err := fn(line); err != nil {
				return err
			}
		}
	}
	return nil
}

// bitSet reports whether bit i of a Redis bitmap is set (bit 0 is the
// high bit of the first byte).
func bitSet(bitmap []byte, i int) bool {
	return i/8 < len(bitmap) && bitmap[i/8]&(0x80>>(i%8)) != 0
}

// resultLine builds the output line of one job from its record fields, or
// nil when the job is not final.
func resultLine(id string, v []any) *job.ResultLine {
	str := func(i int) string { return toStr(v[i]) }
	if v[0] == nil {
		return &job.ResultLine{ID: id, Error: &job.ResultError{Code: "result_expired",
			Message: "the job's record expired (MIMOQ_RESULT_TTL)"}}
	}
	l := &job.ResultLine{ID: id, CustomID: str(1)}
	attempts := atoi(str(6))
	switch job.State(str(0)) {
	case job.StateSucceeded:
		l.Response = &job.ResultResponse{StatusCode: atoi(str(3)), RequestID: str(4), Body: json.RawMessage(str(2))}
	case job.StateDead:
		var je job.Error
		_ = json.Unmarshal([]byte(str(5)), &je)
		l.Error = &job.ResultError{Code: je.Code, Message: je.Message, Class: je.Class, Attempts: attempts}
		if je.StatusCode != 0 {
			l.Response = &job.ResultResponse{StatusCode: je.StatusCode, RequestID: je.RequestID}
			if b := str(7); b != "" {
				l.Response.Body = json.RawMessage(b)
			}
		}
	case job.StateCanceled:
		msg := "the batch was canceled before this request ran"
		if str(8) != "" {
			msg = "the batch was canceled before this line was enqueued"
		}
		l.Error = &job.ResultError{Code: "canceled", Message: msg, Attempts: attempts}
	case job.StateExpired:
		// OpenAI's code for a request its batch's window left unrun.
		l.Error = &job.ResultError{Code: "batch_expired",
			Message: "the batch's completion window ended before this request ran", Attempts: attempts}
	default:
		return nil
	}
	return l
}

// Wait blocks until job id is final or ctx ends. It listens for the job's
// completion notice and polls now and then in case a notice was missed, so
// it neither busy-polls nor hangs. (A batch's jobs have no notice of their
// own, only the batch's: a waiter on one of them polls.)
func (s *Store) Wait(ctx context.Context, id string) (*job.Job, error) {
	return waitFor(ctx, s.rdb, DoneChannel(id), "job "+id, func() (*job.Job, bool, error) {
		j, err := s.Get(ctx, id, false)
		if err != nil {
			return nil, false, err
		}
		return j, j.State.Final(), nil
	})
}

// WaitBatch blocks until every job of batch id is final, or ctx ends.
func (s *Store) WaitBatch(ctx context.Context, id string) (*job.Batch, error) {
	return waitFor(ctx, s.rdb, BatchDoneChannel(id), "batch "+id, func() (*job.Batch, bool, error) {
		b, err := s.GetBatch(ctx, id)
		if err != nil {
			return nil, false, err
		}
		return b, b.Over(), nil
	})
}

// waitPoll is how often a waiter reads the record in case a notice was
// missed.
const waitPoll = 2 * time.Second

func waitFor[T any](ctx context.Context, rdb redis.UniversalClient, channel, what string, read func() (T, bool, error)) (T, error) {
	var zero T
	sub := rdb.Subscribe(ctx, channel)
	defer sub.Close()
	// The subscription is confirmed before the first read, so that a
	// notice published after it cannot be missed.
	if _, err := sub.Receive(ctx); err != nil {
		return zero, fmt.Errorf("wait for %s: %w", what, err)
	}
	msgs := sub.Channel()
	poll := time.NewTicker(waitPoll)
	defer poll.Stop()
	for {
		v, done, err := read()
		if err != nil {
			return zero, err
		}
		if done {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-msgs:
		case <-poll.C:
		}
	}
}
