package records

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

// NewJob is a single job to submit.
type NewJob struct {
	ID          string
	Queue       string
	Model       string
	Body        []byte // the chat-completions request, validated by the caller
	SubmittedAt time.Time
	// Deadline, when set, is when the job expires if it has not started.
	Deadline time.Time
	// Webhook, when set, is told when the job ends (with its result when
	// WebhookIncludeResult).
	Webhook              string
	WebhookIncludeResult bool
}

// Submit writes a new single job: its record (queued), its entry in the
// reconciler's index, then its task, in that order, so that a worker always
// finds the record and the reconciler always finds a job whose task was not
// written. A job whose record exists already (an idempotent resubmit) is
// left as it is; its task is written again when it is not final (asynq
// refuses a second task with the same ID). It returns the job's state.
func (s *Store) Submit(ctx context.Context, j NewJob) (job.State, error) {
	fields := []any{j.Body, "id", j.ID, "queue", j.Queue, "model", j.Model,
		"state", string(job.StateQueued), "attempts", 0, "submitted_at", fmtTime(j.SubmittedAt)}
	if j.Webhook != "" {
		fields = append(fields, "webhook", j.Webhook, "webhook_result", boolField(j.WebhookIncludeResult))
	}
	if !j.Deadline.IsZero() {
		// The expiry is scheduled first: a job never exists with a
		// deadline nobody will act on.
		fields = append(fields, "deadline_ms", j.Deadline.UnixMilli())
		if err := s.scheduleExpiry(ctx, expiryJob, j.ID, j.Deadline); err != nil {
			return "", fmt.Errorf("submit job %s: %w", j.ID, err)
		}
	}
	res, err := createScript.Run(ctx, s.rdb, []string{jobKey(j.ID)}, fields...).Text()
	if err != nil {
		return "", fmt.Errorf("submit job %s: %w", j.ID, err)
	}
	st := job.StateQueued
	if res != "created" {
		st = job.State(res)
	}
	if st.Final() {
		return st, nil
	}
	if err := s.rdb.ZAdd(ctx, liveKey, redis.Z{Score: float64(j.SubmittedAt.UnixMilli()), Member: j.ID}).Err(); err != nil {
		return "", fmt.Errorf("submit job %s: %w", j.ID, err)
	}
	if _, err := s.enqueueTasks(ctx, []job.Payload{{JobID: j.ID, Queue: j.Queue, Model: j.Model}}); err != nil {
		return "", fmt.Errorf("submit job %s: %w", j.ID, err)
	}
	return st, nil
}

// IdempotentID returns the job ID idempotency key key stands for: id, when
// the key is new (it is then taken for the result TTL), else the ID of the
// job first submitted with it.
func (s *Store) IdempotentID(ctx context.Context, key, id string) (string, error) {
	h := sha256.Sum256([]byte(key))
	prev, err := s.rdb.SetArgs(ctx, idemKey(hex.EncodeToString(h[:16])), id,
		redis.SetArgs{Mode: "NX", Get: true, TTL: s.ttl}).Result()
	switch {
	case err == nil:
		return prev, nil // the key was taken: the job exists (or is being submitted)
	case errors.Is(err, redis.Nil):
		return id, nil
	default:
		return "", fmt.Errorf("submit: idempotency key: %w", err)
	}
}

// BatchSpec describes a batch file that passed validation.
type BatchSpec struct {
	ID     string
	Queue  string
	Source string // file name, for the record
	SHA256 string // of the whole file: a second submit must be the same file
	Total  int    // lines
	// ExpiresAt, when set, ends the batch's completion window (a resubmit
	// keeps the first submit's).
	ExpiresAt time.Time
	// Webhook, when set, is told when the batch ends.
	Webhook string
	// Weight is the batch's share of its lanes against other batches (0
	// means 1); Tenant, when set, makes the share the tenant's, whatever
	// the number of its batches (internal/fair).
	Weight int
	Tenant string
}

// CreatedBatch is what CreateBatch found or did.
type CreatedBatch struct {
	State     job.BatchState
	CreatedMs int64 // the batch's creation time, part of its job IDs
	New       bool
}

// CreateBatch writes the record of a batch in state submitting, or returns
// the one a previous submit of the same file left (ErrBatchConflict for
// another file under the same ID).
func (s *Store) CreateBatch(ctx context.Context, spec BatchSpec, now time.Time) (CreatedBatch, error) {
	expiresAt, expiresMs := "", ""
	if !spec.ExpiresAt.IsZero() {
		expiresAt, expiresMs = fmtTime(spec.ExpiresAt), strconv.FormatInt(spec.ExpiresAt.UnixMilli(), 10)
		if err := s.scheduleExpiry(ctx, expiryBatch, spec.ID, spec.ExpiresAt); err != nil {
			return CreatedBatch{}, fmt.Errorf("submit batch %s: %w", spec.ID, err)
		}
	}
	vals, outcome, err := reply(batchCreateScript.Run(ctx, s.rdb, []string{batchKey(spec.ID)},
		spec.ID, spec.SHA256, spec.Total, spec.Queue, spec.Source, fmtTime(now), now.UnixMilli(), expiresAt, expiresMs,
		spec.Webhook, max(spec.Weight, 1), spec.Tenant),
		"submit batch "+spec.ID)
	if err != nil {
		return CreatedBatch{}, err
	}
	if outcome == "conflict" {
		return CreatedBatch{}, fmt.Errorf("submit batch %s: %w", spec.ID, ErrBatchConflict)
	}
	cb := CreatedBatch{State: job.BatchState(toStr(vals[1])), CreatedMs: int64(toInt(vals[2])), New: outcome == "created"}
	if err := s.rdb.ZAdd(ctx, batchesKey, redis.Z{Score: float64(cb.CreatedMs), Member: spec.ID}).Err(); err != nil {
		return CreatedBatch{}, fmt.Errorf("submit batch %s: %w", spec.ID, err)
	}
	return cb, nil
}

// Line is one line of a batch to enqueue.
type Line struct {
	Index    int // 0-based position in the file
	CustomID string
	Model    string
	Body     []byte
}

// EnqueueLines writes the records of lines of batch b (one script: one
// round trip, one slot), then the tasks of those it wrote or found not
// final, parked, then their entries in the batch's backlogs (backlog.go),
// from which the fair feeder releases them. Lines written before are left alone; nothing is written once the
// batch is canceled. Callers send chunks of up to a few thousand lines.
func (s *Store) EnqueueLines(ctx context.Context, batchID, queue string, createdMs int64, lines []Line, submittedAt time.Time) error {
	if len(lines) == 0 {
		return nil
	}
	keys := make([]string, 2, len(lines)+2)
	keys[0], keys[1] = batchKey(batchID), batchLinesKey(batchID)
	argv := make([]any, 0, 3+5*len(lines))
	argv = append(argv, batchID, queue, fmtTime(submittedAt))
	ids := make([]string, len(lines))
	for i, l := range lines {
		ids[i] = batchJobID(batchID, createdMs, l.Index)
		keys = append(keys, jobKey(ids[i]))
		argv = append(argv, l.Index, ids[i], l.CustomID, l.Model, l.Body)
	}
	codes, err := chunkScript.Run(ctx, s.rdb, keys, argv...).Int64Slice()
	if err != nil {
		return fmt.Errorf("submit batch %s: %w", batchID, err)
	}
	tasks := make([]asynqwire.Task, 0, len(lines))
	entries := make([]backlogEntry, 0, len(lines))
	for i, c := range codes {
		if c != 0 {
			t := task(job.Payload{JobID: ids[i], BatchID: batchID, CustomID: lines[i].CustomID, Queue: queue, Model: lines[i].Model})
			t.Parked = true
			tasks = append(tasks, t)
			entries = append(entries, backlogEntry{id: ids[i], model: lines[i].Model, line: lines[i].Index})
		}
	}
	if _, err := asynqwire.EnqueueMany(ctx, s.rdb, tasks); err != nil {
		return fmt.Errorf("submit batch %s: %w", batchID, err)
	}
	return s.addBacklog(ctx, batchID, queue, entries)
}

// Seal marks batch id fully enqueued. It reports whether that ended the
// batch (every job was final already).
func (s *Store) Seal(ctx context.Context, id string, now time.Time) (bool, error) {
	n, err := sealScript.Run(ctx, s.rdb, []string{batchKey(id)}, fmtTime(now), s.ttlSeconds(), id).Int()
	if err != nil {
		return false, fmt.Errorf("submit batch %s: %w", id, err)
	}
	return n == 1, nil
}

// BatchJobID is the job ID of line index (0-based) of batch batchID created
// at createdMs.
func BatchJobID(batchID string, createdMs int64, index int) string {
	return batchJobID(batchID, createdMs, index)
}

// boolField is b as a record field.
func boolField(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
