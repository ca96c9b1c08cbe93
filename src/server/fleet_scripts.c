/* fleet_scripts.c: every change of a job's state in the fleet, as Lua run
 * inside Redis (EVALSHA), so that each is atomic, replicated and written to
 * the append-only file as one step. fleet.h draws how a job moves; here is
 * each arrow:
 *
 *   submit     a front: record + queue entry + count, unless the fleet's
 *              queue is at --queue-max
 *   take       an idle worker: the next entry of one queue (XREADGROUP, one
 *              entry, so no busy worker ever holds a job) -> running
 *   claim      an idle worker: an entry pending at a worker whose heartbeat
 *              is older than --claim-after (XPENDING, XCLAIM) -> running
 *              again, attempt + 1, a `requeued` event; or failed after
 *              --max-attempts lost runs
 *   publish    the owner: events, progress; answers "cancel" or "lost"
 *   finish     the owner: complete | failed | cancelled with its result
 *   requeue    the owner, stopping: back to queued
 *   cancel     a front: a queued job ends now, a running one is flagged
 * and the reads: status, progress (A1111's current job), gauges, workers,
 * models (the live workers' models), heartbeat (a worker's registry entry).
 *
 * Keys (P = --redis-prefix): P job:ID (hash), P events:ID (stream), P queue
 * and P queue:MODEL (streams, group `workers`), P queues (set of them),
 * P queued (zset: queued ids by submission), P seq, P workers (zset: id by
 * last heartbeat, Redis's clock), P worker:ID (hash), P wake (stream that
 * wakes idle workers), P stats (hash of fleet-wide counts). The scripts
 * name keys from the prefix: one Redis (with replicas), not Redis Cluster. */
#include "server/fleet_internal.h"
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* What every script starts with: the prefix, the clock, the keys, and the
 * three steps that several arrows share (emit, finish, start). */
#define PRELUDE                                                                                          \
    "local P = ARGV[1]\n"                                                                                \
    "local function now_ms()\n"                                                                          \
    "  local t = redis.call('TIME')\n"                                                                   \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                               \
    "end\n"                                                                                              \
    "local function jkey(id) return P .. 'job:' .. id end\n"                                             \
    "local function ekey(id) return P .. 'events:' .. id end\n"                                          \
    "local function wkey(w) return P .. 'worker:' .. w end\n"                                            \
    "local function field(f, name)\n"                                                                    \
    "  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end\n"                               \
    "  return nil\n"                                                                                     \
    "end\n"                                                                                              \
    /* A job's events are 0-1, 0-2, ...: the same SSE ids whoever adds them. */                         \
    "local function emit(id, name, data)\n"                                                              \
    "  local n = redis.call('HINCRBY', jkey(id), 'events', 1)\n"                                         \
    "  redis.call('XADD', ekey(id), '0-' .. n, 'event', name, 'data', data)\n"                           \
    "end\n"                                                                                              \
    /* The one place a state turns final; callers check it is not already. */                          \
    "local function finish(id, state, code, message, ttl)\n"                                             \
    "  local job = jkey(id)\n"                                                                           \
    "  local q, entry, w = unpack(redis.call('HMGET', job, 'queue', 'entry', 'worker'))\n"               \
    "  if state ~= 'completed' then\n"                                                                   \
    "    redis.call('HSET', job, 'error', message, 'error_code', code)\n"                                \
    "    emit(id, 'error', cjson.encode({type = 'error', message = message, code = code}))\n"            \
    "  end\n"                                                                                            \
    "  redis.call('HSET', job, 'state', state, 'finished', now_ms(), 'cancel', '')\n"                    \
    "  emit(id, 'done', cjson.encode({type = 'done', status = state}))\n"                                \
    "  if q and entry and entry ~= '' then\n"                                                            \
    "    redis.call('XACK', q, 'workers', entry)\n"                                                      \
    "    redis.call('XDEL', q, entry)\n"                                                                 \
    "  end\n"                                                                                            \
    "  redis.call('ZREM', P .. 'queued', id)\n"                                                          \
    "  if w and w ~= '' and redis.call('HGET', wkey(w), 'job') == id then\n"                             \
    "    redis.call('HSET', wkey(w), 'job', '', 'state', 'idle')\n"                                      \
    "  end\n"                                                                                            \
    "  redis.call('HINCRBY', P .. 'stats', state, 1)\n"                                                  \
    "  redis.call('PEXPIRE', job, ttl)\n"                                                                \
    "  redis.call('PEXPIRE', ekey(id), ttl)\n"                                                           \
    "end\n"                                                                                              \
    /* Worker w starts the job; the attempt number is its fencing token. */                             \
    "local function start(id, q, entry, w)\n"                                                            \
    "  local job = jkey(id)\n"                                                                           \
    "  local attempt = redis.call('HINCRBY', job, 'attempt', 1)\n"                                       \
    "  redis.call('HSET', job, 'state', 'running', 'worker', w, 'queue', q, 'entry', entry,\n"           \
    "             'started', now_ms(), 'step', 0, 'total', 0, 'cancel', '', 'published', 0)\n"           \
    "  redis.call('HDEL', job, 'preview')\n"                                                             \
    "  redis.call('ZREM', P .. 'queued', id)\n"                                                          \
    "  redis.call('HSET', wkey(w), 'job', id, 'state', 'busy')\n"                                        \
    "  local r = redis.call('HMGET', job, 'id', 'dialect', 'content_type', 'body', 'seed', 'model')\n"   \
    "  return {'run', id, entry, attempt, r[1], r[2], r[3], r[4], r[5], r[6]}\n"                         \
    "end\n"                                                                                              \
    /* An idle worker that Redis says runs a job took it, but the answer */                             \
    /* was lost with its connection: it starts that job again first. */                                 \
    "local function resume(w)\n"                                                                         \
    "  local id = redis.call('HGET', wkey(w), 'job')\n"                                                  \
    "  if not id or id == '' then return nil end\n"                                                      \
    "  local st, o, q, entry = unpack(redis.call('HMGET', jkey(id), 'state', 'worker', 'queue', 'entry'))\n" \
    "  if st == 'running' and o == w then\n"                                                             \
    "    local r = start(id, q, entry, w)\n"                                                               \
    "    r[11] = 'resumed'\n"                                                                              \
    "    return r\n"                                                                                       \
    "  end\n"                                                                                              \
    "  redis.call('HSET', wkey(w), 'job', '')\n"                                                         \
    "  return nil\n"                                                                                     \
    "end\n"                                                                                              \
    /* Whether worker w still owns the job in the attempt it started. */                                \
    "local function owned(id, w, attempt)\n"                                                             \
    "  local st, o, a = unpack(redis.call('HMGET', jkey(id), 'state', 'worker', 'attempt'))\n"           \
    "  return st == 'running' and o == w and a == attempt\n"                                             \
    "end\n"                                                                                              \
    /* What a run that no longer owns its job is told: the job's state, */                              \
    /* worker and attempt now (its own end, if the answer to it was lost). */                           \
    "local function lost(id)\n"                                                                          \
    "  local st, o, a = unpack(redis.call('HMGET', jkey(id), 'state', 'worker', 'attempt'))\n"          \
    "  return {'lost', st or '', o or '', a or ''}\n"                                                    \
    "end\n"

/* ARGV: P, id, dialect, kind, content_type, body, seed, model, queue_max */
static const char submit_lua[] = PRELUDE
    "local id, model, max = ARGV[2], ARGV[8], tonumber(ARGV[9])\n"
    "local queued = P .. 'queued'\n"
    "local depth = redis.call('ZCARD', queued)\n"
    "if max > 0 and depth >= max then return {'full', depth} end\n"
    "local job = jkey(id)\n"
    "if redis.call('EXISTS', job) == 1 then return {'exists', depth} end\n"
    "local q = P .. 'queue'\n"
    "if model ~= '' then q = q .. ':' .. model end\n"
    "redis.pcall('XGROUP', 'CREATE', q, 'workers', '0', 'MKSTREAM')\n"
    "local entry = redis.call('XADD', q, '*', 'id', id)\n"
    "local seq = redis.call('INCR', P .. 'seq')\n"
    "redis.call('HSET', job, 'id', id, 'dialect', ARGV[3], 'kind', ARGV[4], 'content_type', ARGV[5],\n"
    "           'body', ARGV[6], 'seed', ARGV[7], 'model', model, 'state', 'queued', 'queue', q,\n"
    "           'entry', entry, 'seq', seq, 'attempt', 0, 'lost', 0, 'events', 0, 'step', 0, 'total', 0,\n"
    "           'created', now_ms())\n"
    "redis.call('ZADD', queued, seq, id)\n"
    "redis.call('SADD', P .. 'queues', q)\n"
    "redis.call('XADD', P .. 'wake', 'MAXLEN', '~', '100', '*', 'queue', q)\n"
    "return {'ok', depth + 1}\n";

/* ARGV: P, worker, queue, defer_model, live_ms. With defer_model, a job on
 * that model's queue is left to an idle live worker that has it loaded. */
static const char take_lua[] = PRELUDE
    "local w, q, defer = ARGV[2], ARGV[3], ARGV[4]\n"
    "local again = resume(w)\n"
    "if again then return again end\n"
    "if defer ~= '' then\n"
    "  local since = now_ms() - tonumber(ARGV[5])\n"
    "  for _, o in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', since, '+inf')) do\n"
    "    if o ~= w then\n"
    "      local m, st = unpack(redis.call('HMGET', wkey(o), 'model_key', 'state'))\n"
    "      if m == defer and st == 'idle' then return {'defer', o} end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.pcall('XGROUP', 'CREATE', q, 'workers', '0', 'MKSTREAM')\n"
    "for i = 1, 64 do\n"
    "  local r = redis.call('XREADGROUP', 'GROUP', 'workers', w, 'COUNT', 1, 'STREAMS', q, '>')\n"
    "  if not r then return false end\n"
    "  local entry, f = r[1][2][1][1], r[1][2][1][2]\n"
    "  local id = field(f, 'id')\n"
    "  local st = id and redis.call('HGET', jkey(id), 'state')\n"
    "  if st == 'queued' then return start(id, q, entry, w) end\n"
    /* A cancelled job's entry, or one pointing nowhere: not a job to run. */
    "  redis.call('XACK', q, 'workers', entry)\n"
    "  redis.call('XDEL', q, entry)\n"
    "  if not st then return {'bad', entry, id or ''} end\n"
    "end\n"
    "return false\n";

/* ARGV: P, worker, claim_after_ms, max_attempts, ttl_ms, mine_too, queue...
 * mine_too: the worker has just started, so entries pending under its own
 * name were left by an earlier process with that name. */
static const char claim_lua[] = PRELUDE
    "local w, after, maxa, ttl, mine = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6] == '1'\n"
    "local again = resume(w)\n"
    "if again then return again end\n"
    "local now = now_ms()\n"
    "for k = 7, #ARGV do\n"
    "  local q = ARGV[k]\n"
    "  local pend = redis.pcall('XPENDING', q, 'workers', 'IDLE', after, '-', '+', 32)\n"
    "  if type(pend) == 'table' and not pend.err then\n"
    "    for _, p in ipairs(pend) do\n"
    "      local entry, owner = p[1], p[2]\n"
    "      local beat = redis.call('ZSCORE', P .. 'workers', owner)\n"
    "      if (owner == w and mine) or (owner ~= w and (not beat or now - tonumber(beat) > after)) then\n"
    "        local e = redis.call('XCLAIM', q, 'workers', w, after, entry)[1]\n"
    "        if e then\n"
    "          local id = field(e[2], 'id')\n"
    "          local st, cancel, reason, attempt = false, false, false, '0'\n"
    "          if id then\n"
    "            st, cancel, reason, attempt = unpack(redis.call('HMGET', jkey(id), 'state', 'cancel', 'cancel_reason', 'attempt'))\n"
    "          end\n"
    "          if st == 'running' or st == 'queued' then\n"
    "            local why = 'worker ' .. owner .. ' stopped heartbeating'\n"
    "            redis.call('HSET', jkey(id), 'queue', q, 'entry', entry)\n"
    "            if cancel == '1' then\n"
    "              finish(id, 'cancelled', 'cancelled', reason or 'cancelled by request', ttl)\n"
    "            else\n"
    "              local n = redis.call('HINCRBY', jkey(id), 'lost', 1)\n"
    "              if n >= maxa then\n"
    "                finish(id, 'failed', 'worker_lost', 'the job was started ' .. n .. ' times and each time its worker '\n"
    "                       .. 'stopped heartbeating (last: ' .. why .. '); --max-attempts is ' .. maxa, ttl)\n"
    "              else\n"
    "                redis.call('HINCRBY', P .. 'stats', 'requeued', 1)\n"
    "                emit(id, 'requeued', cjson.encode({type = 'requeued', attempt = (tonumber(attempt) or 0) + 1,\n"
    "                                                   previous_worker = owner, reason = why}))\n"
    "                return start(id, q, entry, w)\n"
    "              end\n"
    "            end\n"
    "          else\n"
    "            redis.call('XACK', q, 'workers', entry)\n"
    "            redis.call('XDEL', q, entry)\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return false\n";

/* ARGV: P, id, worker, attempt, step, total, eta, preview, upto,
 * [index, event, data]... index numbers the run's events (from 0) so that
 * a batch sent again, after its answer was lost, adds nothing twice. */
static const char publish_lua[] = PRELUDE
    "local id = ARGV[2]\n"
    "if not owned(id, ARGV[3], ARGV[4]) then return lost(id) end\n"
    "local job = jkey(id)\n"
    "local have = tonumber(redis.call('HGET', job, 'published')) or 0\n"
    "for i = 10, #ARGV - 2, 3 do\n"
    "  if tonumber(ARGV[i]) >= have then emit(id, ARGV[i + 1], ARGV[i + 2]) end\n"
    "end\n"
    "redis.call('HSET', job, 'published', ARGV[9], 'step', ARGV[5], 'total', ARGV[6], 'eta', ARGV[7])\n"
    "if ARGV[8] ~= '' then redis.call('HSET', job, 'preview', ARGV[8]) end\n"
    "local c, reason = unpack(redis.call('HMGET', job, 'cancel', 'cancel_reason'))\n"
    "if c == '1' then return {'cancel', reason or 'cancelled by request'} end\n"
    "return {'ok'}\n";

/* ARGV: P, id, worker, attempt, state, code, message, ttl_ms, complete, result, image... */
static const char finish_lua[] = PRELUDE
    "local id = ARGV[2]\n"
    "if not owned(id, ARGV[3], ARGV[4]) then return lost(id) end\n"
    "local job = jkey(id)\n"
    "if ARGV[10] ~= '' then\n"
    "  redis.call('HSET', job, 'result', ARGV[10], 'images', #ARGV - 10)\n"
    "  for i = 11, #ARGV do redis.call('HSET', job, 'image:' .. (i - 11), ARGV[i]) end\n"
    "end\n"
    "if ARGV[9] ~= '' then emit(id, 'complete', ARGV[9]) end\n"
    "redis.call('HDEL', job, 'preview')\n"
    "finish(id, ARGV[5], ARGV[6], ARGV[7], ARGV[8])\n"
    "return {'ok'}\n";

/* ARGV: P, id, worker, attempt, reason, ttl_ms */
static const char requeue_lua[] = PRELUDE
    "local id, w = ARGV[2], ARGV[3]\n"
    "if not owned(id, w, ARGV[4]) then return lost(id) end\n"
    "local job = jkey(id)\n"
    "local q, entry, seq, cancel, reason = unpack(redis.call('HMGET', job, 'queue', 'entry', 'seq', 'cancel', 'cancel_reason'))\n"
    "if cancel == '1' then\n"
    "  finish(id, 'cancelled', 'cancelled', reason or 'cancelled by request', ARGV[6])\n"
    "  return {'cancelled'}\n"
    "end\n"
    "redis.call('XACK', q, 'workers', entry)\n"
    "redis.call('XDEL', q, entry)\n"
    "local e = redis.call('XADD', q, '*', 'id', id)\n"
    "redis.call('HSET', job, 'state', 'queued', 'worker', '', 'entry', e, 'step', 0, 'total', 0)\n"
    "redis.call('HDEL', job, 'preview')\n"
    "redis.call('ZADD', P .. 'queued', tonumber(seq) or 0, id)\n"
    "if redis.call('HGET', wkey(w), 'job') == id then redis.call('HSET', wkey(w), 'job', '') end\n"
    "redis.call('HINCRBY', P .. 'stats', 'requeued', 1)\n"
    "emit(id, 'requeued', cjson.encode({type = 'requeued', attempt = tonumber(ARGV[4]) + 1, previous_worker = w,\n"
    "                                   reason = ARGV[5]}))\n"
    "redis.call('XADD', P .. 'wake', 'MAXLEN', '~', '100', '*', 'queue', q)\n"
    "return {'ok'}\n";

/* ARGV: P, id, reason, ttl_ms. Answers the state before, or nil. */
static const char cancel_lua[] = PRELUDE
    "local id = ARGV[2]\n"
    "local st = redis.call('HGET', jkey(id), 'state')\n"
    "if not st then return false end\n"
    "if st == 'queued' then finish(id, 'cancelled', 'cancelled', ARGV[3], ARGV[4])\n"
    "elseif st == 'running' then redis.call('HSET', jkey(id), 'cancel', '1', 'cancel_reason', ARGV[3]) end\n"
    "return st\n";

/* ARGV: P, id, with_images. Answers state, kind, step, total, error, code,
 * result, worker, attempt, queue position, image... or nil. */
static const char status_lua[] = PRELUDE
    "local id = ARGV[2]\n"
    "local job = jkey(id)\n"
    "local h = redis.call('HMGET', job, 'state', 'kind', 'step', 'total', 'error', 'error_code', 'result', 'images',\n"
    "                     'worker', 'attempt')\n"
    "if not h[1] then return false end\n"
    "local pos = -1\n"
    "if h[1] == 'queued' then pos = redis.call('ZRANK', P .. 'queued', id) or -1 end\n"
    "local out = {h[1], h[2] or '', h[3] or '0', h[4] or '0', h[5] or '', h[6] or '', h[7] or '', h[9] or '',\n"
    "             h[10] or '0', pos}\n"
    "if ARGV[3] == '1' and h[1] == 'completed' then\n"
    "  for i = 0, (tonumber(h[8]) or 0) - 1 do out[#out + 1] = redis.call('HGET', job, 'image:' .. i) or '' end\n"
    "end\n"
    "return out\n";

/* ARGV: P, live_ms. A1111's "current job": among the jobs running on live
 * workers, the A1111 one started first (else any). Answers id, job count,
 * step, total, eta, cancel, preview. */
static const char progress_lua[] = PRELUDE
    "local since = now_ms() - tonumber(ARGV[2])\n"
    "local best, best_a, best_t, running = nil, false, 0, 0\n"
    "for _, w in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', since, '+inf')) do\n"
    "  local id = redis.call('HGET', wkey(w), 'job')\n"
    "  if id and id ~= '' then\n"
    "    local st, d, t = unpack(redis.call('HMGET', jkey(id), 'state', 'dialect', 'started'))\n"
    "    if st == 'running' then\n"
    "      running = running + 1\n"
    "      local a = string.sub(d or '', 1, 6) == 'a1111_'\n"
    "      t = tonumber(t) or 0\n"
    "      if not best or (a and not best_a) or (a == best_a and t < best_t) then best, best_a, best_t = id, a, t end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local count = redis.call('ZCARD', P .. 'queued') + running\n"
    "if not best then return {'', count} end\n"
    "local h = redis.call('HMGET', jkey(best), 'step', 'total', 'eta', 'cancel', 'preview')\n"
    "return {best, count, h[1] or '0', h[2] or '0', h[3] or '0', h[4] or '', h[5] or ''}\n";

/* ARGV: P, live_ms. Answers queued, live workers, busy ones, and the
 * fleet's completed, failed, cancelled and requeued counts. */
static const char gauges_lua[] = PRELUDE
    "local since = now_ms() - tonumber(ARGV[2])\n"
    "local live, busy = 0, 0\n"
    "for _, w in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', since, '+inf')) do\n"
    "  live = live + 1\n"
    "  local j = redis.call('HGET', wkey(w), 'job')\n"
    "  if j and j ~= '' then busy = busy + 1 end\n"
    "end\n"
    "local s = redis.call('HMGET', P .. 'stats', 'completed', 'failed', 'cancelled', 'requeued')\n"
    "return {redis.call('ZCARD', P .. 'queued'), live, busy, s[1] or '0', s[2] or '0', s[3] or '0', s[4] or '0'}\n";

/* ARGV: P. Answers Redis's time, then per worker: id, last heartbeat, host,
 * pid, role, state, job, model. */
static const char workers_lua[] = PRELUDE
    "local out = {now_ms()}\n"
    "local ws = redis.call('ZRANGE', P .. 'workers', 0, -1, 'WITHSCORES')\n"
    "for i = 1, #ws, 2 do\n"
    "  local h = redis.call('HMGET', wkey(ws[i]), 'host', 'pid', 'role', 'state', 'job', 'model')\n"
    "  out[#out + 1] = {ws[i], ws[i + 1], h[1] or '', h[2] or '', h[3] or '', h[4] or '', h[5] or '', h[6] or ''}\n"
    "end\n"
    "return out\n";

/* ARGV: P, live_ms. The live workers' models (their model_info), the most
 * recently heard first. */
static const char models_lua[] = PRELUDE
    "local since = now_ms() - tonumber(ARGV[2])\n"
    "local out = {}\n"
    "for _, w in ipairs(redis.call('ZREVRANGEBYSCORE', P .. 'workers', '+inf', since)) do\n"
    "  local m = redis.call('HGET', wkey(w), 'model_info')\n"
    "  if m and m ~= '' then out[#out + 1] = m end\n"
    "end\n"
    "return out\n";

/* ARGV: P, worker, keep_ms, state, field, value, ... A worker's heartbeat:
 * its registry entry, and its time (Redis's clock) in P workers; entries
 * not heard of for keep_ms go. Whether it is busy is the scripts' to say
 * (start and finish set `job`), so that a heartbeat sent just before a
 * job starts or ends cannot undo it: state loading or stopping is the
 * worker's, idle or busy follows `job`. */
static const char heartbeat_lua[] = PRELUDE
    "local w, keep, state = ARGV[2], tonumber(ARGV[3]), ARGV[4]\n"
    "local now = now_ms()\n"
    "redis.call('ZADD', P .. 'workers', now, w)\n"
    "local h = {}\n"
    "for i = 5, #ARGV do h[#h + 1] = ARGV[i] end\n"
    "redis.call('HSET', wkey(w), 'beat', now, unpack(h))\n"
    "if state == 'idle' or state == 'busy' then\n"
    "  local j = redis.call('HGET', wkey(w), 'job')\n"
    "  state = (j and j ~= '') and 'busy' or 'idle'\n"
    "end\n"
    "redis.call('HSET', wkey(w), 'state', state)\n"
    "redis.call('PEXPIRE', wkey(w), keep)\n"
    "redis.call('ZREMRANGEBYSCORE', P .. 'workers', '-inf', now - keep)\n"
    "return now\n";

static const struct {
    const char *name, *source;
} scripts[FLEET_SCRIPT_COUNT] = {
    [FLEET_SUBMIT] = { "submit", submit_lua },       [FLEET_TAKE] = { "take", take_lua },
    [FLEET_CLAIM] = { "claim", claim_lua },          [FLEET_PUBLISH] = { "publish", publish_lua },
    [FLEET_FINISH] = { "finish", finish_lua },       [FLEET_REQUEUE] = { "requeue", requeue_lua },
    [FLEET_CANCEL] = { "cancel", cancel_lua },       [FLEET_STATUS] = { "status", status_lua },
    [FLEET_PROGRESS] = { "progress", progress_lua }, [FLEET_GAUGES] = { "gauges", gauges_lua },
    [FLEET_WORKERS] = { "workers", workers_lua },    [FLEET_MODELS] = { "models", models_lua },
    [FLEET_HEARTBEAT] = { "heartbeat", heartbeat_lua },
};

static char shas[FLEET_SCRIPT_COUNT][41];
static pthread_once_t shas_once = PTHREAD_ONCE_INIT;

/* The SHA-1 Redis names each script by (EVALSHA). */
static void compute_shas(void)
{
    for (int i = 0; i < FLEET_SCRIPT_COUNT; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        EVP_Digest(scripts[i].source, strlen(scripts[i].source), md, &n, EVP_sha1(), NULL);
        for (unsigned k = 0; k < n && k < 20; k++) snprintf(shas[i] + 2 * k, 3, "%02x", md[k]);
    }
}

const char *fleet_script_source(fleet_script_id id) { return scripts[id].source; }
const char *fleet_script_name(fleet_script_id id) { return scripts[id].name; }
const char *fleet_script_sha(fleet_script_id id)
{
    pthread_once(&shas_once, compute_shas);
    return shas[id];
}
