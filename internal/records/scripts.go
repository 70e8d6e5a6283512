package records

import "github.com/redis/go-redis/v9"

// The scripts below are every change of a job's or a batch's state. Each
// touches one slot (see keys.go), so each transition and its effect on the
// batch's counts is atomic: a count is never taken without the state change
// that causes it, nor left behind by one that was undone.
//
// They are on the path of every job, and each Redis command a script runs
// costs about as much as the script's own start: a job's fields are written
// in one HSET, its history is a field of its hash (a JSON array, appended
// to), and a batch is read once per count.

// luaCommon holds the helpers every script shares. A batch's record bk has
// a bitmap bk..':lines' of the lines whose records were written, and a job's
// record k its request in k..':body' (a script names them from the key it
// was given: they share its slot). The request is a string of its own so
// that the record stays a compact hash (Redis keeps a hash with a value over
// 64 bytes in its larger encoding); it goes once the job has succeeded or
// been canceled, and stays with a dead job for its dead letter and a
// requeue.
const luaCommon = `
local function final(st) return st == 'succeeded' or st == 'dead' or st == 'canceled' or st == 'expired' end
-- appended is the history h (a JSON array, or nil) with entry e added.
local function appended(h, e)
  if not h or h == '' then return '[' .. e .. ']' end
  return string.sub(h, 1, -2) .. ',' .. e .. ']'
end
-- endFields are the fields a running batch ends with, as a list to add
-- to: state expired when any of its jobs expired (its window passed
-- before they ran; no walk over its lines is left to do), else done.
local function endFields(set, expired, now)
  local n = #set
  if tonumber(expired or '0') > 0 then
    set[n + 1], set[n + 2], set[n + 3], set[n + 4], set[n + 5], set[n + 6] =
      'state', 'expired', 'expired_at', now, 'cancel_done', 1
  else
    set[n + 1], set[n + 2] = 'state', 'done'
  end
  return set
end
-- closeBatch ends batch bk, whose jobs are all final and whose state is
-- st, with exp jobs expired: state done or expired (a canceled or expired
-- batch keeps its state), finished_at, the TTL of its keys and the
-- batch's completion notice.
local function closeBatch(bk, bid, st, exp, now, ttl)
  if st == 'running' then
    redis.call('HSET', bk, unpack(endFields({'finished_at', now}, exp, now)))
  else
    redis.call('HSET', bk, 'finished_at', now)
  end
  if tonumber(ttl) > 0 then
    redis.call('EXPIRE', bk, ttl)
    redis.call('EXPIRE', bk .. ':lines', ttl)
  end
  redis.call('PUBLISH', 'mimoq:batchdone:' .. bid, 'done')
end
-- over says whether the batch read as h (batchFields) is over once add
-- more of its jobs are final.
local function overAfter(h, add)
  if (h[1] ~= 'running' and h[1] ~= 'canceled' and h[1] ~= 'expired') or h[6] then return false end
  local fin = tonumber(h[3] or '0') + tonumber(h[4] or '0') + tonumber(h[5] or '0') + tonumber(h[7] or '0') + add
  return fin >= tonumber(h[2] or '0')
end
local batchFields = {'state', 'total', 'succeeded', 'dead', 'canceled', 'finished_at', 'expired'}
-- endBatch ends batch bk if every job of it is final; 1 when it did.
local function endBatch(bk, bid, now, ttl)
  local h = redis.call('HMGET', bk, unpack(batchFields))
  if not overAfter(h, 0) then return 0 end
  closeBatch(bk, bid, h[1], h[7], now, ttl)
  return 1
end
-- countOne counts one job's final state st (and its usage u) in its batch,
-- if the batch is kept, and ends the batch when that was its last job
-- (returns 1 then): one read and one write of the batch.
local usageFields = {'prompt_tokens', 'cached_tokens', 'completion_tokens', 'reasoning_tokens', 'total_tokens'}
local function countOne(bk, bid, st, u, now, ttl)
  local h = redis.call('HMGET', bk, 'state', 'total', 'succeeded', 'dead', 'canceled', 'finished_at', 'expired',
    unpack(usageFields))
  if not h[1] then return 0 end
  local col = ({succeeded = 3, dead = 4, canceled = 5, expired = 7})[st]
  local set = {st, tonumber(h[col] or '0') + 1}
  if u and tonumber(u[5]) > 0 then
    for i = 1, 5 do
      if u[i] ~= '0' then
        set[#set + 1] = usageFields[i]
        set[#set + 1] = tonumber(h[7 + i] or '0') + tonumber(u[i])
      end
    end
  end
  local ended = 0
  if overAfter(h, 1) then
    if h[1] == 'running' then
      local exp = tonumber(h[7] or '0')
      if st == 'expired' then exp = exp + 1 end
      endFields(set, exp, now)
    end
    set[#set + 1] = 'finished_at'
    set[#set + 1] = now
    ended = 1
  end
  redis.call('HSET', bk, unpack(set))
  if ended == 1 then
    if tonumber(ttl) > 0 then
      redis.call('EXPIRE', bk, ttl)
      redis.call('EXPIRE', bk .. ':lines', ttl)
    end
    redis.call('PUBLISH', 'mimoq:batchdone:' .. bid, 'done')
  end
  return ended
end
-- reopen makes an ended batch whose job was requeued pending again.
local function reopen(bk)
  if redis.call('HDEL', bk, 'finished_at') == 1 then
    if redis.call('HGET', bk, 'state') == 'done' then redis.call('HSET', bk, 'state', 'running') end
    redis.call('PERSIST', bk)
    redis.call('PERSIST', bk .. ':lines')
  end
end
-- uncountDead takes a requeued job out of its batch's dead count.
local function uncountDead(bk)
  if redis.call('EXISTS', bk) == 0 then return end
  if tonumber(redis.call('HGET', bk, 'dead') or '0') > 0 then redis.call('HINCRBY', bk, 'dead', -1) end
  reopen(bk)
end
-- batchKeyOf is the key of batch bid of the job whose key is k: a batch's
-- jobs share its hash tag (keys.go), so the key is in the job's slot.
local function batchKeyOf(k, bid)
  local pre, tag = string.match(k, '^(.*)job:{([^}]*)}:')
  return pre .. 'batch:{' .. tag .. '}:' .. bid
end
-- expireJob ends job k (id, of batch bid or ''), whose deadline has
-- passed before it started, as expired: counted in its batch, or announced.
local function expireJob(k, id, bid, now, ttl)
  redis.call('HSET', k, 'state', 'expired', 'updated_at', now, 'finished_at', now)
  redis.call('HDEL', k, 'lease', 'due_at')
  redis.call('DEL', k .. ':body')
  if tonumber(ttl) > 0 then redis.call('EXPIRE', k, ttl) end
  if bid ~= '' then
    countOne(batchKeyOf(k, bid), bid, 'expired', nil, now, ttl)
  else
    redis.call('PUBLISH', 'mimoq:done:' .. id, 'expired')
  end
end
`

// createScript writes the record of a new single job in state queued,
// unless a record with its ID exists; it returns the state found, or
// "created". KEYS: job. ARGV: request, then field/value pairs.
var createScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st then return st end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SET', KEYS[1] .. ':body', ARGV[1])
return 'created'
`)

// batchCreateScript creates a batch record unless one exists; an existing
// record must describe the same file (hash and line count). The reconciler
// counts a batch's progress from its creation (audit_fin, audited_ms).
// KEYS: batch. ARGV: id, sha256, total, queue, source, created_at,
// created_ms, expires_at and expires_ms (empty for no completion window),
// webhook URL (or empty), weight (1 or more), tenant (or empty).
var batchCreateScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st then
  local ms = redis.call('HGET', KEYS[1], 'created_ms')
  if redis.call('HGET', KEYS[1], 'sha256') ~= ARGV[2] or redis.call('HGET', KEYS[1], 'total') ~= ARGV[3] then
    return {'conflict', st, ms}
  end
  return {'exists', st, ms}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'submitting', 'sha256', ARGV[2], 'total', ARGV[3],
  'queue', ARGV[4], 'source', ARGV[5], 'created_at', ARGV[6], 'created_ms', ARGV[7],
  'enqueued', 0, 'succeeded', 0, 'dead', 0, 'canceled', 0, 'expired', 0, 'audit_fin', 0, 'audited_ms', ARGV[7])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'expires_at', ARGV[8], 'expires_ms', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'webhook', ARGV[10]) end
if ARGV[11] ~= '1' then redis.call('HSET', KEYS[1], 'weight', ARGV[11]) end
if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'tenant', ARGV[12]) end
return {'created', 'submitting', ARGV[7]}
`)

// chunkScript writes the records of a chunk of a batch's lines. A line
// whose record exists is left alone; nothing is written once the batch is
// canceled or expired (the cancel or expiry accounts for every line not
// written). A batch with a completion window gives each job its end as
// the job's deadline. It returns,
// per line, 1 when it wrote the record, 2 when a non-final record was there
// (its task may be missing: an interrupted submit), 0 otherwise.
// Each line written is marked in the batch's bitmap of lines.
// KEYS: batch, lines bitmap, then one job key per line. ARGV: batch id,
// queue, submitted_at, then index, id, custom_id, model, body per line.
var chunkScript = redis.NewScript(`
local out = {}
local n = #KEYS - 2
if redis.call('HGET', KEYS[1], 'state') ~= 'submitting' then
  for i = 1, n do out[i] = 0 end
  return out
end
local created = 0
local deadline = redis.call('HGET', KEYS[1], 'expires_ms')
for i = 1, n do
  local k = KEYS[i + 2]
  local a = 4 + (i - 1) * 5
  redis.call('SETBIT', KEYS[2], ARGV[a], 1)
  local st = redis.call('HGET', k, 'state')
  if not st then
    redis.call('HSET', k, 'id', ARGV[a + 1], 'batch_id', ARGV[1], 'custom_id', ARGV[a + 2], 'queue', ARGV[2],
      'model', ARGV[a + 3], 'state', 'queued', 'attempts', 0, 'submitted_at', ARGV[3])
    if deadline then redis.call('HSET', k, 'deadline_ms', deadline) end
    redis.call('SET', k .. ':body', ARGV[a + 4])
    created = created + 1
    out[i] = 1
  elseif st == 'succeeded' or st == 'dead' or st == 'canceled' or st == 'expired' then
    out[i] = 0
  else
    out[i] = 2
  end
end
if created > 0 then redis.call('HINCRBY', KEYS[1], 'enqueued', created) end
return out
`)

// sealScript marks a batch fully enqueued, and ends it if every job is
// final already. KEYS: batch. ARGV: now, ttl, batch id.
var sealScript = redis.NewScript(luaCommon + `
if redis.call('HGET', KEYS[1], 'state') == 'submitting' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'submitted_at', ARGV[1])
end
return endBatch(KEYS[1], ARGV[3], ARGV[1], ARGV[2])
`)

// beginScript hands a job to a delivery (a worker's run of its task), or
// says why not: the record is missing (it expired after a final state, or
// was never written), the job is final, or its next attempt is not due
// yet. The delivery's lease (a nonce) fences every later write of this
// delivery: once another delivery begins, or the job is requeued, the old
// delivery's writes change nothing. A record still running under another
// lease means that delivery was interrupted (its worker crashed or lost
// Redis): noted in the history and counted in interrupts, not as an
// attempt. The same call run twice (a reply lost, the command sent again)
// is recognised by its lease. A job that has not started (queued, or
// waiting for a retry) whose deadline has passed is expired instead of
// run: it is never called late.
// KEYS: job. ARGV: now (ms), now, lease, worker, ttl (s), job id.
// Reply: {'missing'} | {'final', state, attempts[, 1 when this call
// expired it]} | {'wait', due ms} | {'run', attempts, interrupts,
// interrupted, body, model, batch id, requeues, webhook URL or empty}.
var beginScript = redis.NewScript(luaCommon + `
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'due_at', 'attempts', 'interrupts',
  'running_since', 'running_worker', 'model', 'batch_id', 'requeues', 'history', 'deadline_ms', 'webhook')
local st = f[1]
if not st then return {'missing'} end
local attempts = tonumber(f[4] or '0')
if final(st) then return {'final', st, attempts} end
local interrupts = tonumber(f[5] or '0')
local function body() return redis.call('GET', KEYS[1] .. ':body') or '' end
if st == 'running' and f[2] == ARGV[3] then
  return {'run', attempts, interrupts, 0, body(), f[8] or '', f[9] or '', f[10] or '0', f[13] or ''}
end
if st ~= 'running' and f[12] and tonumber(f[12]) <= tonumber(ARGV[1]) then
  expireJob(KEYS[1], ARGV[6], f[9] or '', ARGV[2], ARGV[5])
  return {'final', 'expired', attempts, 1}
end
local due = tonumber(f[3] or '0')
if due > tonumber(ARGV[1]) then return {'wait', due} end
local interrupted = 0
if st == 'running' then
  interrupted, interrupts = 1, interrupts + 1
  local e = cjson.encode({attempt = attempts + 1, start = f[6] or ARGV[2], reason = 'interrupted', worker = f[7] or ''})
  redis.call('HSET', KEYS[1], 'state', 'running', 'lease', ARGV[3], 'running_since', ARGV[2],
    'running_worker', ARGV[4], 'updated_at', ARGV[2], 'interrupts', interrupts, 'history', appended(f[11], e))
else
  redis.call('HSET', KEYS[1], 'state', 'running', 'lease', ARGV[3], 'running_since', ARGV[2],
    'running_worker', ARGV[4], 'updated_at', ARGV[2])
end
if f[3] then redis.call('HDEL', KEYS[1], 'due_at') end
return {'run', attempts, interrupts, interrupted, body(), f[8] or '', f[9] or '', f[10] or '0', f[13] or ''}
`)

// finishScript records the outcome of a delivery's attempt: the job's new
// state, its result or error, a history entry, and, for a final state, the
// count in its batch and the completion notices. Only the delivery holding
// the lease may write, once: a write under another lease is stale (the job
// was requeued or redelivered meanwhile), and a second write under the same
// lease is the first one replayed (its reply was lost). Neither changes
// anything. (running_since and running_worker stay behind: they only mean
// something while the job is running.)
// A batch job's success adds its cost to the batch's spend in the same
// step.
// KEYS: job, batch, the batch's spend (the job key again for both, for a
// single job).
// ARGV: lease, state, counted (0|1), history entry or ”, ttl (s), now,
// batch id or ”, prompt, cached, completion, reasoning, total tokens, job
// id, cost (pico-USD), then field/value pairs to set.
// Reply: {'missing'} | {'stale', state, attempts} | {'replay', state,
// attempts} | {'ok', state, attempts, batch ended (0|1), the batch's
// spend, its maximum (pico-USD; 0 0 when no cost was added)}.
var finishScript = redis.NewScript(luaCommon + `
local f = redis.call('HMGET', KEYS[1], 'state', 'lease', 'attempts', 'history')
local st = f[1]
if not st then return {'missing'} end
local attempts = tonumber(f[3] or '0')
if f[2] ~= ARGV[1] then return {'stale', st, attempts} end
if st ~= 'running' then return {'replay', st, attempts} end
local new = ARGV[2]
local isFinal = final(new)
local set = {'state', new, 'updated_at', ARGV[6]}
for i = 15, #ARGV do set[#set + 1] = ARGV[i] end
if ARGV[3] == '1' then
  attempts = attempts + 1
  set[#set + 1] = 'attempts'
  set[#set + 1] = attempts
end
if ARGV[4] ~= '' then
  set[#set + 1] = 'history'
  set[#set + 1] = appended(f[4], ARGV[4])
end
if isFinal then
  set[#set + 1] = 'finished_at'
  set[#set + 1] = ARGV[6]
end
redis.call('HSET', KEYS[1], unpack(set))
local ended, spend, maxSpend = 0, 0, 0
if isFinal then
  if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
  if new == 'dead' then
    if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[1] .. ':body', ARGV[5]) end
  else
    redis.call('DEL', KEYS[1] .. ':body')
  end
  if ARGV[7] ~= '' then
    ended = countOne(KEYS[2], ARGV[7], new, {ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]}, ARGV[6], ARGV[5])
    if new == 'succeeded' and tonumber(ARGV[14]) > 0 then
      spend = redis.call('HINCRBY', KEYS[3], 'pico', ARGV[14])
      if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
      maxSpend = tonumber(redis.call('HGET', KEYS[3], 'max_pico') or '0') or 0
    end
  else
    -- A single job's waiter hears its end at once; a batch's jobs are
    -- announced together, by the batch's notice (a waiter on one of them
    -- polls).
    redis.call('PUBLISH', 'mimoq:done:' .. ARGV[13], new)
  end
end
return {'ok', new, attempts, ended, spend, maxSpend}
`)

// abandonScript dead-letters a job no delivery can finish: its task was
// archived by asynq, or lost and cannot be re-created. A final job is left
// as it is. KEYS: job, batch (or the job key). ARGV: now, ttl, batch id or
// ”, history entry, error JSON.
var abandonScript = redis.NewScript(luaCommon + `
local f = redis.call('HMGET', KEYS[1], 'state', 'history', 'id')
local st = f[1]
if not st then return 'missing' end
if final(st) then return st end
redis.call('HSET', KEYS[1], 'state', 'dead', 'error', ARGV[5], 'updated_at', ARGV[1], 'finished_at', ARGV[1],
  'history', appended(f[2], ARGV[4]))
redis.call('HDEL', KEYS[1], 'lease', 'due_at')
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1] .. ':body', ARGV[2])
end
if ARGV[3] ~= '' then countOne(KEYS[2], ARGV[3], 'dead', nil, ARGV[1], ARGV[2]) end
redis.call('PUBLISH', 'mimoq:done:' .. (f[3] or ''), 'dead')
return 'dead'
`)

// cancelBatchScript marks a batch canceled (or expired) unless it is over
// or ended early already. KEYS: batch. ARGV: now, the new state (canceled
// or expired). Returns the state it had, or 'missing'.
var cancelBatchScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'missing' end
if (st == 'submitting' or st == 'running') then
  redis.call('HSET', KEYS[1], 'state', ARGV[2], ARGV[2] .. '_at', ARGV[1])
end
return st
`)

// cancelChunkScript ends the jobs of a chunk of a canceled (or expired)
// batch's lines that have not started (queued, or waiting for a retry) in
// state ARGV[5], canceled or expired, and writes such a record for each
// line that was never enqueued, so that every line ends in exactly one
// final state and a late submit finds it taken. A line that was enqueued
// and whose record is gone was final and has expired: it is counted
// already. Running jobs finish.
// KEYS: batch, lines bitmap, then one job key per line.
// ARGV: now, ttl, batch id, queue, state, then job ID and index per line.
// Returns {jobs ended, batch ended (0|1)}.
var cancelChunkScript = redis.NewScript(luaCommon + `
local n = #KEYS - 2
local ended = 0
local ttl = tonumber(ARGV[2])
local new = ARGV[5]
for i = 1, n do
  local k = KEYS[i + 2]
  local id, index = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local st = redis.call('HGET', k, 'state')
  local did = false
  if not st and redis.call('GETBIT', KEYS[2], index) == 0 then
    redis.call('SETBIT', KEYS[2], index, 1)
    redis.call('HSET', k, 'id', id, 'batch_id', ARGV[3], 'queue', ARGV[4], 'state', new,
      'attempts', 0, 'never_enqueued', 1, 'submitted_at', ARGV[1], 'updated_at', ARGV[1], 'finished_at', ARGV[1])
    did = true
  elseif st == 'queued' or st == 'retrying' then
    redis.call('HSET', k, 'state', new, 'updated_at', ARGV[1], 'finished_at', ARGV[1])
    redis.call('HDEL', k, 'lease', 'due_at')
    redis.call('DEL', k .. ':body')
    did = true
  end
  if did then
    if ttl > 0 then redis.call('EXPIRE', k, ttl) end
    ended = ended + 1
  end
end
if ended > 0 then redis.call('HINCRBY', KEYS[1], new, ended) end
return {ended, endBatch(KEYS[1], ARGV[3], ARGV[1], ARGV[2])}
`)

// expireJobScript expires a job whose deadline has passed, if it has not
// started (queued, or waiting for a retry); a running job finishes.
// KEYS: job. ARGV: now (ms), now, ttl (s), job id.
// Returns the job's state after, or 'missing'.
var expireJobScript = redis.NewScript(luaCommon + `
local f = redis.call('HMGET', KEYS[1], 'state', 'deadline_ms', 'batch_id')
local st = f[1]
if not st then return 'missing' end
if (st == 'queued' or st == 'retrying') and f[2] and tonumber(f[2]) <= tonumber(ARGV[1]) then
  expireJob(KEYS[1], ARGV[4], f[3] or '', ARGV[2], ARGV[3])
  return 'expired'
end
return st
`)

// requeueScript gives a dead job a fresh attempt budget and puts it back to
// queued, keeping its history (an operator's requeue is a fresh start: a
// deadline it had is gone); its batch counts it pending again (and an
// ended batch is open again until its last job is counted anew). The
// requeue ends every earlier delivery's lease. A record found queued (or
// further) whose requeued_from matches is one an earlier, interrupted run of
// the same requeue reset already; a dead record with another death than the
// dead letter's is another dead letter's job.
// KEYS: job, batch (or the job key). ARGV: now, history entry, batch id or
// ”, dead-letter time (the finished_at it requeues), new model or ”, the
// request (the dead letter's, or rewritten for the new model).
// Reply: {'requeued'} | {'already', state} | {'not_dead', state} |
// {'missing'}.
var requeueScript = redis.NewScript(luaCommon + `
local f = redis.call('HMGET', KEYS[1], 'state', 'finished_at', 'requeued_from', 'history', 'requeues')
local st = f[1]
if not st then return {'missing'} end
if st ~= 'dead' then
  if f[3] and f[3] == ARGV[4] then return {'already', st} end
  return {'not_dead', st}
end
if f[2] and f[2] ~= ARGV[4] then return {'not_dead', st} end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'interrupts', 0, 'updated_at', ARGV[1],
  'requeued_from', f[2] or ARGV[4], 'requeues', tonumber(f[5] or '0') + 1, 'history', appended(f[4], ARGV[2]))
redis.call('HDEL', KEYS[1], 'finished_at', 'error', 'error_body', 'status_code', 'request_id', 'due_at', 'lease',
  'result', 'usage', 'served_model', 'retry_at', 'deadline_ms')
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'model', ARGV[5]) end
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[1] .. ':body', ARGV[6])
else
  redis.call('PERSIST', KEYS[1] .. ':body')
end
redis.call('PERSIST', KEYS[1])
if ARGV[3] ~= '' then uncountDead(KEYS[2]) end
return {'requeued'}
`)

// recreateScript writes the record of a dead job whose record has expired,
// from its dead letter, as a requeued job; its batch, if it is still kept,
// counts it pending again. KEYS: job, batch (or the job key). ARGV: batch
// id or ”, the request, then field/value pairs.
var recreateScript = redis.NewScript(luaCommon + `
local st = redis.call('HGET', KEYS[1], 'state')
if st then return st end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SET', KEYS[1] .. ':body', ARGV[2])
if ARGV[1] ~= '' then uncountDead(KEYS[2]) end
return 'requeued'
`)
