package enqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned when a job (or batch) record does not exist: it was
// never submitted, or its result has expired after MIMOQ_RESULT_TTL.
var ErrNotFound = errors.New("not found")

// Records reads and changes job and batch records in Redis. Every change of a
// job's state is one Lua script, so that a final state, once written, is never
// overwritten: a redelivered task finds it and does not call the API again.
type Records struct {
	rdb       redis.UniversalClient
	keys      keys
	resultTTL time.Duration
}

// NewRecords returns the record store. prefix defaults to DefaultPrefix and
// resultTTL (how long final records are kept) to 168h.
func NewRecords(rdb redis.UniversalClient, prefix string, resultTTL time.Duration) *Records {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if resultTTL <= 0 {
		resultTTL = 168 * time.Hour
	}
	return &Records{rdb: rdb, keys: keys{prefix: prefix}, resultTTL: resultTTL}
}

// Prefix is the key prefix of this store.
func (r *Records) Prefix() string { return r.keys.prefix }

const timeLayout = time.RFC3339Nano

// createScript creates a job record unless it exists; it returns the state of
// the record that is there afterwards.
var createScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st then return st end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 'created'
`)

// Create writes the record of a new job in state queued. When a record with
// that ID exists already it is left alone and its state returned; a new
// record returns state "" and created=true.
func (r *Records) Create(ctx context.Context, p *Payload) (state State, created bool, err error) {
	res, err := createScript.Run(ctx, r.rdb, []string{r.keys.job(p.JobID)}, payloadFields(p, StateQueued)...).Text()
	if err != nil {
		return "", false, fmt.Errorf("create job %s: %w", p.JobID, err)
	}
	if res == "created" {
		return StateQueued, true, nil
	}
	return State(res), false, nil
}

func payloadFields(p *Payload, st State) []any {
	return []any{
		"id", p.JobID, "batch_id", p.BatchID, "custom_id", p.CustomID,
		"queue", p.Queue, "model", p.Model, "state", string(st), "attempts", 0,
		"submitted_at", p.SubmittedAt.UTC().Format(timeLayout),
	}
}

// beginScript marks a job running unless it is final. A record still marked
// running from an earlier delivery means that delivery was interrupted (the
// worker crashed or was stopped): it is noted in the history and counted in
// "interrupts", but not as an attempt. The same call run twice (a reply lost
// on the network, the command sent again by the client) is no interruption.
// KEYS: job, history. ARGV: now, worker, then the payload fields used to
// recreate a missing record.
var beginScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  st = 'queued'
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local interrupts = tonumber(redis.call('HGET', KEYS[1], 'interrupts') or '0')
local retryAt = redis.call('HGET', KEYS[1], 'retry_at') or '0'
if st == 'succeeded' or st == 'dead' or st == 'canceled' then
  return {st, attempts, 0, interrupts, retryAt}
end
local interrupted = 0
local since = redis.call('HGET', KEYS[1], 'running_since')
if since == ARGV[1] and redis.call('HGET', KEYS[1], 'running_worker') == ARGV[2] then
  -- This very call again: its reply was lost and the client sent it anew.
  return {'running', attempts, 0, interrupts, retryAt}
end
if since then
  interrupted = 1
  interrupts = redis.call('HINCRBY', KEYS[1], 'interrupts', 1)
  local w = redis.call('HGET', KEYS[1], 'running_worker') or ''
  redis.call('RPUSH', KEYS[2], cjson.encode({attempt = attempts + 1, start = since, reason = 'interrupted', worker = w}))
end
redis.call('HSET', KEYS[1], 'state', 'running', 'running_since', ARGV[1], 'running_worker', ARGV[2], 'updated_at', ARGV[1])
return {'running', attempts, interrupted, interrupts, retryAt}
`)

// Begin is what a worker learns when it takes a job.
type Begin struct {
	State       State // running, or the final state the job already has
	Attempts    int   // attempts already made (counted ones)
	Interrupted bool  // an earlier delivery of this job was interrupted mid-flight
	Interrupts  int   // how many deliveries were interrupted so far
	// RetryAt is when the job's retry is due (zero when none is pending).
	// asynq keeps retry times in whole seconds and may hand a retry over
	// up to a second early; the worker waits for RetryAt itself.
	RetryAt time.Time
}

// Begin marks the job running for worker, unless it is final already.
func (r *Records) Begin(ctx context.Context, p *Payload, worker string, now time.Time) (Begin, error) {
	argv := append([]any{now.UTC().Format(timeLayout), worker}, payloadFields(p, StateQueued)...)
	vals, err := beginScript.Run(ctx, r.rdb, []string{r.keys.job(p.JobID), r.keys.history(p.JobID)}, argv...).Slice()
	if err != nil {
		return Begin{}, fmt.Errorf("begin job %s: %w", p.JobID, err)
	}
	if len(vals) != 5 {
		return Begin{}, fmt.Errorf("begin job %s: unexpected reply %v", p.JobID, vals)
	}
	st, _ := vals[0].(string)
	b := Begin{State: State(st), Attempts: toInt(vals[1]), Interrupted: toInt(vals[2]) == 1, Interrupts: toInt(vals[3])}
	if ms := toInt(vals[4]); ms > 0 {
		b.RetryAt = time.UnixMilli(int64(ms))
	}
	return b, nil
}

// finishScript records the outcome of an attempt unless the job is final.
// A non-final outcome of attempt n when n attempts are counted already is
// the same write run twice (its reply was lost on the network and the
// client sent it again): it changes nothing, so that no attempt is counted
// twice. KEYS: job, history. ARGV: state, counted (0, or the attempt's
// number n, or + for a count without a number), history entry or "", ttl
// seconds for final states, now, then field/value pairs.
var finishScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'succeeded' or st == 'dead' or st == 'canceled' then
  return {st, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), 0}
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local n = tonumber(ARGV[2])
if n and n > 0 and attempts >= n and ARGV[1] ~= 'succeeded' and ARGV[1] ~= 'dead' and ARGV[1] ~= 'canceled' then
  return {st, attempts, 0}
end
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'running_since', 'running_worker')
if ARGV[2] ~= '0' then attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[3]) end
if ARGV[1] == 'succeeded' or ARGV[1] == 'dead' or ARGV[1] == 'canceled' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[5])
  local ttl = tonumber(ARGV[4])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end
return {ARGV[1], attempts, 1}
`)

// Outcome is what Finish writes about one attempt.
type Outcome struct {
	State   State    // the job's new state
	Counted bool     // the attempt counts against the attempt budget
	Entry   *Attempt // history entry, nil for none
	// Result fields, written when set.
	Result     json.RawMessage
	StatusCode int
	RequestID  string
	Usage      *Usage
	Error      *JobError
	// ErrorBody is the API's error response body (JSON), kept for results.
	ErrorBody json.RawMessage
	// RetryAt is when the next attempt is due, for a retrying job.
	RetryAt time.Time
}

// Finished reports what Finish found or did.
type Finished struct {
	State    State // the state the job has now
	Attempts int
	Changed  bool // false when nothing was written: the job was final already, or the write was made before
}

// Finish records the outcome of an attempt. A job that is final already is
// left as it is (Changed false): final states are absorbing.
func (r *Records) Finish(ctx context.Context, id string, o Outcome, now time.Time) (Finished, error) {
	argv, err := finishArgs(o, r.resultTTL, now)
	if err != nil {
		return Finished{}, fmt.Errorf("finish job %s: %w", id, err)
	}
	return finished(id, finishScript.Run(ctx, r.rdb, []string{r.keys.job(id), r.keys.history(id)}, argv...))
}

// FinishAnnounce writes a final outcome and, in the same round trip,
// counts it in the job's batch and publishes it, as Announce does. The
// count stands only when the job really ends in o.State: when the job had
// another final state already (it was finished by another delivery, whose
// worker may not have counted it), the count is undone and the caller must
// settle the state the job has. It reports whether the count ended the
// batch; the caller then calls PublishBatchDone.
func (r *Records) FinishAnnounce(ctx context.Context, batchID, id string, o Outcome, now time.Time) (Finished, bool, error) {
	if !o.State.Final() {
		return Finished{}, false, fmt.Errorf("finish job %s: %s is not a final state", id, o.State)
	}
	argv, err := finishArgs(o, r.resultTTL, now)
	if err != nil {
		return Finished{}, false, fmt.Errorf("finish job %s: %w", id, err)
	}
	// What the batch count did, over both tries: when Redis had lost one
	// script but not the other, the count may have run in the first.
	n := int64(0)
	for try := 0; ; try++ {
		pipe := r.rdb.Pipeline()
		fin := finishScript.EvalSha(ctx, pipe, []string{r.keys.job(id), r.keys.history(id)}, argv...)
		count := r.queueAnnounce(ctx, pipe, batchID, id, o.State, o.Usage, now)
		_, err := pipe.Exec(ctx)
		if count != nil {
			if v, cerr := count.Int64(); cerr == nil {
				n = max(n, v)
			}
		}
		if err != nil && try == 0 && isNoScript(err) {
			if err := r.loadScripts(ctx, finishScript, batchFinishScript); err != nil {
				return Finished{}, false, fmt.Errorf("finish job %s: %w", id, err)
			}
			continue
		}
		if err != nil {
			return Finished{}, false, fmt.Errorf("finish job %s: %w", id, err)
		}
		f, err := finished(id, fin)
		if err != nil || count == nil {
			return f, false, err
		}
		if f.State != o.State {
			if n > 0 {
				if err := r.uncount(ctx, batchID, id, o.State, o.Usage); err != nil {
					return f, false, err
				}
			}
			return f, false, nil
		}
		return f, n == batchEnded, nil
	}
}

// finishArgs is finishScript's ARGV for outcome o.
func finishArgs(o Outcome, resultTTL time.Duration, now time.Time) ([]any, error) {
	entry := ""
	if o.Entry != nil {
		b, err := json.Marshal(o.Entry)
		if err != nil {
			return nil, err
		}
		entry = string(b)
	}
	ttl := int64(0)
	if o.State.Final() {
		ttl = int64(resultTTL / time.Second)
	}
	counted := "0"
	switch {
	case o.Counted && o.Entry != nil && o.Entry.Attempt > 0:
		counted = strconv.Itoa(o.Entry.Attempt)
	case o.Counted:
		counted = "+"
	}
	argv := []any{string(o.State), counted, entry, ttl, now.UTC().Format(timeLayout)}
	if o.Result != nil {
		argv = append(argv, "result", string(o.Result))
	}
	if o.StatusCode != 0 {
		argv = append(argv, "status_code", o.StatusCode)
	}
	if o.RequestID != "" {
		argv = append(argv, "request_id", o.RequestID)
	}
	if o.Usage != nil {
		b, _ := json.Marshal(o.Usage)
		argv = append(argv, "usage", string(b))
	}
	if o.Error != nil {
		b, _ := json.Marshal(o.Error)
		argv = append(argv, "error", string(b))
	}
	if len(o.ErrorBody) > 0 {
		argv = append(argv, "error_body", string(o.ErrorBody))
	}
	if !o.RetryAt.IsZero() {
		argv = append(argv, "retry_at", o.RetryAt.UnixMilli())
	}
	return argv, nil
}

// finished reads finishScript's reply.
func finished(id string, cmd *redis.Cmd) (Finished, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return Finished{}, fmt.Errorf("finish job %s: %w", id, err)
	}
	if len(vals) != 3 {
		return Finished{}, fmt.Errorf("finish job %s: unexpected reply %v", id, vals)
	}
	st, _ := vals[0].(string)
	return Finished{State: State(st), Attempts: toInt(vals[1]), Changed: toInt(vals[2]) == 1}, nil
}

func isNoScript(err error) bool { return strings.HasPrefix(err.Error(), "NOSCRIPT") }

func (r *Records) loadScripts(ctx context.Context, scripts ...*redis.Script) error {
	for _, s := range scripts {
		if err := s.Load(ctx, r.rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// resetScript gives a dead (or canceled) job a fresh attempt budget and puts
// it back to queued, keeping its history. KEYS: job, history. ARGV: now, entry.
var resetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'dead' and st ~= 'canceled' then return st end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'interrupts', 0, 'updated_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'finished_at', 'error', 'error_body', 'running_since', 'running_worker', 'status_code', 'request_id', 'retry_at')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('RPUSH', KEYS[2], ARGV[2])
return 'queued'
`)

// Reset puts a dead or canceled job back to queued with a fresh attempt
// budget (for a requeue). It returns the state the job had when it was not
// dead or canceled (and then changes nothing), StateQueued when reset, and
// ErrNotFound when the record has expired.
func (r *Records) Reset(ctx context.Context, id string, now time.Time) (State, error) {
	entry, _ := json.Marshal(Attempt{Start: now.UTC(), Reason: "requeued"})
	res, err := resetScript.Run(ctx, r.rdb, []string{r.keys.job(id), r.keys.history(id)}, now.UTC().Format(timeLayout), string(entry)).Text()
	if err != nil {
		return "", fmt.Errorf("reset job %s: %w", id, err)
	}
	if res == "missing" {
		return "", fmt.Errorf("reset job %s: %w", id, ErrNotFound)
	}
	return State(res), nil
}

// Get reads one job with its result and history.
func (r *Records) Get(ctx context.Context, id string) (*Job, error) {
	pipe := r.rdb.Pipeline()
	h := pipe.HGetAll(ctx, r.keys.job(id))
	hist := pipe.LRange(ctx, r.keys.history(id), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	f := h.Val()
	if len(f) == 0 {
		return nil, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	j := &Job{
		ID: f["id"], BatchID: f["batch_id"], CustomID: f["custom_id"], Queue: f["queue"], Model: f["model"],
		State: State(f["state"]), Attempts: atoi(f["attempts"]), StatusCode: atoi(f["status_code"]),
		RequestID: f["request_id"],
	}
	j.SubmittedAt, _ = time.Parse(timeLayout, f["submitted_at"])
	j.UpdatedAt, _ = time.Parse(timeLayout, f["updated_at"])
	j.FinishedAt, _ = time.Parse(timeLayout, f["finished_at"])
	if v := f["result"]; v != "" {
		j.Result = json.RawMessage(v)
	}
	if v := f["usage"]; v != "" {
		j.Usage = new(Usage)
		if err := json.Unmarshal([]byte(v), j.Usage); err != nil {
			return nil, fmt.Errorf("job %s: bad usage field: %w", id, err)
		}
	}
	if v := f["error"]; v != "" {
		j.Error = new(JobError)
		if err := json.Unmarshal([]byte(v), j.Error); err != nil {
			return nil, fmt.Errorf("job %s: bad error field: %w", id, err)
		}
	}
	for _, s := range hist.Val() {
		var a Attempt
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			return nil, fmt.Errorf("job %s: bad history entry: %w", id, err)
		}
		j.History = append(j.History, a)
	}
	return j, nil
}

// State reads only the state of a job.
func (r *Records) State(ctx context.Context, id string) (State, error) {
	s, err := r.rdb.HGet(ctx, r.keys.job(id), "state").Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("get job %s: %w", id, err)
	}
	return State(s), nil
}

// batchFinishScript counts a job's final state in its batch exactly once,
// however often it is called (a redelivered task calls it again), and ends
// the batch when it was the last job. KEYS: batch, batch final set. ARGV:
// now, ttl, job id, state, prompt, completion, total tokens. Returns 0 when
// it counted nothing, 1 when it counted the job, batchEnded when that ended
// the batch.
var batchFinishScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SADD', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[4], 1)
if tonumber(ARGV[7]) > 0 then
  redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[5])
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[6])
  redis.call('HINCRBY', KEYS[1], 'total_tokens', ARGV[7])
end
` + batchDoneLua + `
return 1 + done
`)

// batchEnded is batchFinishScript's reply when the job it counted was the
// batch's last.
const batchEnded = 2

// Announce counts job jobID's final state st in its batch (when it has one)
// and publishes the job's completion, in one pipelined round trip. It
// reports whether that ended the batch; the caller then calls
// PublishBatchDone.
func (r *Records) Announce(ctx context.Context, batchID, jobID string, st State, u *Usage) (bool, error) {
	for try := 0; ; try++ {
		pipe := r.rdb.Pipeline()
		count := r.queueAnnounce(ctx, pipe, batchID, jobID, st, u, time.Now())
		_, err := pipe.Exec(ctx)
		if err != nil && try == 0 && isNoScript(err) {
			if err := r.loadScripts(ctx, batchFinishScript); err != nil {
				return false, fmt.Errorf("announce job %s: %w", jobID, err)
			}
			continue
		}
		if err != nil {
			return false, fmt.Errorf("announce job %s: %w", jobID, err)
		}
		if count == nil {
			return false, nil
		}
		n, _ := count.Int()
		return n == batchEnded, nil
	}
}

// queueAnnounce adds to pipe the count of job jobID's final state st in its
// batch (when it has one; the count's reply is returned) and the job's
// completion notice.
func (r *Records) queueAnnounce(ctx context.Context, pipe redis.Pipeliner, batchID, jobID string, st State, u *Usage, now time.Time) *redis.Cmd {
	var count *redis.Cmd
	if batchID != "" {
		var p, c, t int64
		if u != nil {
			p, c, t = u.PromptTokens, u.CompletionTokens, u.TotalTokens
		}
		count = batchFinishScript.EvalSha(ctx, pipe, []string{r.keys.batch(batchID), r.keys.batchFinal(batchID)},
			now.UTC().Format(timeLayout), int64(r.resultTTL/time.Second), jobID, string(st), p, c, t)
	}
	pipe.Publish(ctx, DoneChannel(r.keys.prefix, jobID), string(st))
	return count
}

// PublishBatchDone announces that every job of batch id is final.
func (r *Records) PublishBatchDone(ctx context.Context, id string) error {
	if err := r.rdb.Publish(ctx, BatchDoneChannel(r.keys.prefix, id), "done").Err(); err != nil {
		return fmt.Errorf("publish batch done %s: %w", id, err)
	}
	return nil
}

func (r *Records) publishBatchDone(ctx context.Context, id string) { _ = r.PublishBatchDone(ctx, id) }

// BatchState reads only the state of a batch ("" when it does not exist).
func (r *Records) BatchState(ctx context.Context, id string) (BatchState, error) {
	s, err := r.rdb.HGet(ctx, r.keys.batch(id), "state").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get batch %s: %w", id, err)
	}
	return BatchState(s), nil
}

// batchUncountScript undoes Announce's count for a requeued job. The job is
// pending again, so a batch that had ended is open again: running (a
// canceled one stays canceled), without finished_at or expiry, until its
// last job is counted anew.
// ARGV: job id, state, then optionally the prompt, completion and total
// tokens the count added.
var batchUncountScript = redis.NewScript(`
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
if tonumber(ARGV[5] or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'prompt_tokens', -ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', -ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'total_tokens', -ARGV[5])
end
if redis.call('HDEL', KEYS[1], 'finished_at') == 1 then
  if redis.call('HGET', KEYS[1], 'state') == 'done' then redis.call('HSET', KEYS[1], 'state', 'running') end
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
return 1
`)

// UncountFinal removes job id's final state st from its batch's counters (a
// requeued dead job is pending again).
func (r *Records) UncountFinal(ctx context.Context, batchID, jobID string, st State) error {
	return r.uncount(ctx, batchID, jobID, st, nil)
}

// uncount undoes a count of job jobID as st that added usage u.
func (r *Records) uncount(ctx context.Context, batchID, jobID string, st State, u *Usage) error {
	argv := []any{jobID, string(st)}
	if u != nil {
		argv = append(argv, u.PromptTokens, u.CompletionTokens, u.TotalTokens)
	}
	err := batchUncountScript.Run(ctx, r.rdb, []string{r.keys.batch(batchID), r.keys.batchFinal(batchID)}, argv...).Err()
	if err != nil {
		return fmt.Errorf("uncount job %s in batch %s: %w", jobID, batchID, err)
	}
	return nil
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func toInt(v any) int {
	switch x := v.(type) {
	case int64:
		return int(x)
	case string:
		return atoi(x)
	}
	return 0
}

// PublishDone announces that job id reached final state st.
func (r *Records) PublishDone(ctx context.Context, id string, st State) error {
	_, err := r.Announce(ctx, "", id, st, nil)
	return err
}
