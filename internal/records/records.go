// Package records owns the state of every job and batch in Redis: it is the
// only package that changes it. Each change below is one Lua script on one
// Redis Cluster slot (see keys.go), which also keeps the job's batch counts,
// so that a job is in exactly one state, counted once in its batch, at every
// moment.
//
// # A job's life
//
//	from        event                           to          script
//	—           Submit / a batch line           queued      createScript, chunkScript
//	queued      Begin (a delivery takes it)     running     beginScript
//	retrying    Begin, once due                 running     beginScript
//	running     Begin under another lease       running     beginScript (the old delivery was interrupted)
//	running     Finish: answered                succeeded   finishScript
//	running     Finish: retryable failure       retrying    finishScript (due at a set time)
//	running     Finish: terminal or exhausted   dead        finishScript
//	running     Finish: put back (no attempt)   queued      finishScript (optionally not before a set time)
//	queued      batch canceled                  canceled    cancelChunkScript
//	retrying    batch canceled                  canceled    cancelChunkScript
//	—           batch canceled, line never enqueued  canceled  cancelChunkScript
//	queued      Begin after the job's deadline  expired     beginScript (never called late)
//	retrying    Begin after the job's deadline  expired     beginScript
//	queued      deadline passes (expiry pass)   expired     expireJobScript (ExpireDue)
//	retrying    deadline passes (expiry pass)   expired     expireJobScript
//	queued      batch window ends               expired     cancelChunkScript (ExpireBatch)
//	retrying    batch window ends               expired     cancelChunkScript
//	—           batch window ends, line never enqueued  expired  cancelChunkScript
//	non-final   task archived or lost           dead        abandonScript
//	dead        Requeue                         queued      requeueScript, recreateScript (record expired)
//	final       MIMOQ_RESULT_TTL passes         —           Redis expiry
//
// Succeeded, dead, canceled and expired are final: nothing changes them but an
// operator's requeue of a dead job. Begin refuses a final job, a missing
// record (it expired, so the job was final) and a job whose next attempt is
// not due yet, so a task delivered early, late or twice never reaches the
// API in those cases.
//
// Every write of a delivery carries the lease Begin gave it: once another
// delivery begins or the job is requeued, the old delivery's writes are
// stale and change nothing, so a slow or replayed write never overwrites a
// newer state. A final state counts in the batch in the same script that
// writes it, and a requeue takes the count back in the same script that
// reopens the job.
//
// # A batch's life
//
//	submitting → running → done        every line enqueued (sealScript), then every job final
//	submitting | running → canceled    cancelBatchScript; over once every job is final
//	submitting | running → expired     its completion window ended (ExpireBatch); likewise
//	running → expired                  every job final, some expired (Begin after the window)
//
// A batch is over when its finished_at is set: succeeded + dead + canceled +
// expired = total, lines never enqueued counting as canceled (or expired).
//
// The asynq task of a job only rings the bell: it names the job, and the
// record holds the request, so that the reconciler can re-create a task that
// was lost (failover, an interrupted submit or requeue) from the record
// alone.
package records

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
)

// ErrNotFound is returned (wrapped) when a job or batch record does not
// exist: it was never submitted, or it expired after MIMOQ_RESULT_TTL.
var ErrNotFound = errors.New("not found")

// ErrBatchConflict is returned when a batch ID is reused for different
// content.
var ErrBatchConflict = errors.New("batch ID already used for a different file")

// ErrBadCursor is returned for a listing cursor this package did not write.
var ErrBadCursor = errors.New("bad cursor")

// TaskMaxRetry is the asynq retry budget of every task: in effect none.
// mimoq counts API attempts itself (MIMOQ_MAX_ATTEMPTS, in the record);
// asynq's counter also grows on crash recoveries, put-backs and storage
// errors, none of which may make asynq archive a job the API never refused.
const TaskMaxRetry = math.MaxInt32

// TaskTimeout is the asynq timeout of every task. asynq cancels a task's
// context at its deadline and hands the task out again without waiting for
// the handler; the worker bounds its own waits and its call instead
// (MIMOQ_REQUEST_TIMEOUT), so asynq's deadline must lie beyond them.
const TaskTimeout = 24 * time.Hour

const timeLayout = time.RFC3339Nano

// Store reads and changes job and batch records. It is safe for concurrent
// use.
type Store struct {
	rdb  redis.UniversalClient
	ttl  time.Duration
	insp *asynq.Inspector
}

// New returns the store on rdb. resultTTL (how long final records are kept)
// defaults to job.DefaultResultTTL.
func New(rdb redis.UniversalClient, resultTTL time.Duration) *Store {
	if resultTTL <= 0 {
		resultTTL = job.DefaultResultTTL
	}
	return &Store{rdb: rdb, ttl: resultTTL, insp: asynq.NewInspectorFromRedisClient(rdb)}
}

// ResultTTL is how long final records are kept.
func (s *Store) ResultTTL() time.Duration { return s.ttl }

func (s *Store) ttlSeconds() int64 { return int64(s.ttl / time.Second) }

// task is the asynq task of a job.
func task(p job.Payload) asynqwire.Task {
	return asynqwire.Task{Type: job.TaskType, Payload: appendPayload(nil, p), ID: p.JobID,
		Queue: job.AsynqQueue(p.Queue, p.Model), MaxRetry: TaskMaxRetry, Timeout: TaskTimeout}
}

// appendPayload appends the JSON of p: what json.Marshal writes, without its
// reflection, on the path of every submitted line.
func appendPayload(b []byte, p job.Payload) []byte {
	b = append(b, `{"job_id":`...)
	b = appendJSONString(b, p.JobID)
	if p.BatchID != "" {
		b = append(b, `,"batch_id":`...)
		b = appendJSONString(b, p.BatchID)
	}
	if p.CustomID != "" {
		b = append(b, `,"custom_id":`...)
		b = appendJSONString(b, p.CustomID)
	}
	b = append(b, `,"queue":`...)
	b = appendJSONString(b, p.Queue)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, p.Model)
	return append(b, '}')
}

// enqueueTasks writes the tasks of ps; a task whose ID asynq holds already is
// left alone.
func (s *Store) enqueueTasks(ctx context.Context, ps []job.Payload) (asynqwire.Result, error) {
	tasks := make([]asynqwire.Task, len(ps))
	for i, p := range ps {
		tasks[i] = task(p)
	}
	return asynqwire.EnqueueMany(ctx, s.rdb, tasks)
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

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

func toStr(v any) string { s, _ := v.(string); return s }

// reply reads a script's reply as a list whose first element says what
// happened.
func reply(cmd *redis.Cmd, what string) ([]any, string, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	if len(vals) == 0 {
		return nil, "", fmt.Errorf("%s: empty reply", what)
	}
	return vals, toStr(vals[0]), nil
}

// Unreachable reports whether err comes from a Redis that cannot be reached:
// a network error, a closed or exhausted pool, or, failing those, a ping that
// fails. Callers answer "retry later" then, rather than "internal error".
func Unreachable(ctx context.Context, rdb redis.UniversalClient, err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return rdb.Ping(pctx).Err() != nil
}
