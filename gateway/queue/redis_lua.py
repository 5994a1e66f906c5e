"""The Lua scripts behind `queue/redis.py`: every change of queue state is one atomic script.

Keys, under the queue's prefix P (one set per integration I, plus a few global ones):

    P:total          string  events queued, all integrations (the bound check reads it)
    P:queued         hash    I -> events queued for I (integrations_with_events)
    P:consumers      set     consumer names that claim (one per delivering process)
    P:alive:<name>   string  a consumer's heartbeat; expires when the process is gone
    P:s:I            stream  the events; consumer group "gateway"
    P:lease:I        zset    entry id -> lease end (claimed, in flight)
    P:due:I          zset    entry id -> time it may be claimed again (released, retried,
                             recovered, or read from the stream and not yet claimed)
    P:meta:I         hash    entry id -> "attempts|first_attempt|last_attempt|not_before|enqueued"
    P:stats:I        hash    delivered, failed, last_error, last_success_at
    P:dl:I           stream  dead letters, oldest first

An entry the group has not delivered yet is in neither zset; one it has is in exactly one of
them and has a `meta` row; so `XLEN - ZCARD lease - ZCARD due` is the unread part. Lease ends and
retry times come from the caller's clock (the interface's `now`), not from Redis' idle timers, so
every replica and the tests judge a lease alike. Times travel as the decimal strings Python wrote
and are handed back unchanged, never re-formatted by Lua (which would round them).

The scripts build key names from P and so touch keys they were not given in KEYS: that is fine on
one Redis server (with replicas or Sentinel), not on Redis Cluster.
"""

from __future__ import annotations

_PRELUDE = r"""
local P = ARGV[1]
local GROUP = 'gateway'
local function key(kind, iid) return P .. ':' .. kind .. ':' .. iid end
local function to_map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end
local function split_meta(s)
  local a, f, l, nb, q = string.match(s, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return tonumber(a), f, l, nb, q
end
local function join_meta(a, f, l, nb, q)
  return table.concat({tostring(a), f, l, nb, q}, '|')
end
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function id_less(x, y)
  local xm, xs = id_parts(x)
  local ym, ys = id_parts(y)
  if xm ~= ym then return xm < ym end
  return xs < ys
end
local function min_time(a, b)
  if not a then return b end
  if not b then return a end
  if tonumber(b) < tonumber(a) then return b end
  return a
end
local function ensure_stream(s)
  if redis.call('EXISTS', s) == 0 then
    redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
  end
end
local function forget_queued(iid, n)
  if n > 0 then
    if redis.call('HINCRBY', P .. ':queued', iid, -n) <= 0 then
      redis.call('HDEL', P .. ':queued', iid)
    end
    redis.call('DECRBY', P .. ':total', n)
  end
end
-- Take an entry out of the queue (acked or dead-lettered).
local function remove_entry(iid, id)
  local s = key('s', iid)
  redis.call('XACK', s, GROUP, id)
  redis.call('XDEL', s, id)
  redis.call('ZREM', key('lease', iid), id)
  redis.call('ZREM', key('due', iid), id)
end
-- A leased entry becomes claimable now (or at its own earlier time): its holder is gone.
local function unlease(iid, id, now)
  local meta = key('meta', iid)
  local m = redis.call('HGET', meta, id)
  local a, f, l, nb, q = 0, '', '', now, now
  if m then a, f, l, nb, q = split_meta(m) end
  nb = min_time(nb, now)
  redis.call('HSET', meta, id, join_meta(a, f, l, nb, q))
  redis.call('ZREM', key('lease', iid), id)
  redis.call('ZADD', key('due', iid), nb, id)
end
"""

# ARGV: P, max_events, groups, then per group: its size k and k x (iid, event_id, name, time,
# payload, consent, enqueued_at). Each group is stored whole or not at all; returns 1/0 per group.
ENQUEUE = (
    _PRELUDE
    + r"""
local max = tonumber(ARGV[2])
local groups = tonumber(ARGV[3])
local total = tonumber(redis.call('GET', P .. ':total') or '0')
local pos, added, out = 4, 0, {}
for g = 1, groups do
  local k = tonumber(ARGV[pos])
  pos = pos + 1
  if total + added + k <= max then
    for j = 0, k - 1 do
      local b = pos + j * 7
      local iid = ARGV[b]
      local s = key('s', iid)
      ensure_stream(s)
      redis.call('XADD', s, '*', 'e', ARGV[b + 1], 'n', ARGV[b + 2], 't', ARGV[b + 3],
        'p', ARGV[b + 4], 'c', ARGV[b + 5], 'q', ARGV[b + 6])
      redis.call('HINCRBY', P .. ':queued', iid, 1)
    end
    added = added + k
    out[g] = 1
  else
    out[g] = 0
  end
  pos = pos + k * 7
end
if added > 0 then redis.call('INCRBY', P .. ':total', added) end
return out
"""
)

# ARGV: P, iid, limit, now, lease_until, consumer, at_least. Oldest first by the time an entry
# became claimable (its retry time, or its enqueue time when new), then by stream id. Fewer than
# `at_least` candidates: none is leased (those just read from the stream wait in `due`).
CLAIM = (
    _PRELUDE
    + r"""
local iid, limit, now, lease_until, consumer, at_least =
  ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local s, lease, due, meta = key('s', iid), key('lease', iid), key('due', iid), key('meta', iid)
if redis.call('EXISTS', s) == 0 then return {} end
local cands = {}
local flat = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #flat, 2 do
  cands[#cands + 1] = {id = flat[i], t = tonumber(flat[i + 1]), nb = flat[i + 1],
    meta = redis.call('HGET', meta, flat[i])}
end
-- Leases that ran out (a worker died or hung): claimable since their earlier not_before.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', lease, '-inf', now, 'LIMIT', 0, limit)) do
  local m = redis.call('HGET', meta, id)
  local nb = now
  if m then nb = select(4, split_meta(m)) end
  cands[#cands + 1] = {id = id, t = tonumber(nb), nb = nb, meta = m}
end
local read = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', limit, 'STREAMS', s, '>')
if read then
  for _, entry in ipairs(read[1][2]) do
    local f = to_map(entry[2])
    cands[#cands + 1] = {id = entry[1], t = tonumber(f.q), nb = f.q, fields = f, new = true}
  end
end
table.sort(cands, function(x, y)
  if x.t ~= y.t then return x.t < y.t end
  return id_less(x.id, y.id)
end)
local take = limit
if #cands < at_least then take = 0 end
local out = {}
for i, c in ipairs(cands) do
  if i > take then
    -- Read from the stream but not needed now: still ready, waiting in `due`.
    if c.new then
      redis.call('HSET', meta, c.id, join_meta(0, '', '', c.nb, c.fields.q))
      redis.call('ZADD', due, c.nb, c.id)
    end
  else
    local f = c.fields
    if not f then
      local r = redis.call('XRANGE', s, c.id, c.id)
      if #r > 0 then
        f = to_map(r[1][2])
        -- The pending-entries list names the consumer holding it now.
        redis.call('XCLAIM', s, GROUP, consumer, 0, c.id, 'JUSTID')
      else
        redis.call('ZREM', due, c.id)
        redis.call('ZREM', lease, c.id)
        redis.call('HDEL', meta, c.id)
      end
    end
    if f then
      local a, fa, la = 0, '', ''
      if c.meta then a, fa, la = split_meta(c.meta) end
      a = a + 1
      if fa == '' then fa = now end
      redis.call('HSET', meta, c.id, join_meta(a, fa, now, c.nb, f.q))
      redis.call('ZREM', due, c.id)
      redis.call('ZADD', lease, lease_until, c.id)
      out[#out + 1] = {c.id, f.e, f.n, f.t, f.p, a, f.q}
    end
  end
end
return out
"""
)

# ARGV: P, iid, now, ids... Returns how many were acked.
ACK = (
    _PRELUDE
    + r"""
local iid, now = ARGV[2], ARGV[3]
local n = 0
for i = 4, #ARGV do
  if redis.call('HDEL', key('meta', iid), ARGV[i]) == 1 then
    remove_entry(iid, ARGV[i])
    n = n + 1
  end
end
if n > 0 then
  forget_queued(iid, n)
  redis.call('HINCRBY', key('stats', iid), 'delivered', n)
  redis.call('HSET', key('stats', iid), 'last_success_at', now)
end
return n
"""
)

# ARGV: P, iid, retry_at, has_error ('1'/'0'), error, ids...
RELEASE = (
    _PRELUDE
    + r"""
local iid, retry_at, has_error, err = ARGV[2], ARGV[3], ARGV[4] == '1', ARGV[5]
local meta = key('meta', iid)
local n = 0
for i = 6, #ARGV do
  local id = ARGV[i]
  local m = redis.call('HGET', meta, id)
  if m then
    local a, f, l, _, q = split_meta(m)
    if not has_error then
      -- Not the event's fault (a pause, a shutdown): the attempt is given back.
      if a <= 1 then f, l = '', '' end
      a = math.max(a - 1, 0)
    end
    redis.call('HSET', meta, id, join_meta(a, f, l, retry_at, q))
    redis.call('ZREM', key('lease', iid), id)
    redis.call('ZADD', key('due', iid), retry_at, id)
    n = n + 1
  end
end
if has_error and n > 0 then
  redis.call('HINCRBY', key('stats', iid), 'failed', n)
  redis.call('HSET', key('stats', iid), 'last_error', err)
end
return n
"""
)

# ARGV: P, iid, reason, has_answer, answer, now, ids...
DEAD_LETTER = (
    _PRELUDE
    + r"""
local iid, reason, has_answer, answer, now = ARGV[2], ARGV[3], ARGV[4] == '1', ARGV[5], ARGV[6]
local s, meta = key('s', iid), key('meta', iid)
local ids = {}
for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
table.sort(ids, id_less)
local n = 0
for _, id in ipairs(ids) do
  local m = redis.call('HGET', meta, id)
  if m then
    local r = redis.call('XRANGE', s, id, id)
    if #r > 0 then
      local f = to_map(r[1][2])
      local a, fa, la = split_meta(m)
      local args = {'i', iid, 'e', f.e, 'n', f.n, 't', f.t, 'p', f.p, 'c', f.c, 'q', f.q,
        'r', reason, 'a', a, 'f', fa, 'l', la, 'd', now}
      if has_answer then
        args[#args + 1] = 'w'
        args[#args + 1] = answer
      end
      redis.call('XADD', key('dl', iid), '*', unpack(args))
    end
    redis.call('HDEL', meta, id)
    remove_entry(iid, id)
    n = n + 1
  end
end
forget_queued(iid, n)
return n
"""
)

# ARGV: P, iid, now, all ('1'/'0'), ids... Returns the moved dead letters as {id, fields}.
REPLAY = (
    _PRELUDE
    + r"""
local iid, now, all = ARGV[2], ARGV[3], ARGV[4] == '1'
local dl, s = key('dl', iid), key('s', iid)
local entries = {}
if all then
  entries = redis.call('XRANGE', dl, '-', '+')
else
  for i = 5, #ARGV do
    local r = redis.call('XRANGE', dl, ARGV[i], ARGV[i])
    if #r > 0 then entries[#entries + 1] = r[1] end
  end
  table.sort(entries, function(x, y) return id_less(x[1], y[1]) end)
end
if #entries == 0 then return {} end
ensure_stream(s)
for _, entry in ipairs(entries) do
  local f = to_map(entry[2])
  redis.call('XADD', s, '*', 'e', f.e, 'n', f.n, 't', f.t, 'p', f.p, 'c', f.c, 'q', now)
  redis.call('XDEL', dl, entry[1])
end
-- Replay ignores the bound on purpose: these events were already stored, an operator asked.
redis.call('HINCRBY', P .. ':queued', iid, #entries)
redis.call('INCRBY', P .. ':total', #entries)
return entries
"""
)

# ARGV: P, iid, now, cap. Returns {ready, oldest_enqueued_at or false, next_retry_at or false,
# leases held}.
READY_INFO = (
    _PRELUDE
    + r"""
local iid, now, cap = ARGV[2], ARGV[3], tonumber(ARGV[4])
local s, lease, due, meta = key('s', iid), key('lease', iid), key('due', iid), key('meta', iid)
if redis.call('EXISTS', s) == 0 then return {0, false, false, 0} end
local unread = redis.call('XLEN', s) - redis.call('ZCARD', lease) - redis.call('ZCARD', due)
local ready = unread + redis.call('ZCOUNT', due, '-inf', now)
  + redis.call('ZCOUNT', lease, '-inf', now)
local oldest = false
if unread > 0 then
  local last = '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    local info = to_map(g)
    if info['name'] == GROUP then last = info['last-delivered-id'] end
  end
  local r = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1)
  if #r > 0 then oldest = to_map(r[1][2]).q end
end
-- Enough of the claimable ones to see the oldest that a batch would take.
for _, z in ipairs({due, lease}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, cap)) do
    local m = redis.call('HGET', meta, id)
    if m then oldest = min_time(oldest, select(5, split_meta(m))) end
  end
end
local next_at = false
for _, z in ipairs({due, lease}) do
  local r = redis.call('ZRANGEBYSCORE', z, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #r > 0 then next_at = min_time(next_at, r[2]) end
end
return {ready, oldest, next_at, redis.call('ZCARD', lease)}
"""
)

# ARGV: P, now, include_expired ('1'/'0'), taker, dead consumers...
# Leases of dead consumers (and, when asked, expired ones) become claimable now; the dead
# consumers' pending entries pass to `taker` and the dead consumers leave the group.
RECOVER = (
    _PRELUDE
    + r"""
local now, expired, taker = ARGV[2], ARGV[3] == '1', ARGV[4]
local n = 0
for _, iid in ipairs(redis.call('HKEYS', P .. ':queued')) do
  local s, lease = key('s', iid), key('lease', iid)
  if redis.call('EXISTS', s) == 1 then
    if expired then
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', lease, '-inf', now)) do
        unlease(iid, id, now)
        n = n + 1
      end
    end
    for i = 5, #ARGV do
      local ids = {}
      for _, p in ipairs(redis.call('XPENDING', s, GROUP, '-', '+', 1000000, ARGV[i])) do
        ids[#ids + 1] = p[1]
        if redis.call('ZSCORE', lease, p[1]) then
          unlease(iid, p[1], now)
          n = n + 1
        end
      end
      -- In chunks: unpack() of a long list would overflow Lua's stack.
      for start = 1, #ids, 500 do
        local chunk = {}
        for j = start, math.min(start + 499, #ids) do chunk[#chunk + 1] = ids[j] end
        chunk[#chunk + 1] = 'JUSTID'
        redis.call('XCLAIM', s, GROUP, taker, 0, unpack(chunk))
      end
      redis.call('XGROUP', 'DELCONSUMER', s, GROUP, ARGV[i])
    end
  end
end
return n
"""
)

# ARGV: P, iid. Forget everything about one integration.
DROP = (
    _PRELUDE
    + r"""
local iid = ARGV[2]
local queued = tonumber(redis.call('HGET', P .. ':queued', iid) or '0')
redis.call('DEL', key('s', iid), key('lease', iid), key('due', iid), key('meta', iid),
  key('dl', iid), key('stats', iid))
forget_queued(iid, queued)
return queued
"""
)
