package records

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/mimoq/mimoq/internal/job"
)

// Key layout. Every key of one job, and every key of a batch together with
// the keys of all its jobs, share one hash tag, so that each script below
// touches a single Redis Cluster slot: a job's state and its batch's counts
// change in one atomic step.
//
//	mimoq:job:{T}:<id>          hash: the job (state, outcome, history)
//	mimoq:job:{T}:<id>:body     string: its request (until it succeeds or is canceled)
//	mimoq:batch:{T}:<id>        hash: the batch (file hash, counts, usage)
//	mimoq:batch:{T}:<id>:lines  bitmap: the lines whose records were written
//	mimoq:batch:{T}:<id>:backlog:<model>, …:backlogs
//	                            the batch's jobs waiting for their turn (backlog.go)
//	mimoq:batches               sorted set: batch IDs by creation (ms)
//	mimoq:live                  sorted set: single jobs not known to be final, for the reconciler
//	mimoq:idem:<hash>           string: the job ID an idempotency key gave
//	mimoq:reconciler            hash: the reconciler's last run and totals
//	mimoq:done:<id>             pub/sub: job id reached a final state
//	mimoq:batchdone:<id>        pub/sub: every job of batch id is final
//
// The tag T of a job is characters 10–18 of its ULID: 45 bits of the ULID's
// entropy. A batch's job IDs carry the batch ID's hash in exactly those bits
// (batchJobID), so all of a batch's jobs and the batch record fall into one
// slot, which batchTag computes from the batch ID alone; single jobs get
// random tags and spread over the cluster. An ID that is not a ULID is its
// own tag.
const (
	batchesKey    = job.KeyPrefix + "batches"
	liveKey       = job.KeyPrefix + "live"
	reconcilerKey = job.KeyPrefix + "reconciler"
)

func tagOf(id string) string {
	if len(id) == ulid.EncodedSize {
		if _, err := ulid.ParseStrict(id); err == nil {
			return id[10:19]
		}
	}
	return id
}

func jobKey(id string) string    { return job.KeyPrefix + "job:{" + tagOf(id) + "}:" + id }
func bodyKey(id string) string   { return jobKey(id) + ":body" }
func batchKey(id string) string  { return job.KeyPrefix + "batch:{" + batchTag(id) + "}:" + id }
func idemKey(hash string) string { return job.KeyPrefix + "idem:" + hash }

// batchLinesKey is the bitmap of batch id's lines whose records were
// written (by the submit, or as canceled by a cancel).
func batchLinesKey(id string) string { return batchKey(id) + ":lines" }

// DoneChannel is the pub/sub channel on which the completion of job id is
// announced (the message is the final state), for waiters that must not poll.
func DoneChannel(id string) string { return job.KeyPrefix + "done:" + id }

// BatchDoneChannel is the pub/sub channel on which the end of batch id (every
// job final) is announced.
func BatchDoneChannel(id string) string { return job.KeyPrefix + "batchdone:" + id }

// batchEntropy is the part of a batch's job IDs that comes from the batch ID.
func batchEntropy(batchID string) [6]byte {
	h := sha256.Sum256([]byte(batchID))
	return [6]byte(h[:6])
}

// batchTag is the hash tag of batch id's keys and of its jobs' keys.
func batchTag(batchID string) string {
	var id ulid.ULID
	e := batchEntropy(batchID)
	copy(id[6:12], e[:])
	return id.String()[10:19]
}

// batchJobID is the job ID of line index (0-based) of a batch: a ULID with
// the batch's creation time and an entropy made of the batch ID's hash and
// the index, so that submitting the same batch again yields the same IDs
// (nothing is enqueued twice), IDs sort in input order, and all of them
// share the batch's hash tag.
func batchJobID(batchID string, createdMs int64, index int) string {
	var id ulid.ULID
	_ = id.SetTime(uint64(createdMs))
	e := batchEntropy(batchID)
	copy(id[6:12], e[:])
	binary.BigEndian.PutUint32(id[12:], uint32(index))
	return id.String()
}

// NewID returns a new job or batch ID: a ULID, unique and sortable by time
// (to the millisecond). Its entropy is fresh for every ID, not incremented
// within a millisecond as ulid.Make does, so that single jobs submitted in a
// burst get different hash tags and spread over a cluster's slots.
func NewID() string { return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String() }
