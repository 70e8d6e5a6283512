// Package asynqwire enqueues many asynq tasks in pipelined round trips.
//
// asynq's Client enqueues one task per round trip; a 50,000-line batch would
// spend its time waiting on Redis. This package writes exactly what
// asynq.Client.Enqueue writes — the task hash with the protobuf-encoded
// TaskMessage, and the task ID pushed on the queue's pending list, through
// asynq's own enqueue script — but hundreds of tasks per round trip. The
// contract test checks the result against asynq's Inspector and Server, so
// an asynq upgrade that changes the format fails the tests, not production.
package asynqwire

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// Task is one task to enqueue.
type Task struct {
	Type     string
	Payload  []byte
	ID       string // required: the task ID (asynq.TaskID)
	Queue    string // required
	MaxRetry int
	// Timeout of one run; asynq's default (30 minutes) when zero, as
	// asynq.Client does when neither timeout nor deadline is given.
	Timeout time.Duration
	// Parked writes the task into the queue's scheduled set at ParkedAt
	// instead of its pending list: no server takes it until Unpark moves
	// it (asynq's Inspector shows it as scheduled).
	Parked bool
}

// ParkedAt is the time a parked task is scheduled for, in Unix seconds
// (the year 2286): asynq never reaches it, so only Unpark (or an
// operator's "run now" in asynqmon) releases the task. Scores at or above
// it mark a task as parked.
const ParkedAt = 1e10

// PendingKey is the key of asynq's pending list of queue.
func PendingKey(queue string) string { return "asynq:{" + queue + "}:pending" }

// ScheduledKey is the key of asynq's scheduled set of queue.
func ScheduledKey(queue string) string { return "asynq:{" + queue + "}:scheduled" }

// DefaultTimeout is asynq's default task timeout.
const DefaultTimeout = 30 * time.Minute

// Encode returns the task's asynq TaskMessage in protobuf wire format
// (asynq/internal/proto/asynq.proto, fields 1 type, 2 payload, 3 id,
// 4 queue, 5 retry, 8 timeout).
func Encode(t *Task) []byte {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	b := make([]byte, 0, len(t.Payload)+len(t.Type)+len(t.ID)+len(t.Queue)+32)
	b = appendString(b, 1, t.Type)
	if len(t.Payload) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, t.Payload)
	}
	b = appendString(b, 3, t.ID)
	b = appendString(b, 4, t.Queue)
	if t.MaxRetry != 0 {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(int32(t.MaxRetry))))
	}
	b = protowire.AppendTag(b, 8, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(int64(timeout/time.Second)))
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// enqueueScript is asynq's own enqueue script (rdb.enqueueCmd, v0.26.0):
// it refuses a task ID that exists, which makes re-enqueueing idempotent.
// KEYS: asynq:{<q>}:t:<id>, asynq:{<q>}:pending. ARGV: msg, id, now (ns).
var enqueueScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then
	return 0
end
redis.call("HSET", KEYS[1],
           "msg", ARGV[1],
           "state", "pending",
           "pending_since", ARGV[3])
redis.call("LPUSH", KEYS[2], ARGV[2])
return 1
`)

// parkScript is asynq's own schedule script (rdb.scheduleCmd, v0.26.0).
// KEYS: asynq:{<q>}:t:<id>, asynq:{<q>}:scheduled. ARGV: msg, score, id.
var parkScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then
	return 0
end
redis.call("HSET", KEYS[1],
           "msg", ARGV[1],
           "state", "scheduled")
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[3])
return 1
`)

// TaskKey is the key of asynq's hash of task id in queue (its "state" field
// says pending, active, scheduled, retry, archived or completed).
func TaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// Result counts what EnqueueMany did.
type Result struct {
	Enqueued int // new tasks
	Existed  int // task IDs that were there already (not enqueued again)
}

// EnqueueMany enqueues tasks in one pipelined round trip (callers chunk:
// a few hundred to a few thousand tasks per call). A task whose ID exists is
// left alone and counted in Existed, like asynq's ErrTaskIDConflict.
func EnqueueMany(ctx context.Context, rdb redis.UniversalClient, tasks []Task) (Result, error) {
	var res Result
	if len(tasks) == 0 {
		return res, nil
	}
	queues := map[string]bool{}
	for i := range tasks {
		if tasks[i].ID == "" || tasks[i].Queue == "" {
			return res, errors.New("asynqwire: task ID and queue are required")
		}
		queues[tasks[i].Queue] = true
	}
	names := make([]any, 0, len(queues))
	for q := range queues {
		names = append(names, q)
	}
	// asynq lists every queue in asynq:queues (its Client does this SADD
	// on every enqueue); Inspector and Server find queues there. It goes
	// first in the same pipeline.
	before := func(pipe redis.Pipeliner) { pipe.SAdd(ctx, "asynq:queues", names...) }
	cmds, err := runPipelined(ctx, rdb, len(tasks), before, func(i int) (*redis.Script, []string, []any) {
		t := &tasks[i]
		if t.Parked {
			return parkScript, []string{TaskKey(t.Queue, t.ID), ScheduledKey(t.Queue)},
				[]any{Encode(t), int64(ParkedAt), t.ID}
		}
		return enqueueScript, []string{TaskKey(t.Queue, t.ID), PendingKey(t.Queue)},
			[]any{Encode(t), t.ID, time.Now().UnixNano()}
	})
	if err != nil {
		return res, fmt.Errorf("asynqwire: enqueue: %w", err)
	}
	for _, c := range cmds {
		if n, _ := c.Int64(); n == 1 {
			res.Enqueued++
		} else {
			res.Existed++
		}
	}
	return res, nil
}

// runPipelined runs n scripts in one pipeline, after the commands before
// adds: run i is the script, keys and arguments args(i) gives, by SHA; when
// Redis does not know a script it loads them and runs the pipeline again
// (every script here is idempotent, so a partial first run is harmless).
func runPipelined(ctx context.Context, rdb redis.UniversalClient, n int,
	before func(redis.Pipeliner), args func(i int) (*redis.Script, []string, []any)) ([]*redis.Cmd, error) {
	for try := 0; ; try++ {
		pipe := rdb.Pipeline()
		if before != nil {
			before(pipe)
		}
		cmds := make([]*redis.Cmd, n)
		used := map[*redis.Script]bool{}
		for i := range n {
			s, keys, argv := args(i)
			used[s] = true
			cmds[i] = s.EvalSha(ctx, pipe, keys, argv...)
		}
		_, err := pipe.Exec(ctx)
		if err == nil {
			return cmds, nil
		}
		if try == 0 && isNoScript(err) {
			for s := range used {
				if err := s.Load(ctx, rdb).Err(); err != nil {
					return nil, err
				}
			}
			continue
		}
		return nil, err
	}
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
