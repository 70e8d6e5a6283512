package openaiapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/internal/job"
)

// errNoSuchBatch is returned (wrapped) for a batch this API did not create,
// or whose record expired.
var errNoSuchBatch = errors.New("no such batch")

// batchRecord is the OpenAI side of a batch: what its object carries beyond
// mimoq's batch record.
type batchRecord struct {
	ID               string
	InputFileID      string
	Filename         string
	Endpoint         string
	CompletionWindow string // as the client gave it
	Metadata         map[string]string
	CreatedAt        time.Time
	ExpiresAt        time.Time
	Webhook          string // told when the batch ends
	Weight           int    // its share of its lanes (0: the default)
	Tenant           string // whose share it is ("": its own)
	// FailedAt and Errors are set when the input file failed validation:
	// nothing was enqueued and there is no mimoq batch.
	FailedAt   time.Time
	Errors     []batchError
	ErrorCount int
}

// batchError is one entry of a failed batch's errors.data.
type batchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

// Key layout:
//
//	mimoq:openai:batch:<id>              hash: the batch's OpenAI record
//	mimoq:openai:batch:<id>:submitting   string: held while a replica validates and enqueues it
//	mimoq:openai:batches                 sorted set: the batches by creation (ms)
func recordKey(id string) string { return job.KeyPrefix + "openai:batch:" + id }
func leaseKey(id string) string  { return recordKey(id) + ":submitting" }

const batchIndexKey = job.KeyPrefix + "openai:batches"

// leaseTTL is how long a submit holds its batch without renewing: a replica
// that dies mid-submit leaves the batch to be resumed after it.
const leaseTTL = 30 * time.Second

// batchStore keeps batch records in Redis.
type batchStore struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

func (s *batchStore) create(ctx context.Context, rec *batchRecord) error {
	meta, _ := json.Marshal(rec.Metadata)
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, recordKey(rec.ID), "id", rec.ID, "input_file_id", rec.InputFileID, "filename", rec.Filename,
		"endpoint", rec.Endpoint, "completion_window", rec.CompletionWindow, "metadata", meta,
		"created_ms", rec.CreatedAt.UnixMilli(), "expires_ms", rec.ExpiresAt.UnixMilli(), "webhook", rec.Webhook,
		"weight", rec.Weight, "tenant", rec.Tenant)
	pipe.Expire(ctx, recordKey(rec.ID), s.ttl)
	pipe.ZAdd(ctx, batchIndexKey, redis.Z{Score: float64(rec.CreatedAt.UnixMilli()), Member: rec.ID})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("create batch %s: %w", rec.ID, err)
	}
	return nil
}

// fail records that the batch's input file failed validation.
func (s *batchStore) fail(ctx context.Context, id string, errs []batchError, count int, now time.Time) error {
	b, _ := json.Marshal(errs)
	if err := s.rdb.HSet(ctx, recordKey(id), "failed_ms", now.UnixMilli(), "errors", b, "error_count", count).Err(); err != nil {
		return fmt.Errorf("batch %s: %w", id, err)
	}
	return nil
}

func (s *batchStore) get(ctx context.Context, id string) (*batchRecord, error) {
	h, err := s.rdb.HGetAll(ctx, recordKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read batch %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("batch %s: %w", id, errNoSuchBatch)
	}
	return recordFromHash(h)
}

func recordFromHash(h map[string]string) (*batchRecord, error) {
	ms := func(k string) time.Time {
		n, err := strconv.ParseInt(h[k], 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	rec := &batchRecord{ID: h["id"], InputFileID: h["input_file_id"], Filename: h["filename"], Endpoint: h["endpoint"],
		CompletionWindow: h["completion_window"], CreatedAt: ms("created_ms"), ExpiresAt: ms("expires_ms"),
		FailedAt: ms("failed_ms"), Webhook: h["webhook"], Tenant: h["tenant"]}
	rec.Weight, _ = strconv.Atoi(h["weight"])
	if v := h["metadata"]; v != "" && v != "null" {
		if err := json.Unmarshal([]byte(v), &rec.Metadata); err != nil {
			return nil, fmt.Errorf("batch %s: bad metadata: %w", rec.ID, err)
		}
	}
	if v := h["errors"]; v != "" {
		if err := json.Unmarshal([]byte(v), &rec.Errors); err != nil {
			return nil, fmt.Errorf("batch %s: bad errors: %w", rec.ID, err)
		}
	}
	rec.ErrorCount, _ = strconv.Atoi(h["error_count"])
	return rec, nil
}

// list returns up to limit batch IDs, newest first, after the batch after
// ("" for the first page); more says whether further ones follow. Batches
// whose record expired leave the index as they are met.
func (s *batchStore) list(ctx context.Context, after string, limit int) ([]*batchRecord, bool, error) {
	start := int64(0)
	if after != "" {
		rank, err := s.rdb.ZRevRank(ctx, batchIndexKey, after).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return nil, false, nil // the cursor's batch expired: nothing is known after it
		case err != nil:
			return nil, false, fmt.Errorf("list batches: %w", err)
		}
		start = rank + 1
	}
	var out []*batchRecord
	for len(out) <= limit {
		ids, err := s.rdb.ZRevRange(ctx, batchIndexKey, start, start+int64(limit)).Result()
		if err != nil {
			return nil, false, fmt.Errorf("list batches: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		start += int64(len(ids))
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, recordKey(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, false, fmt.Errorf("list batches: %w", err)
		}
		var gone []any
		for i, c := range cmds {
			if len(c.Val()) == 0 {
				gone = append(gone, ids[i])
				continue
			}
			rec, err := recordFromHash(c.Val())
			if err != nil {
				return nil, false, err
			}
			out = append(out, rec)
		}
		if len(gone) > 0 {
			_ = s.rdb.ZRem(ctx, batchIndexKey, gone...).Err()
		}
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// hold takes the submit lease of batch id for this process, if no one holds
// it; it is renewed until release is called.
func (s *batchStore) hold(ctx context.Context, id string) (release func(), ok bool, err error) {
	token := strconv.FormatInt(time.Now().UnixNano(), 36)
	ok, err = s.rdb.SetNX(ctx, leaseKey(id), token, leaseTTL).Result()
	if err != nil || !ok {
		return nil, false, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = s.rdb.Expire(ctx, leaseKey(id), leaseTTL).Err()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		if v, _ := s.rdb.Get(rctx, leaseKey(id)).Result(); v == token {
			_ = s.rdb.Del(rctx, leaseKey(id)).Err()
		}
	}, true, nil
}
