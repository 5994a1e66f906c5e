"""The Lua scripts behind `log/redis.py`: appends, retention, claiming and moving failures, and
the counters, each one atomic script.

Keys, under the log's prefix P (S a source, C a consumer id):

    P:log:S              stream  the source's records: r (received_at), d (data), e (event id,
                                 when the record has one); one consumer group per consumer id
    P:hitlog:usage       hash    records, bytes: what the bounds are checked against
    P:hitlog:sources     set     sources with a stream (sweep walks them)
    P:hitlog:ids:S       hash    event id -> the entry ids that carry it, space-separated
    P:hitlog:consumers   hash    C -> S
    P:hitlog:retry:C     zset    retry id -> retry time (the lease's end while leased)
    P:hitlog:retry-data:C hash   retry id -> the item as first stored (msgpack, see redis.py)
    P:hitlog:retry-state:C hash  retry id -> "<attempts counted since> <error>" once rescheduled:
                                 "3" (error None) or "3 HTTP 503"; the item's own attempts plus
                                 these, and this error, are the retry's
    P:hitlog:dl:C        stream  dead letters, oldest first
    P:hitlog:seq         string  the last retry id handed out
    P:hitlog:counts:C    hash    delivered, failed, dead_lettered, last_error, last_success_at

The items are msgpack that Lua's cmsgpack cannot read (it knows no bin type), so no script
decodes one: what a reschedule changes goes to retry-state beside it.

The scripts build key names from P and so touch keys they were not given in KEYS: that is fine on
one Redis server (with replicas or Sentinel), not on Redis Cluster.
"""

from __future__ import annotations

_PRELUDE = r"""
local P = ARGV[1]
local USAGE = P .. ':hitlog:usage'
local OVERHEAD = 48
local function to_map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end
local function id_less(x, y)
  local xm, xs = id_parts(x)
  local ym, ys = id_parts(y)
  if xm ~= ym then return tonumber(xm) < tonumber(ym) end
  if #xs ~= #ys then return #xs < #ys end
  return xs < ys
end
-- The smallest id after `id` (sequence numbers past 15 digits roll over to the next ms).
local function successor(id)
  local ms, seq = id_parts(id)
  if #seq > 15 then return string.format('%.0f-0', tonumber(ms) + 1) end
  return ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)
end
local function record_bytes(source, data, event_id)
  return #data + #source + #event_id + OVERHEAD
end
"""

# ARGV: P, max_records, max_bytes (-1: none), groups, then per group: its size k and
# k x (source, received_at, event_id ('' for none), data). Each group is stored whole or not at
# all; returns, per group, its entry ids or 0.
APPEND = (
    _PRELUDE
    + r"""
local max_records, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local groups = tonumber(ARGV[4])
local usage = redis.call('HMGET', USAGE, 'records', 'bytes')
local records, bytes = tonumber(usage[1] or '0'), tonumber(usage[2] or '0')
local pos, out, added, grown = 5, {}, 0, 0
for g = 1, groups do
  local k = tonumber(ARGV[pos])
  pos = pos + 1
  local size = 0
  for j = 0, k - 1 do
    local b = pos + j * 4
    size = size + record_bytes(ARGV[b], ARGV[b + 3], ARGV[b + 2])
  end
  if records + added + k <= max_records and (max_bytes < 0 or bytes + grown + size <= max_bytes)
  then
    local ids = {}
    for j = 0, k - 1 do
      local b = pos + j * 4
      local source, event_id = ARGV[b], ARGV[b + 2]
      local id
      if event_id == '' then
        id = redis.call('XADD', P .. ':log:' .. source, '*', 'r', ARGV[b + 1], 'd', ARGV[b + 3])
      else
        id = redis.call('XADD', P .. ':log:' .. source, '*', 'r', ARGV[b + 1], 'd', ARGV[b + 3],
          'e', event_id)
        local index = P .. ':hitlog:ids:' .. source
        local known = redis.call('HGET', index, event_id)
        redis.call('HSET', index, event_id, known and (known .. ' ' .. id) or id)
      end
      redis.call('SADD', P .. ':hitlog:sources', source)
      ids[#ids + 1] = id
    end
    added = added + k
    grown = grown + size
    out[g] = ids
  else
    out[g] = 0
  end
  pos = pos + k * 4
end
if added > 0 then
  redis.call('HINCRBY', USAGE, 'records', added)
  redis.call('HINCRBY', USAGE, 'bytes', grown)
end
return out
"""
)

# ARGV: P, source, cutoff (received_at), max_scan. Trims the stream's head up to the first entry
# that a consumer group still needs (pending, or not delivered yet) or that was received at or
# after the cutoff, looking at no more than max_scan entries; returns how many went.
SWEEP = (
    _PRELUDE
    + r"""
local source, cutoff, max_scan = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local s = P .. ':log:' .. source
if redis.call('EXISTS', s) == 0 then return 0 end
local needed = nil
for _, flat in ipairs(redis.call('XINFO', 'GROUPS', s)) do
  local g = to_map(flat)
  local first
  if tonumber(g['pending']) > 0 then
    first = redis.call('XPENDING', s, g['name'])[2]
  else
    first = successor(g['last-delivered-id'])
  end
  if needed == nil or id_less(first, needed) then needed = first end
end
local entries = redis.call('XRANGE', s, '-', '+', 'COUNT', max_scan)
local removed, freed, keep = 0, 0, nil
local index = P .. ':hitlog:ids:' .. source
for _, entry in ipairs(entries) do
  local id, f = entry[1], to_map(entry[2])
  if (needed and not id_less(id, needed)) or tonumber(f['r']) >= cutoff then
    keep = id
    break
  end
  local event_id = f['e'] or ''
  removed = removed + 1
  freed = freed + record_bytes(source, f['d'], event_id)
  if event_id ~= '' then
    local known = redis.call('HGET', index, event_id)
    if known == id or not known then
      redis.call('HDEL', index, event_id)
    else
      local rest = {}
      for other in string.gmatch(known, '%S+') do
        if other ~= id then rest[#rest + 1] = other end
      end
      redis.call('HSET', index, event_id, table.concat(rest, ' '))
    end
  end
end
if removed == 0 then return 0 end
redis.call('XTRIM', s, 'MINID', keep or successor(entries[removed][1]))
redis.call('HINCRBY', USAGE, 'records', -removed)
redis.call('HINCRBY', USAGE, 'bytes', -freed)
return removed
"""
)

# ARGV: P, consumer, all (1/0), ids... Removes and returns dead letters as [id, fields] pairs.
TAKE_DEAD_LETTERS = (
    _PRELUDE
    + r"""
local s = P .. ':hitlog:dl:' .. ARGV[2]
local out = {}
if ARGV[3] == '1' then
  out = redis.call('XRANGE', s, '-', '+')
else
  for i = 4, #ARGV do
    local found = redis.call('XRANGE', s, ARGV[i], ARGV[i])
    if #found == 1 then out[#out + 1] = found[1] end
  end
end
for _, entry in ipairs(out) do redis.call('XDEL', s, entry[1]) end
return out
"""
)

# ARGV: P, consumer, now, limit, lease_until ('' to only look). Up to `limit` retries due at
# `now`, earliest first, each as [id, retry time, item, state or false]; with a lease_until
# their time becomes that, in this one script, so no other caller sees them due.
RETRIES = (
    _PRELUDE
    + r"""
local C, now, limit, lease_until = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local z = P .. ':hitlog:retry:' .. C
local data, state = P .. ':hitlog:retry-data:' .. C, P .. ':hitlog:retry-state:' .. C
local due = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local out = {}
for i = 1, #due, 2 do
  local id = due[i]
  local item = redis.call('HGET', data, id)
  if not item then  -- half of a retry (cannot happen through this module): drop it
    redis.call('ZREM', z, id)
  else
    if lease_until ~= '' then redis.call('ZADD', z, 'XX', lease_until, id) end
    out[#out + 1] = {id, due[i + 1], item, redis.call('HGET', state, id)}
  end
end
return out
"""
)

# ARGV: P, consumer, retry_at, count (1/0), has_error (1/0), error, ids... Sets the time of the
# consumer's retries among ids (others are left alone); with count, one more attempt and the
# error (none when has_error is 0) in their state.
RESCHEDULE = (
    _PRELUDE
    + r"""
local C, retry_at, count = ARGV[2], ARGV[3], ARGV[4] == '1'
local suffix = ARGV[5] == '1' and (' ' .. ARGV[6]) or ''
local z = P .. ':hitlog:retry:' .. C
local state = P .. ':hitlog:retry-state:' .. C
for i = 7, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', z, id) then
    redis.call('ZADD', z, retry_at, id)
    if count then
      local known = redis.call('HGET', state, id)
      local added = known and tonumber(string.match(known, '^%d+')) or 0
      redis.call('HSET', state, id, string.format('%d', added + 1) .. suffix)
    end
  end
end
return 0
"""
)

# ARGV: P, consumer, now, all (1/0), max (entries when all), ids... Moves dead letters into the
# retry set, due at now, under new retry ids: the dead letter's stored item becomes the retry's
# (its reason in the place of the error). Returns what moved as [id, fields] pairs.
REPLAY_DEAD_LETTERS = (
    _PRELUDE
    + r"""
local C, now = ARGV[2], ARGV[3]
local s = P .. ':hitlog:dl:' .. C
local z, data = P .. ':hitlog:retry:' .. C, P .. ':hitlog:retry-data:' .. C
local out = {}
if ARGV[4] == '1' then
  out = redis.call('XRANGE', s, '-', '+', 'COUNT', ARGV[5])
else
  for i = 6, #ARGV do
    local found = redis.call('XRANGE', s, ARGV[i], ARGV[i])
    if #found == 1 then out[#out + 1] = found[1] end
  end
end
for _, entry in ipairs(out) do
  local id = tostring(redis.call('INCR', P .. ':hitlog:seq'))
  redis.call('HSET', data, id, to_map(entry[2])['v'])
  redis.call('ZADD', z, now, id)
  redis.call('XDEL', s, entry[1])
end
return out
"""
)

# ARGV: P, consumer, delivered, failed, dead_lettered, last_error ('' with has_error 0),
# has_error (1/0), success_at ('' for none). Adds to the consumer's counters; the last success
# time only moves forward.
ADD_COUNTS = (
    _PRELUDE
    + r"""
local h = P .. ':hitlog:counts:' .. ARGV[2]
local names = {'delivered', 'failed', 'dead_lettered'}
for i, name in ipairs(names) do
  local n = tonumber(ARGV[2 + i])
  if n ~= 0 then redis.call('HINCRBY', h, name, n) end
end
if ARGV[7] == '1' then redis.call('HSET', h, 'last_error', ARGV[6]) end
local at = ARGV[8]
if at ~= '' then
  local known = redis.call('HGET', h, 'last_success_at')
  if not known or tonumber(at) > tonumber(known) then
    redis.call('HSET', h, 'last_success_at', at)
  end
end
return 0
"""
)
