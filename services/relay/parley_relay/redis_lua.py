"""The Lua scripts behind `redis_store.RedisStore` (each runs atomically inside Redis).

Every script touches the keys of ONE hash slot, all passed in KEYS, so the same scripts run
on a single Redis and on Redis Cluster. Decisions that need other slots (the epoch, the
leases of other replicas, a replica's list of connections) are separate steps in
redis_store.py, ordered so that a crash or race between them leaves nothing wrong behind.

A seat is a field of the hash `parley:{<room>}:seats`, its value JSON:
  {"h": sha256 hex of the secret or "", "n": name, "i": instance, "r": replica,
   "c": sid of the live connection or "", "x": reservation end in ms (when "c" is ""),
   "t": when the connection took the seat (ms), "e": the epoch it was seated under}
Times come from Redis (TIME), so replicas with skewed clocks agree.
"""

# Redis time in ms and the constant-time compare of secret hashes: shared by these scripts
# and the mailbox's (mailbox_lua.py).
CLOCK_AND_COMPARE = """
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
"""

# Shared helpers, prepended to every room script.
_COMMON = (
    CLOCK_AND_COMPARE
    + """
-- Redis time in microseconds, as text (too many digits for cjson's numbers): the version of
-- a seat change, so a replica applies peer updates that cross on the wire in the right order
local function stamp()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
-- "rep=expiry,rep=expiry": replicas whose lease had run out at the caller's last heartbeat
local function parse_dead(text)
  local dead = {}
  for rep, exp in string.gmatch(text or '', '([^=,]+)=(%d+)') do dead[rep] = tonumber(exp) end
  return dead
end
-- the room's seats after dropping expired reservations and the connections of dead
-- replicas (a secret seat stays reserved, a seat without secret is freed). A seat taken
-- after its replica's lease ran out belongs to the replica's next life: kept.
local function load(room_key, me, now, ttl, dead)
  local raw = redis.call('HGETALL', room_key)
  local seats = {}
  for i = 1, #raw, 2 do
    local id, s = raw[i], cjson.decode(raw[i + 1])
    local keep = true
    local gone = dead[s.r]
    if s.c ~= '' and s.r ~= me and gone and (s.t or 0) < gone then
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
)

# Seat a connection. The caller checked the epoch first (and re-checks it afterwards:
# redis_store.RedisStore.join) and passes it with the resync window value it read.
JOIN = (
    _COMMON
    + """
local room_key = KEYS[1]
local sid, me, name, inst, hash = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cap, ttl, restore = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == '1'
-- resync window: '1' only restores seat anyone; 'p' (a new replica began this data set)
-- new seats are provisional, and a restore evicts them (see HEARTBEAT)
local epoch, window, dead = ARGV[9], ARGV[10], parse_dead(ARGV[11])
local now = now_ms()
local seats = load(room_key, me, now, ttl, dead)
local evicted = {}
if restore then
  local kept = {}
  for _, e in ipairs(seats) do
    local s = e[2]
    if s.p == 1 and s.c ~= sid and not ct_eq(s.h, hash) then
      redis.call('HDEL', room_key, e[1])
      if s.c ~= '' then table.insert(evicted, {s.r, s.c}) end
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
  if s.c ~= '' and s.c ~= sid then replaced = {s.r, s.c} end
  s.c = sid; s.r = me; s.i = inst; s.n = name; s.x = 0; s.t = now; s.e = epoch
  redis.call('HSET', room_key, mine[1], cjson.encode(s))
else
  local present = false
  for _, e in ipairs(seats) do if e[2].c == sid then present = true end end
  if not present then
    if not restore and window == '1' then return cjson.encode({s = 'recovering'}) end
    if restore and #seats >= cap then
      -- a live seat taken under an older epoch was taken in the instant after Redis lost
      -- its data, before its joiner noticed: that join is being rolled back; a restore wins
      for i, e in ipairs(seats) do
        if e[2].c ~= '' and e[2].e ~= epoch then
          redis.call('HDEL', room_key, e[1]); table.remove(seats, i)
          table.insert(evicted, {e[2].r, e[2].c}); break
        end
      end
    end
    if #seats >= cap then return cjson.encode({s = 'room_full'}) end
    local s = {h = hash, n = name, i = inst, r = me, c = sid, x = 0, t = now, e = epoch}
    if not restore and window == 'p' then s.p = 1 end
    redis.call('HSET', room_key, sid, cjson.encode(s))
    table.insert(seats, {sid, s})
  end
end
touch(room_key, ttl)
return cjson.encode({s = 'joined', p = peers(seats, sid), r = replaced, e = evicted, v = stamp()})
"""
)

# Take the connection `sid` of replica `rep` out of its seat (a leave, or the pruner for a
# dead replica; then only a seat taken before `before` ms, 0 = any, is vacated).
LEAVE = (
    _COMMON
    + """
local room_key = KEYS[1]
local sid, rep, release, ttl = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local dead, before = parse_dead(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local seats = load(room_key, rep, now, ttl, dead)
local found, rest = nil, {}
for _, e in ipairs(seats) do
  local s = e[2]
  if s.c == sid and s.r == rep and (before == 0 or (s.t or 0) < before) then
    found = e
  else
    table.insert(rest, e)
  end
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

# Does `sid` of this replica still hold its seat? If so refresh the room's TTL (a room with
# live members never expires) and return its peers.
HOLD = (
    _COMMON
    + """
local room_key = KEYS[1]
local sid, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('HGETALL', room_key)
local hit, all = false, {}
for i = 1, #raw, 2 do
  local s = cjson.decode(raw[i + 1])
  table.insert(all, {raw[i], s})
  if s.c == sid and s.r == me then hit = true end
end
if not hit then return cjson.encode({ok = 0}) end
touch(room_key, ttl)
return cjson.encode({ok = 1, p = peers(all, sid), v = stamp()})
"""
)

# Renew the lease (the hash `leases`: replica -> "<lease end ms>|<token>"); detect that Redis
# lost its data (epoch changed) or that we were presumed dead (lease gone, run out or not
# ours, same epoch). Returns the replicas whose lease ran out, for the room scripts.
# The lease holds a token the script picks whenever the replica's own is not found: a replica
# adopts the token of every reply, so an "expired" reply lost on the way is reported again
# at the next beat (the lease then holds a token the replica never received), never missed.
# Resync window (resync key, PX window): a replica that knew an older epoch sets '1': only
# restores seat anyone. The replica that creates the epoch without knowing an older one
# (a new replica after a Redis restart, or a first start: the two look alike) sets 'p',
# unless a window is open already: joins still get seats, but provisional ones that an
# older replica's restore evicts, so strangers racing a restart take no member's seat.
HEARTBEAT = """
local leases, epoch_key, resync_key = KEYS[1], KEYS[2], KEYS[3]
local me, known, fresh, token = ARGV[1], ARGV[2], ARGV[3], ARGV[7]
local lease, window, keep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function lease_end(v) return tonumber(string.match(v or '', '^(%d+)')) or 0 end
local had = redis.call('HGET', leases, me)
local ours = token ~= '' and had ~= false and string.match(had, '|(.*)$') == token
  and lease_end(had) > now
if not ours then token = fresh end
redis.call('HSET', leases, me, (now + lease) .. '|' .. token)
redis.call('PEXPIRE', leases, keep)
local epoch = redis.call('GET', epoch_key)
if not epoch then
  redis.call('SET', epoch_key, fresh)
  epoch = fresh
  if known == '' then redis.call('SET', resync_key, 'p', 'PX', window, 'NX') end
end
redis.call('PEXPIRE', epoch_key, keep)
local status = 'ok'
if known ~= '' and epoch ~= known then
  status = 'resync'
  redis.call('SET', resync_key, '1', 'PX', window)
elseif known ~= '' and not ours then
  status = 'expired'
end
local dead = {}
local all = redis.call('HGETALL', leases)
for i = 1, #all, 2 do
  local until_ms = lease_end(all[i + 1])
  if until_ms <= now then table.insert(dead, all[i] .. '=' .. until_ms) end
end
return {status, epoch, table.concat(dead, ','), token}
"""

# After pruning a dead replica: forget its lease, unless it renewed meanwhile.
FORGET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and (tonumber(string.match(v, '^(%d+)')) or 0) <= now then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
