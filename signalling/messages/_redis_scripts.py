"""The Lua scripts of `RedisRoomLog` (``redis.py`` describes the keys they work on).

Redis runs each script alone, so each is one atomic step of the log. A script that
writes starts with ``#!lua`` and no flags: Redis then refuses it whole when it is out of
memory, so it never stops halfway; one that only reads is flagged ``no-writes``.
"""

from __future__ import annotations

__all__ = ["ADVANCE", "APPEND", "EXPIRE_IDLE", "FIRST_SEQ", "MEASURE", "START", "TRIM"]

_WRITE = "#!lua\n"
_READ_ONLY = "#!lua flags=no-writes\n"

# Lua helpers shared by the scripts: a field of a stream entry, an entry id's seq, and
# the lowest cursor of the members' and followers' hashes (-1: none).
_LIB = """
local function field(entry, name)
  for i = 1, #entry, 2 do if entry[i] == name then return entry[i + 1] end end
end
local function seq_of(id) return tonumber(string.match(id, '^(%d+)')) end
local function lowest_cursor(members, followers)
  local lowest = -1
  for _, key in ipairs({members, followers}) do
    for _, c in ipairs(redis.call('HVALS', key)) do
      c = tonumber(c)
      if lowest < 0 or c < lowest then lowest = c end
    end
  end
  return lowest
end
local function note(rooms, extra, who, room, kind, now)
  redis.call('SADD', rooms, room)
  if kind == 'member' then redis.call('ZADD', extra, now, who) else redis.call('SADD', extra, room) end
end
"""

# XADD comes first: if it fails, nothing was written.
_APPEND = """
local seen = redis.call('HGET', KEYS[3], ARGV[2])
if seen then
  local entry = redis.call('XRANGE', KEYS[2], seen, seen)
  if entry[1] then return {0, seen, entry[1][2]} end
end
local seq = (tonumber(redis.call('HGET', KEYS[1], 'seq')) or 0) + 1
local before = redis.call('HGET', KEYS[1], 'bytes') or '0'
redis.call('XADD', KEYS[2], string.format('%d-0', seq), 'm', ARGV[3], 's', ARGV[4],
           't', ARGV[5], 'p', ARGV[6], 'ts', ARGV[7], 'b', before)
redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HINCRBY', KEYS[1], 'bytes', #ARGV[6])
redis.call('HSET', KEYS[3], ARGV[2], string.format('%d', seq))
redis.call('SADD', KEYS[4], ARGV[1])
return {1, seq}
"""

_FIRST_SEQ = """
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if head[1] then return seq_of(head[1][1]) end
return (tonumber(redis.call('HGET', KEYS[2], 'seq')) or 0) + 1
"""

# KEYS: cursors, meta, rooms, extra (touched for members, follows for followers);
# ARGV: who, room, kind, now[, seq].
_START = """
local cursor = redis.call('HGET', KEYS[1], ARGV[1])
if not cursor then
  cursor = redis.call('HGET', KEYS[2], 'seq') or '0'
  redis.call('HSET', KEYS[1], ARGV[1], cursor)
end
note(KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return tonumber(cursor)
"""

_ADVANCE = """
local last = tonumber(redis.call('HGET', KEYS[2], 'seq')) or 0
local seq = tonumber(ARGV[5])
if seq > last then return {0, last} end
local cursor = math.max(tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0, seq)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', cursor))
note(KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {1, cursor}
"""

_EXPIRE_IDLE = """
local idle = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, member in ipairs(idle) do redis.call('HDEL', KEYS[1], member) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
return #idle
"""

# The facts `retention_cut` asks for, read at one instant. ARGV: young_since, max_bytes
# ('' when the limit is off). Retained seqs are contiguous (only a prefix is ever
# trimmed) and "b" never decreases along them, so the byte limit is a binary search.
_MEASURE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'seq')) or 0
local lowest = lowest_cursor(KEYS[3], KEYS[4])
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if not head[1] then return {last, lowest, -1, 0, last + 1} end
local first = seq_of(head[1][1])
local young = -1
if ARGV[1] ~= '' then
  local since, start = tonumber(ARGV[1]), '-'
  while young < 0 do
    local batch = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', 256)
    if not batch[1] then break end
    for _, e in ipairs(batch) do
      if tonumber(field(e[2], 'ts')) >= since then young = seq_of(e[1]) break end
    end
    start = '(' .. batch[#batch][1]
  end
end
local bytes_cut = 0
if ARGV[2] ~= '' then
  local limit = (tonumber(redis.call('HGET', KEYS[1], 'bytes')) or 0) - tonumber(ARGV[2])
  local function before(seq)
    local id = string.format('%d-0', seq)
    return tonumber(field(redis.call('XRANGE', KEYS[2], id, id)[1][2], 'b'))
  end
  if before(first) < limit then
    local lo, hi = first, last
    while lo < hi do
      local mid = math.floor((lo + hi + 1) / 2)
      if before(mid) < limit then lo = mid else hi = mid - 1 end
    end
    bytes_cut = lo
  end
end
return {last, lowest, young, bytes_cut, first}
"""

# Delete every seq <= ARGV[1], with its dedupe field. ARGV[2] '1': cursors hold messages
# back, and one may have appeared below the cut since the facts were read (an ack of a
# member without a cursor): then nothing is deleted and -1 says to measure again.
_TRIM = """
local cut = tonumber(ARGV[1])
if ARGV[2] == '1' then
  local lowest = lowest_cursor(KEYS[3], KEYS[4])
  if lowest >= 0 and lowest < cut then return -1 end
end
local start, upto = '-', string.format('%d-0', cut)
while true do
  local batch = redis.call('XRANGE', KEYS[1], start, upto, 'COUNT', 256)
  if not batch[1] then break end
  local keys = {}
  for i, e in ipairs(batch) do
    local sender = field(e[2], 's')
    keys[i] = #sender .. ':' .. sender .. field(e[2], 'm')
  end
  redis.call('HDEL', KEYS[2], unpack(keys))
  start = '(' .. batch[#batch][1]
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', cut + 1))
"""

_WRITE = "#!lua\n"
_READ_ONLY = "#!lua flags=no-writes\n"


APPEND = _WRITE + _APPEND
FIRST_SEQ = _READ_ONLY + _LIB + _FIRST_SEQ
START = _WRITE + _LIB + _START
ADVANCE = _WRITE + _LIB + _ADVANCE
EXPIRE_IDLE = _WRITE + _EXPIRE_IDLE
MEASURE = _READ_ONLY + _LIB + _MEASURE
TRIM = _WRITE + _LIB + _TRIM
