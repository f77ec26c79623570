"""The Lua scripts of `redis_mailbox.RedisMailbox` (key layout in its docstring).

Each script touches only keys of one room's slot, all passed in KEYS. Bytes that leave a
mailbox are reported per budget bucket (field `b` of an entry, see budget.py) as a JSON
object {"<bucket>": bytes}, so the caller can give them back to the relay-wide budget.
"""

from .redis_lua import CLOCK_AND_COMPARE

_SEATS = (
    CLOCK_AND_COMPARE
    + """
-- my seat and the room's other seat (a live one, or one reserved by a secret)
local function pair(seats_key, hash, now)
  local raw = redis.call('HGETALL', seats_key)
  local mine, other = nil, nil
  for i = 1, #raw, 2 do
    local s = cjson.decode(raw[i + 1])
    if ct_eq(s.h, hash) then mine = s
    elseif s.c ~= '' or (s.h ~= '' and s.x > now) then other = s end
  end
  return mine, other
end
local function fields(f)
  local t = {}
  for i = 1, #f, 2 do t[f[i]] = f[i + 1] end
  return t
end
-- an entry's bytes, given back to its budget bucket (entries from before the budget: none)
local function free(freed, f)
  if f.b then freed[f.b] = (freed[f.b] or 0) + tonumber(f.n) end
end
-- drop entries older than the TTL; a notice for each one's sender; their tags
local function expire(mbox, mbytes, expired, now, ttl, cap, freed)
  local cut = now - ttl
  local tags = {}
  if cut <= 0 then return tags end
  local old = redis.call('XRANGE', mbox, '-', cut, 'COUNT', 1000)
  for _, e in ipairs(old) do
    local f = fields(e[2])
    redis.call('RPUSH', expired, f.f .. '|' .. e[1])
    redis.call('DECRBY', mbytes, f.n)
    redis.call('XDEL', mbox, e[1])
    free(freed, f)
    tags[f.f] = true
  end
  if #old > 0 then
    redis.call('LTRIM', expired, -cap, -1)
    redis.call('PEXPIRE', expired, 2 * ttl)
    if redis.call('XLEN', mbox) == 0 then redis.call('DEL', mbox, mbytes) end
  end
  return tags
end
-- append within the seat's limits: the answer for the caller
local function append(mbox, mbytes, expired, now, a, from)
  local freed = {}
  local gone = 0
  for _ in pairs(expire(mbox, mbytes, expired, now, a.ttl, a.cap, freed)) do gone = gone + 1 end
  local n = redis.call('XLEN', mbox)
  local b = tonumber(redis.call('GET', mbytes) or '0')
  -- bucket '': the relay-wide budget had no room (still answer live / none as usual)
  if a.bucket == '' or n + 1 > a.max_n or b + a.size > a.max_b then
    return cjson.encode({s = 'full', e = gone, f = freed})
  end
  local id = redis.call('XADD', mbox, '*', 'p', a.payload, 'f', from, 'n', a.size, 'b', a.bucket)
  redis.call('INCRBY', mbytes, a.size)
  redis.call('PEXPIRE', mbox, a.ttl + 60000)
  redis.call('PEXPIRE', mbytes, a.ttl + 60000)
  return cjson.encode({s = 'stored', id = id, e = gone, n = n, f = freed})
end
local function append_args(first)
  return {payload = ARGV[first], size = tonumber(ARGV[first + 1]),
          max_n = tonumber(ARGV[first + 2]), max_b = tonumber(ARGV[first + 3]),
          ttl = tonumber(ARGV[first + 4]), cap = tonumber(ARGV[first + 5]),
          bucket = ARGV[first + 6]}
end
"""
)

# The sender's message for the room's other seat: live, or into its mailbox.
STORE = (
    _SEATS
    + """
local seats_key, mbox, mbytes, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hash, tag = ARGV[1], ARGV[2]
local now = now_ms()
local mine, peer = pair(seats_key, hash, now)
if not mine or mine.c == '' or not peer then return cjson.encode({s = 'none'}) end
if peer.c ~= '' then return cjson.encode({s = 'live', r = peer.r, c = peer.c}) end
local ptag = string.sub(peer.h, 1, 16)
if ptag ~= tag then return cjson.encode({s = 'moved', t = ptag}) end
return append(mbox, mbytes, expired, now, append_args(3), string.sub(hash, 1, 16))
"""
)

# A live message that missed the owner's connection: to its current one, or its mailbox.
DELIVER = (
    _SEATS
    + """
local seats_key, mbox, mbytes, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hash = ARGV[1]
local now = now_ms()
local mine, other = pair(seats_key, hash, now)
if not mine then return cjson.encode({s = 'none'}) end
if mine.c ~= '' then return cjson.encode({s = 'live', r = mine.r, c = mine.c}) end
local from = other and string.sub(other.h, 1, 16) or ''
return append(mbox, mbytes, expired, now, append_args(2), from)
"""
)

# Expire one mailbox; report the live connections of the senders that got notices.
EXPIRE = (
    _SEATS
    + """
local seats_key, mbox, mbytes, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local freed = {}
local tags = expire(mbox, mbytes, expired, now_ms(), ttl, cap, freed)
local out = {}
if next(tags) then
  local raw = redis.call('HGETALL', seats_key)
  for i = 1, #raw, 2 do
    local s = cjson.decode(raw[i + 1])
    if s.c ~= '' and s.h ~= '' and tags[string.sub(s.h, 1, 16)] then
      table.insert(out, {s.r, s.c})
    end
  end
end
return cjson.encode({p = out, x = redis.call('EXISTS', mbox), f = freed})
"""
)

ACK = (
    _SEATS
    + """
local mbox, mbytes = KEYS[1], KEYS[2]
local n, freed = 0, {}
for i = 1, #ARGV do
  local e = redis.call('XRANGE', mbox, ARGV[i], ARGV[i])
  if #e == 1 then
    local f = fields(e[1][2])
    redis.call('DECRBY', mbytes, f.n)
    redis.call('XDEL', mbox, ARGV[i])
    free(freed, f)
    n = n + 1
  end
end
if n > 0 and redis.call('XLEN', mbox) == 0 then redis.call('DEL', mbox, mbytes) end
return cjson.encode({n = n, f = freed})
"""
)

# Drop a released seat's mailbox and prekeys; the mailbox's bytes per bucket.
DROP = (
    _SEATS
    + """
local freed = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do free(freed, fields(e[2])) end
redis.call('DEL', unpack(KEYS))
return cjson.encode({f = freed})
"""
)

# The sender's notices, the others' kept with the list's remaining time to live.
TAKE_EXPIRED = """
local expired, tag = KEYS[1], ARGV[1]
local mine, rest = {}, {}
for _, v in ipairs(redis.call('LRANGE', expired, 0, -1)) do
  local i = string.find(v, '|', 1, true)
  if string.sub(v, 1, i - 1) == tag then table.insert(mine, string.sub(v, i + 1))
  else table.insert(rest, v) end
end
if #mine > 0 then
  local ttl = redis.call('PTTL', expired)
  redis.call('DEL', expired)
  if #rest > 0 then
    redis.call('RPUSH', expired, unpack(rest))
    if ttl > 0 then redis.call('PEXPIRE', expired, ttl) end
  end
end
return mine
"""

_PREKEY_BYTES = """
-- bytes a seat's prekeys take now (the budget's count of them)
local function prekey_bytes(bundle_key, otk)
  local n = redis.call('STRLEN', bundle_key)
  for _, v in ipairs(redis.call('LRANGE', otk, 0, -1)) do n = n + #v end
  return n
end
"""

# Returns {one-time keys now, the seat's prekey bytes now}.
PUT_PREKEYS = (
    _PREKEY_BYTES
    + """
local bundle_key, otk = KEYS[1], KEYS[2]
local bundle, cap, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if bundle ~= '' then redis.call('SET', bundle_key, bundle) end
local known = {}
for _, v in ipairs(redis.call('LRANGE', otk, 0, -1)) do known[cjson.decode(v).id] = true end
local n = redis.call('LLEN', otk)
for i = 4, #ARGV, 2 do
  if n >= cap then break end
  if not known[ARGV[i]] then
    redis.call('RPUSH', otk, ARGV[i + 1])
    known[ARGV[i]] = true
    n = n + 1
  end
end
for _, k in ipairs({bundle_key, otk}) do
  if redis.call('EXISTS', k) == 1 then redis.call('PEXPIRE', k, ttl + 60000) end
end
return {n, prekey_bytes(bundle_key, otk)}
"""
)

# The other seat's bundle and a one-time key: the one this asker got within the window
# (`given`), else a new one popped (and remembered for the window).
FETCH_PREKEYS = (
    _SEATS
    + _PREKEY_BYTES
    + """
local seats_key, bundle_key, otk, given = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hash, tag, window = ARGV[1], ARGV[2], tonumber(ARGV[3])
local mine, peer = pair(seats_key, hash, now_ms())
if not mine or not peer or peer.h == '' then return cjson.encode({s = 'none'}) end
local ptag = string.sub(peer.h, 1, 16)
if ptag ~= tag then return cjson.encode({s = 'moved', t = ptag}) end
local bundle = redis.call('GET', bundle_key)
if not bundle then return cjson.encode({s = 'none'}) end
local one = window > 0 and redis.call('GET', given) or false
local left = -1  -- the owner's prekey bytes after a pop (-1: nothing popped)
if not one then
  one = redis.call('LPOP', otk)
  if one then left = prekey_bytes(bundle_key, otk) end
  if one and window > 0 then redis.call('SET', given, one, 'PX', window) end
end
return cjson.encode({s = 'ok', b = bundle, o = one, t = left})
"""
)
