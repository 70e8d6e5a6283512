package records

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/asynqwire"
	"github.com/mimoq/mimoq/internal/job"
)

// A batch's jobs wait for their turn in backlogs, one per model of the
// batch, and their asynq tasks wait parked (asynqwire.Task.Parked) until
// the fair feeder (internal/fair) releases them to their queue, a few at a
// time and round-robin between the batches of a lane. Keys:
//
//	mimoq:batch:{T}:<id>:backlog:<model>  sorted set: job IDs by line, waiting for their turn
//	mimoq:batch:{T}:<id>:backlogs         set: the models the batch has backlogs of
//	mimoq:fair:{<asynq queue>}:batches    set: the batches with a backlog in that lane
//
// A job enters its backlog after its record and its parked task are
// written, and leaves it once its task is released: a backlog entry always
// has its task, so the feeder never loses one. An entry whose task is no
// longer parked (released by an earlier feeder that died before taking the
// entry out, run from asynqmon, or re-created by the reconciler) is simply
// taken out.

func backlogKey(batchID, model string) string { return batchKey(batchID) + ":backlog:" + model }
func backlogsKey(batchID string) string       { return batchKey(batchID) + ":backlogs" }

// LaneBatchesKey is the set of the batches with a backlog in asynq queue
// queue (one mimoq queue of one model).
func LaneBatchesKey(queue string) string { return job.KeyPrefix + "fair:{" + queue + "}:batches" }

// backlogEntry is one job to put in its batch's backlog.
type backlogEntry struct {
	id    string
	model string
	line  int
}

// addBacklog puts entries (parked tasks of batch batchID, in queue) in
// their backlogs and lists the batch in their lanes.
func (s *Store) addBacklog(ctx context.Context, batchID, queue string, entries []backlogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	byModel := map[string][]redis.Z{}
	for _, e := range entries {
		byModel[e.model] = append(byModel[e.model], redis.Z{Score: float64(e.line), Member: e.id})
	}
	// The entries first, the lists of lanes after (a cluster pipeline
	// sends to its nodes at once): a feeder that forgets the batch in
	// between finds the entries when it looks again (Forget).
	pipe := s.rdb.Pipeline()
	for m, zs := range byModel {
		pipe.SAdd(ctx, backlogsKey(batchID), m)
		pipe.ZAdd(ctx, backlogKey(batchID, m), zs...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("backlog of batch %s: %w", batchID, err)
	}
	models := make([]string, 0, len(byModel))
	for m := range byModel {
		models = append(models, m)
	}
	return s.list(ctx, batchID, queue, models)
}

// list names batch batchID in the lanes of queue and models.
func (s *Store) list(ctx context.Context, batchID, queue string, models []string) error {
	pipe := s.rdb.Pipeline()
	for _, m := range models {
		pipe.SAdd(ctx, LaneBatchesKey(job.AsynqQueue(queue, m)), batchID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("backlog of batch %s: %w", batchID, err)
	}
	return nil
}

// Backlog is one batch's backlog in one lane, as the feeder sees it.
type Backlog struct {
	BatchID   string
	Model     string
	State     job.BatchState // "" when the batch's record is gone
	CreatedMs int64
	Weight    int    // at least 1
	Tenant    string // "" for none
	Len       int64  // jobs waiting
	// CancelDone says a cancel or expiry walked every line: every job
	// still in the backlog is final.
	CancelDone bool
}

// Flow is who the backlog's share of its lane belongs to: the tenant, or
// the batch when it has none.
func (b *Backlog) Flow() string {
	if b.Tenant != "" {
		return "t:" + b.Tenant
	}
	return "b:" + b.BatchID
}

// Over says the backlog has no job waiting: the feeder forgets it (a
// submit that adds jobs later lists it again).
func (b *Backlog) Over() bool { return b.Len == 0 }

// Ended says the backlog's batch is over (or gone, or ended early with
// every line walked): its jobs are final but for any requeued since, and
// the feeder drops them (Drop) instead of releasing them in turn.
func (b *Backlog) Ended() bool {
	switch b.State {
	case "", job.BatchDone:
		return true
	case job.BatchCanceled, job.BatchExpired:
		return b.CancelDone
	}
	return false
}

// LaneBacklogs reads the backlogs of every batch listed in lane queue of
// model: one round trip for the list, one for the batches (pipelined).
func (s *Store) LaneBacklogs(ctx context.Context, queue, model string) ([]*Backlog, error) {
	ids, err := s.rdb.SMembers(ctx, LaneBatchesKey(job.AsynqQueue(queue, model))).Result()
	if err != nil {
		return nil, fmt.Errorf("backlogs of %s: %w", model, err)
	}
	return s.ReadBacklogs(ctx, model, ids)
}

// ReadBacklogs reads the backlogs in model's lanes of batches ids, in one
// pipelined round trip.
func (s *Store) ReadBacklogs(ctx context.Context, model string, ids []string) ([]*Backlog, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	hs := make([]*redis.SliceCmd, len(ids))
	ns := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		hs[i] = pipe.HMGet(ctx, batchKey(id), "state", "created_ms", "weight", "tenant", "cancel_done")
		ns[i] = pipe.ZCard(ctx, backlogKey(id, model))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("backlogs of %s: %w", model, err)
	}
	out := make([]*Backlog, len(ids))
	for i, id := range ids {
		h := hs[i].Val()
		out[i] = &Backlog{BatchID: id, Model: model, State: job.BatchState(toStr(h[0])),
			CreatedMs: int64(atoi(toStr(h[1]))), Weight: max(atoi(toStr(h[2])), 1), Tenant: toStr(h[3]),
			CancelDone: toStr(h[4]) != "", Len: ns[i].Val()}
	}
	return out, nil
}

// unlistModelScript takes a model out of a batch's backlog models if its
// backlog is empty. KEYS: the batch's backlogs set, the model's backlog.
// ARGV: model.
var unlistModelScript = redis.NewScript(`
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], ARGV[1]) end
return 0
`)

// Forget takes the backlogs bs of lane queue, read as empty, out of its
// list; one that got jobs since (a submit's next chunk, the reconciler) is
// listed again, so that no job waits in a backlog its lane does not list.
func (s *Store) Forget(ctx context.Context, queue string, bs []*Backlog) error {
	if len(bs) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, b := range bs {
		pipe.SRem(ctx, LaneBatchesKey(job.AsynqQueue(queue, b.Model)), b.BatchID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("forget backlogs: %w", err)
	}
	pipe = s.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(bs))
	for i, b := range bs {
		lens[i] = pipe.ZCard(ctx, backlogKey(b.BatchID, b.Model))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("forget backlogs: %w", err)
	}
	pipe = s.rdb.Pipeline()
	for i, b := range bs {
		if lens[i].Val() > 0 {
			pipe.SAdd(ctx, LaneBatchesKey(job.AsynqQueue(queue, b.Model)), b.BatchID)
		} else {
			unlistModelScript.Eval(ctx, pipe, []string{backlogsKey(b.BatchID), backlogKey(b.BatchID, b.Model)}, b.Model)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("forget backlogs: %w", err)
	}
	return nil
}

// Release moves the first n[i] jobs of each backlog bs[i] of lane queue to
// its asynq queue, interleaved in the order order gives (indexes into bs,
// one per job), and returns how many of each it released. Jobs whose task
// was not parked any more are taken out without being counted. An ended
// backlog's (Ended) parked tasks are deleted instead: its jobs are final.
func (s *Store) Release(ctx context.Context, queue string, bs []*Backlog, order []int) ([]int, error) {
	released := make([]int, len(bs))
	if len(order) == 0 {
		return released, nil
	}
	want := make([]int64, len(bs))
	for _, i := range order {
		want[i]++
	}
	pipe := s.rdb.Pipeline()
	heads := make([]*redis.StringSliceCmd, len(bs))
	for i, b := range bs {
		if want[i] > 0 {
			heads[i] = pipe.ZRange(ctx, backlogKey(b.BatchID, b.Model), 0, want[i]-1)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return released, fmt.Errorf("release: %w", err)
	}
	ids := make([][]string, len(bs))
	for i, h := range heads {
		if h != nil {
			ids[i] = h.Val()
		}
	}
	// The interleaved list, one asynq queue per model.
	byQueue := map[string][]int{} // asynq queue → indexes into flat
	var flat []struct{ b, k int }
	next := make([]int, len(bs))
	for _, i := range order {
		if next[i] >= len(ids[i]) {
			continue
		}
		q := job.AsynqQueue(queue, bs[i].Model)
		byQueue[q] = append(byQueue[q], len(flat))
		flat = append(flat, struct{ b, k int }{i, next[i]})
		next[i]++
	}
	for q, idx := range byQueue {
		list := make([]string, len(idx))
		for j, f := range idx {
			list[j] = ids[flat[f].b][flat[f].k]
		}
		moved, err := asynqwire.Unpark(ctx, s.rdb, q, list)
		if err != nil {
			return released, fmt.Errorf("release: %w", err)
		}
		for j, f := range idx {
			if moved[j] {
				released[flat[f].b]++
			}
		}
	}
	if err := s.takeOut(ctx, bs, ids); err != nil {
		return released, err
	}
	return released, nil
}

// Drop takes the first n jobs out of ended backlog b of lane queue (its
// batch is over, or ended early with every line walked), and returns how
// many: the parked tasks of final jobs are deleted, not run; a job found
// not final (one requeued since) has its task released instead.
func (s *Store) Drop(ctx context.Context, queue string, b *Backlog, n int) (int, error) {
	ids, err := s.rdb.ZRange(ctx, backlogKey(b.BatchID, b.Model), 0, int64(n)-1).Result()
	if err != nil {
		return 0, fmt.Errorf("drop backlog of batch %s: %w", b.BatchID, err)
	}
	pipe := s.rdb.Pipeline()
	states := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		states[i] = pipe.HGet(ctx, jobKey(id), "state")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("drop backlog of batch %s: %w", b.BatchID, err)
	}
	var final, open []string
	for i, id := range ids {
		if st := job.State(states[i].Val()); st == "" || st.Final() {
			final = append(final, id)
		} else {
			open = append(open, id)
		}
	}
	q := job.AsynqQueue(queue, b.Model)
	if _, err := asynqwire.DropParked(ctx, s.rdb, q, final); err != nil {
		return 0, fmt.Errorf("drop backlog of batch %s: %w", b.BatchID, err)
	}
	if _, err := asynqwire.Unpark(ctx, s.rdb, q, open); err != nil {
		return 0, fmt.Errorf("drop backlog of batch %s: %w", b.BatchID, err)
	}
	if err := s.takeOut(ctx, []*Backlog{b}, [][]string{ids}); err != nil {
		return 0, err
	}
	return len(ids), nil
}

// takeOut removes ids[i] from backlog bs[i].
func (s *Store) takeOut(ctx context.Context, bs []*Backlog, ids [][]string) error {
	pipe := s.rdb.Pipeline()
	some := false
	for i, b := range bs {
		if len(ids[i]) == 0 {
			continue
		}
		m := make([]any, len(ids[i]))
		for j, id := range ids[i] {
			m[j] = id
		}
		pipe.ZRem(ctx, backlogKey(b.BatchID, b.Model), m...)
		some = true
	}
	if !some {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("release: take out: %w", err)
	}
	return nil
}

// BacklogModels lists the models batch id has backlogs of.
func (s *Store) BacklogModels(ctx context.Context, id string) ([]string, error) {
	ms, err := s.rdb.SMembers(ctx, backlogsKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("backlog of batch %s: %w", id, err)
	}
	return ms, nil
}

// BatchBacklog is how many jobs of batch id wait for their turn, over all
// its models.
func (s *Store) BatchBacklog(ctx context.Context, id string) (int64, error) {
	models, err := s.rdb.SMembers(ctx, backlogsKey(id)).Result()
	if err != nil || len(models) == 0 {
		return 0, err
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(models))
	for i, m := range models {
		cmds[i] = pipe.ZCard(ctx, backlogKey(id, m))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("backlog of batch %s: %w", id, err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
