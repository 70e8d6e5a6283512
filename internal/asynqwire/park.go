package asynqwire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// unparkScript moves the parked tasks ARGV[3..] of one queue to its pending
// list, in order (the first is taken first), as asynq's forwarder moves a
// due task (rdb.forwardCmd, v0.26.0, without groups, which mimoq does not
// use). A task that is not parked (released already, run, deleted, or
// scheduled for a real time) is left alone; an ID parked without its hash
// (lost) is taken out of the set. KEYS: scheduled, pending. ARGV:
// task key prefix, now (ns), ids. Returns one 0/1 per id: 1 when it moved.
var unparkScript = redis.NewScript(`
local out = {}
for i = 3, #ARGV do
	local id = ARGV[i]
	local score = redis.call("ZSCORE", KEYS[1], id)
	if score and tonumber(score) >= ` + parkedAtLua + ` and redis.call("EXISTS", ARGV[1] .. id) == 0 then
		-- Its hash is gone (lost in a failover): not a task any more.
		redis.call("ZREM", KEYS[1], id)
		out[#out + 1] = 0
	elseif score and tonumber(score) >= ` + parkedAtLua + ` then
		redis.call("ZREM", KEYS[1], id)
		redis.call("LPUSH", KEYS[2], id)
		redis.call("HSET", ARGV[1] .. id, "state", "pending", "pending_since", ARGV[2])
		out[#out + 1] = 1
	else
		out[#out + 1] = 0
	end
end
return out
`)

// dropParkedScript deletes the parked tasks ARGV[2..] of one queue, as
// asynq's Inspector deletes a scheduled task (rdb.deleteTaskCmd, v0.26.0,
// without unique keys, which mimoq does not use). KEYS: scheduled. ARGV:
// task key prefix, ids. Returns how many it deleted.
var dropParkedScript = redis.NewScript(`
local n = 0
for i = 2, #ARGV do
	local id = ARGV[i]
	local score = redis.call("ZSCORE", KEYS[1], id)
	if score and tonumber(score) >= ` + parkedAtLua + ` then
		redis.call("ZREM", KEYS[1], id)
		redis.call("DEL", ARGV[1] .. id)
		n = n + 1
	end
end
return n
`)

const parkedAtLua = "10000000000" // ParkedAt

// CountParked is how many tasks of queue are parked (a part of asynq's
// scheduled tasks).
func CountParked(ctx context.Context, rdb redis.UniversalClient, queue string) (int64, error) {
	n, err := rdb.ZCount(ctx, ScheduledKey(queue), parkedAtLua, "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("asynqwire: count parked: %w", err)
	}
	return n, nil
}

// Unpark releases the parked tasks ids of queue to its pending list in
// that order, and reports for each whether it was parked (and moved). One
// round trip; callers send up to a few thousand IDs.
func Unpark(ctx context.Context, rdb redis.UniversalClient, queue string, ids []string) ([]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if queue == "" {
		return nil, errors.New("asynqwire: unpark: queue is required")
	}
	vals, err := unparkScript.Run(ctx, rdb, []string{ScheduledKey(queue), PendingKey(queue)},
		taskArgs(queue, ids, time.Now().UnixNano())...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("asynqwire: unpark: %w", err)
	}
	moved := make([]bool, len(vals))
	for i, v := range vals {
		moved[i] = v == 1
	}
	return moved, nil
}

// DropParked deletes those of the tasks ids of queue that are parked, and
// returns how many it deleted.
func DropParked(ctx context.Context, rdb redis.UniversalClient, queue string, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if queue == "" {
		return 0, errors.New("asynqwire: drop parked: queue is required")
	}
	n, err := dropParkedScript.Run(ctx, rdb, []string{ScheduledKey(queue)}, taskArgs(queue, ids)...).Int()
	if err != nil {
		return 0, fmt.Errorf("asynqwire: drop parked: %w", err)
	}
	return n, nil
}

// taskArgs is the arguments of a script over the tasks ids of queue: the
// prefix of their keys, extra, then the IDs.
func taskArgs(queue string, ids []string, extra ...any) []any {
	argv := make([]any, 0, 1+len(extra)+len(ids))
	argv = append(argv, "asynq:{"+queue+"}:t:")
	argv = append(argv, extra...)
	for _, id := range ids {
		argv = append(argv, id)
	}
	return argv
}
