"""The Lua scripts of `RedisDirectory` (``redis.py`` describes the keys).

Redis runs each script alone, so each is one atomic step. Time is Redis's own clock
(``TIME``, in ms), so the nodes' clocks never need to agree. A node is alive while its
deadline in ``P nodes`` is later than now; every script that answers or writes for a
node checks that first, so a dead node is never listed and cannot write, whether or
not it has been reaped yet. ARGV[1] is always the key prefix ``P``; scripts build the
keys of rooms, nodes and tracks from it (so: one Redis, not Redis Cluster). A script
that writes starts with ``#!lua`` and no flags: Redis refuses it whole when out of
memory, so it never stops halfway; one that only reads is flagged ``no-writes``.
"""

from __future__ import annotations

__all__ = ["CLAIM", "DEREGISTER", "HEARTBEAT", "HOME", "JOIN", "LEAVE", "NODES", "ORIGIN",
           "PRODUCERS", "PUBLISH", "REAP", "REGISTER", "ROOM_NODES", "UNPUBLISH"]

_LIB = """
local P = ARGV[1]
local NODES = P .. 'nodes'
local function key(kind, name) return P .. kind .. ':' .. name end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function alive(node, now)
  if not node then return false end
  local deadline = redis.call('ZSCORE', NODES, node)
  return deadline and tonumber(deadline) > now
end
-- node leaves room; the last node to leave takes the room's claim with it
local function discard(room, node)
  if redis.call('SREM', key('room-nodes', room), node) == 0 then return end
  redis.call('SREM', key('node-rooms', node), room)
  if redis.call('SCARD', key('room-nodes', room)) == 0 then
    local home = redis.call('GET', key('room-home', room))
    if home then
      redis.call('DEL', key('room-home', room))
      redis.call('SREM', key('node-homes', home), room)
    end
  end
end
-- everything of node, as if it had never been
local function forget(node)
  for _, room in ipairs(redis.call('SMEMBERS', key('node-rooms', node))) do discard(room, node) end
  for _, room in ipairs(redis.call('SMEMBERS', key('node-homes', node))) do
    if redis.call('GET', key('room-home', room)) == node then redis.call('DEL', key('room-home', room)) end
  end
  for _, track in ipairs(redis.call('SMEMBERS', key('node-tracks', node))) do
    local where = redis.call('HMGET', key('track', track), 'room', 'node')
    if where[2] == node then
      redis.call('SREM', key('room-tracks', where[1]), track)
      redis.call('DEL', key('track', track))
    end
  end
  redis.call('DEL', key('node', node), key('node-rooms', node), key('node-homes', node),
             key('node-tracks', node))
  redis.call('ZREM', NODES, node)
end
"""

_WRITE = "#!lua\n" + _LIB
_READ_ONLY = "#!lua flags=no-writes\n" + _LIB

# ARGV: P, node, info, load, ttl_ms
REGISTER = _WRITE + """
local now = now_ms()
forget(ARGV[2])
local incarnation = redis.call('INCR', P .. 'incarnations')
redis.call('HSET', key('node', ARGV[2]), 'info', ARGV[3], 'load', ARGV[4], 'incarnation', incarnation)
redis.call('ZADD', NODES, string.format('%d', now + tonumber(ARGV[5])), ARGV[2])
return incarnation
"""

# ARGV: P, node, load, ttl_ms. 0: the node is not alive (what it had is forgotten now).
HEARTBEAT = _WRITE + """
local now = now_ms()
if not alive(ARGV[2], now) then forget(ARGV[2]) return 0 end
redis.call('ZADD', NODES, 'XX', string.format('%d', now + tonumber(ARGV[4])), ARGV[2])
redis.call('HSET', key('node', ARGV[2]), 'load', ARGV[3])
return 1
"""

DEREGISTER = _WRITE + """
forget(ARGV[2])
return 1
"""

REAP = _WRITE + """
local dead = redis.call('ZRANGEBYSCORE', NODES, '-inf', string.format('%d', now_ms()))
for _, node in ipairs(dead) do forget(node) end
return dead
"""

# ARGV: P[, node]. Flat: info, load, incarnation of each live node (or of node).
NODES = _READ_ONLY + """
local now = now_ms()
local ids = ARGV[2] and {ARGV[2]} or redis.call('ZRANGEBYSCORE', NODES, string.format('(%d', now), '+inf')
local out = {}
for _, node in ipairs(ids) do
  if alive(node, now) then
    local h = redis.call('HMGET', key('node', node), 'info', 'load', 'incarnation')
    if h[1] then
      out[#out + 1] = h[1]
      out[#out + 1] = h[2]
      out[#out + 1] = h[3]
    end
  end
end
return out
"""

# ARGV: P, room
ROOM_NODES = _READ_ONLY + """
local now, out = now_ms(), {}
for _, node in ipairs(redis.call('SMEMBERS', key('room-nodes', ARGV[2]))) do
  if alive(node, now) then out[#out + 1] = node end
end
return out
"""

# ARGV: P, room, node. 0: the node is not alive.
JOIN = _WRITE + """
if not alive(ARGV[3], now_ms()) then return 0 end
redis.call('SADD', key('room-nodes', ARGV[2]), ARGV[3])
redis.call('SADD', key('node-rooms', ARGV[3]), ARGV[2])
return 1
"""

LEAVE = _WRITE + """
discard(ARGV[2], ARGV[3])
return 1
"""

# ARGV: P, room, node. {0}: the node is not alive; {1, home}.
CLAIM = _WRITE + """
local now = now_ms()
if not alive(ARGV[3], now) then return {0} end
local home = redis.call('GET', key('room-home', ARGV[2]))
if alive(home, now) then return {1, home} end
if home then redis.call('SREM', key('node-homes', home), ARGV[2]) end
redis.call('SET', key('room-home', ARGV[2]), ARGV[3])
redis.call('SADD', key('node-homes', ARGV[3]), ARGV[2])
return {1, ARGV[3]}
"""

HOME = _READ_ONLY + """
local home = redis.call('GET', key('room-home', ARGV[2]))
if alive(home, now_ms()) then return home end
return false
"""

# ARGV: P, room, track, node, info. 0: the node is not alive.
PUBLISH = _WRITE + """
if not alive(ARGV[4], now_ms()) then return 0 end
local track = key('track', ARGV[3])
local before = redis.call('HMGET', track, 'room', 'node')
if before[1] then redis.call('SREM', key('room-tracks', before[1]), ARGV[3]) end
if before[2] then redis.call('SREM', key('node-tracks', before[2]), ARGV[3]) end
redis.call('HSET', track, 'room', ARGV[2], 'node', ARGV[4], 'info', ARGV[5])
redis.call('SADD', key('room-tracks', ARGV[2]), ARGV[3])
redis.call('SADD', key('node-tracks', ARGV[4]), ARGV[3])
return 1
"""

UNPUBLISH = _WRITE + """
local track = key('track', ARGV[3])
local where = redis.call('HMGET', track, 'room', 'node')
if where[1] ~= ARGV[2] or where[2] ~= ARGV[4] then return 0 end
redis.call('DEL', track)
redis.call('SREM', key('room-tracks', ARGV[2]), ARGV[3])
redis.call('SREM', key('node-tracks', ARGV[4]), ARGV[3])
return 1
"""

# ARGV: P, room. Flat: track, node, info of each track whose origin is alive.
PRODUCERS = _READ_ONLY + """
local now, out = now_ms(), {}
for _, track in ipairs(redis.call('SMEMBERS', key('room-tracks', ARGV[2]))) do
  local h = redis.call('HMGET', key('track', track), 'node', 'info')
  if alive(h[1], now) then
    out[#out + 1] = track
    out[#out + 1] = h[1]
    out[#out + 1] = h[2]
  end
end
return out
"""

# ARGV: P, track
ORIGIN = _READ_ONLY + """
local node = redis.call('HGET', key('track', ARGV[2]), 'node')
if alive(node, now_ms()) then return node end
return false
"""
