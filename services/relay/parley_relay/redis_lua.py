"""The Lua scripts behind `redis_store.RedisStore` (each runs atomically inside Redis).

A seat is a field of the hash `room:<room>`, its value JSON:
  {"h": sha256 hex of the secret or "", "n": name, "i": instance, "r": replica,
   "c": sid of the live connection or "", "x": reservation end in ms (when "c" is "")}
`conns:<replica>` lists "<room>|<sid>" for every seat whose connection that replica holds.
Times come from Redis (TIME), so replicas with skewed clocks agree.
"""

# Shared helpers, prepended to every script.
_COMMON = """
-- Redis time in microseconds, as text (too many digits for cjson's numbers): the version of
-- a seat change, so a replica applies peer updates that cross on the wire in the right order
local function stamp()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- constant time over equal lengths: every byte is looked at whatever the first difference
local function ct_eq(a, b)
  if a == '' or b == '' or #a ~= #b then return false end
  local d = 0
  for i = 1, #a do d = bit.bor(d, bit.bxor(string.byte(a, i), string.byte(b, i))) end
  return d == 0
end
local function split(v)
  local i = string.find(v, '|', 1, true)
  return string.sub(v, 1, i - 1), string.sub(v, i + 1)
end
-- the room's seats after dropping expired reservations and the connections of dead
-- replicas (a secret seat stays reserved, a seat without secret is freed)
local function load(room_key, room, prefix, me, now, ttl)
  local raw = redis.call('HGETALL', room_key)
  local seats = {}
  for i = 1, #raw, 2 do
    local id, s = raw[i], cjson.decode(raw[i + 1])
    local keep = true
    if s.c ~= '' and s.r ~= me and redis.call('EXISTS', prefix .. 'alive:' .. s.r) == 0 then
      redis.call('SREM', prefix .. 'conns:' .. s.r, room .. '|' .. s.c)
      if s.h == '' then keep = false else
        s.c = ''; s.x = now + ttl
        redis.call('HSET', room_key, id, cjson.encode(s))
      end
    end
    if keep and s.c == '' and s.x <= now then keep = false end
    if keep then table.insert(seats, {id, s}) else redis.call('HDEL', room_key, id) end
  end
  return seats
end
local function peers(seats, sid)
  local out = {}
  for _, e in ipairs(seats) do
    if e[2].c ~= '' and e[2].c ~= sid then table.insert(out, {e[2].r, e[2].c}) end
  end
  return out
end
local function touch(room_key, ttl)
  if redis.call('EXISTS', room_key) == 1 then redis.call('PEXPIRE', room_key, ttl + 60000) end
end
"""

JOIN = (
    _COMMON
    + """
local room_key, my_conns, replicas = KEYS[1], KEYS[2], KEYS[3]
local epoch_key, resync_key = KEYS[4], KEYS[5]
local room, sid, me, name, inst, hash = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cap, ttl, prefix, restore = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10] == '1'
if redis.call('EXISTS', epoch_key) == 0 then return cjson.encode({s = 'recovering'}) end
-- resync window: '1' only restores seat anyone; 'p' (a new replica began this data set)
-- new seats are provisional, and a restore evicts them (see HEARTBEAT)
local window = redis.call('GET', resync_key)
local now = now_ms()
local seats = load(room_key, room, prefix, me, now, ttl)
local evicted = {}
if restore then
  local kept = {}
  for _, e in ipairs(seats) do
    local s = e[2]
    if s.p == 1 and s.c ~= sid and not ct_eq(s.h, hash) then
      redis.call('HDEL', room_key, e[1])
      if s.c ~= '' then
        redis.call('SREM', prefix .. 'conns:' .. s.r, room .. '|' .. s.c)
        table.insert(evicted, {s.r, s.c})
      end
    else
      table.insert(kept, e)
    end
  end
  seats = kept
end
local mine = nil
for _, e in ipairs(seats) do
  if ct_eq(e[2].h, hash) then mine = e end
end
local replaced = {}
if mine then
  local s = mine[2]
  if s.c ~= '' and s.c ~= sid and (restore or s.i ~= inst) then
    if restore then return cjson.encode({s = 'room_full'}) end
    return cjson.encode({s = 'already_connected', n = s.n})
  end
  if s.c ~= '' and s.c ~= sid then
    replaced = {s.r, s.c}
    redis.call('SREM', prefix .. 'conns:' .. s.r, room .. '|' .. s.c)
  end
  s.c = sid; s.r = me; s.i = inst; s.n = name; s.x = 0
  redis.call('HSET', room_key, mine[1], cjson.encode(s))
else
  local present = false
  for _, e in ipairs(seats) do if e[2].c == sid then present = true end end
  if not present then
    if not restore and window == '1' then return cjson.encode({s = 'recovering'}) end
    if #seats >= cap then return cjson.encode({s = 'room_full'}) end
    local s = {h = hash, n = name, i = inst, r = me, c = sid, x = 0}
    if not restore and window == 'p' then s.p = 1 end
    redis.call('HSET', room_key, sid, cjson.encode(s))
    table.insert(seats, {sid, s})
  end
end
redis.call('SADD', my_conns, room .. '|' .. sid)
redis.call('SADD', replicas, me)
touch(room_key, ttl)
return cjson.encode({s = 'joined', p = peers(seats, sid), r = replaced, e = evicted, v = stamp()})
"""
)

LEAVE = (
    _COMMON
    + """
local room_key, my_conns = KEYS[1], KEYS[2]
local room, sid, me, release = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local ttl, prefix = tonumber(ARGV[5]), ARGV[6]
redis.call('SREM', my_conns, room .. '|' .. sid)
local now = now_ms()
local seats = load(room_key, room, prefix, me, now, ttl)
local found, rest = nil, {}
for _, e in ipairs(seats) do
  if e[2].c == sid and e[2].r == me then found = e else table.insert(rest, e) end
end
if not found then return cjson.encode({ok = 0}) end
local s = found[2]
if release or s.h == '' then
  redis.call('HDEL', room_key, found[1])
else
  s.c = ''; s.x = now + ttl
  redis.call('HSET', room_key, found[1], cjson.encode(s))
end
touch(room_key, ttl)
return cjson.encode({ok = 1, n = s.n, p = peers(rest, sid), v = stamp()})
"""
)

# Seats of every replica whose lease expired: vacate them, report whom to tell.
PRUNE = (
    _COMMON
    + """
local replicas = KEYS[1]
local prefix, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local out = {}
for _, rep in ipairs(redis.call('SMEMBERS', replicas)) do
  if rep ~= me and redis.call('EXISTS', prefix .. 'alive:' .. rep) == 0 then
    local set = prefix .. 'conns:' .. rep
    for _, entry in ipairs(redis.call('SMEMBERS', set)) do
      local room, sid = split(entry)
      local room_key = prefix .. 'room:' .. room
      local raw = redis.call('HGETALL', room_key)
      local hit, rest = nil, {}
      for i = 1, #raw, 2 do
        local s = cjson.decode(raw[i + 1])
        if s.c == sid and s.r == rep then hit = {raw[i], s} else table.insert(rest, {raw[i], s}) end
      end
      if hit then
        local s = hit[2]
        if s.h == '' then redis.call('HDEL', room_key, hit[1]) else
          s.c = ''; s.x = now + ttl
          redis.call('HSET', room_key, hit[1], cjson.encode(s))
        end
        table.insert(out, {room, s.n, peers(rest, sid), stamp()})
      end
    end
    redis.call('DEL', set)
    redis.call('SREM', replicas, rep)
  end
end
return cjson.encode(out)
"""
)

# The seats whose connection this replica holds; stale entries of conns:<me> are dropped and
# the rooms' TTLs refreshed (so a room with live members never expires).
HELD = (
    _COMMON
    + """
local my_conns = KEYS[1]
local prefix, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for _, entry in ipairs(redis.call('SMEMBERS', my_conns)) do
  local room, sid = split(entry)
  local room_key = prefix .. 'room:' .. room
  local raw = redis.call('HGETALL', room_key)
  local hit, all = false, {}
  for i = 1, #raw, 2 do
    local s = cjson.decode(raw[i + 1])
    table.insert(all, {raw[i], s})
    if s.c == sid and s.r == me then hit = true end
  end
  if hit then
    touch(room_key, ttl)
    table.insert(out, {room, sid, peers(all, sid), stamp()})
  else
    redis.call('SREM', my_conns, entry)
  end
end
return cjson.encode(out)
"""
)

# Renew the lease; detect that Redis lost its data (epoch changed) or that we were presumed
# dead (lease gone or not ours, same epoch).
# The lease holds a token the script picks whenever the replica's own is not found: a replica
# adopts the token of every reply, so an "expired" reply lost on the way is reported again
# at the next beat (the lease then holds a token the replica never received), never missed.
# Resync window (resync key, PX window): a replica that knew an older epoch sets '1': only
# restores seat anyone. The replica that creates the epoch without knowing an older one
# (a new replica after a Redis restart, or a first start: the two look alike) sets 'p',
# unless a window is open already: joins still get seats, but provisional ones that an
# older replica's restore evicts, so strangers racing a restart take no member's seat.
HEARTBEAT = """
local alive, epoch_key, resync_key, replicas = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local me, known, fresh, token = ARGV[1], ARGV[2], ARGV[3], ARGV[7]
local lease, window, keep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local had = redis.call('GET', alive)
local ours = token ~= '' and had == token
if not ours then token = fresh end
redis.call('SET', alive, token, 'PX', lease)
local epoch = redis.call('GET', epoch_key)
if not epoch then
  redis.call('SET', epoch_key, fresh)
  epoch = fresh
  if known == '' then redis.call('SET', resync_key, 'p', 'PX', window, 'NX') end
end
redis.call('PEXPIRE', epoch_key, keep)
redis.call('SADD', replicas, me)
local status = 'ok'
if known ~= '' and epoch ~= known then
  status = 'resync'
  redis.call('SET', resync_key, '1', 'PX', window)
elseif known ~= '' and not ours then
  status = 'expired'
end
return {status, epoch, token}
"""
