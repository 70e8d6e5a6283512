package enqueue

// DefaultPrefix starts every Redis key mimoq writes besides asynq's own.
const DefaultPrefix = "mimoq:"

// keys builds Redis key names. Keys of one job share the hash tag {<job id>}
// and keys of one batch share {<batch id>}, so that every Lua script touches a
// single Redis Cluster slot.
type keys struct{ prefix string }

func (k keys) job(id string) string        { return k.prefix + "job:{" + id + "}" }
func (k keys) history(id string) string    { return k.prefix + "job:{" + id + "}:history" }
func (k keys) batch(id string) string      { return k.prefix + "batch:{" + id + "}" }
func (k keys) batchFinal(id string) string { return k.prefix + "batch:{" + id + "}:final" }
func (k keys) idem(hash string) string     { return k.prefix + "idem:" + hash }

// DoneChannel is the pub/sub channel on which the completion of job id is
// announced (the message is the final state), for waiters that must not poll.
func DoneChannel(prefix, id string) string { return prefix + "done:" + id }

// BatchDoneChannel is the pub/sub channel on which the end of batch id (every
// job final) is announced.
func BatchDoneChannel(prefix, id string) string { return prefix + "batchdone:" + id }
