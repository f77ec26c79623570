"""Offline delivery in Redis, shared by every replica (the contract is in `mailbox.py`).

Keys, all in the room's hash slot (`redis_store.room_key`), `<tag>` = `mailbox.seat_tag`:
  mbox:<tag>     stream  one entry per stored message: p = payload JSON, f = sender's tag,
                         n = payload bytes. TTL mailbox TTL + 60 s, renewed by each append.
  mbytes:<tag>   string  sum of n over the stream (the byte limit without a scan); same TTL
  expired        list    "<sender tag>|<entry id>" per entry dropped unread (capped); TTL
                         twice the mailbox TTL, renewed by each notice
  prekeys:<tag>  string  the seat's signed bundle (JSON); TTL seat TTL + 60 s per publish
  otk:<tag>      list    one-time prekeys (JSON {"id","dh"}), capped; same TTL
and one global set `parley:{g}:mailboxes` ("<room>|<tag>" of every mailbox) that the janitor
walks to expire old entries; each member is removed once its stream is gone.

Why a Stream: entry ids are Redis-clock times in ms that never decrease (the `at` clients
show, and the arrival order), XRANGE reads a backlog in order from any point (a drain
resumes after the last entry it sent), XDEL removes acknowledged entries wherever they sit,
and the TTL cut is an id range. A list would need an index scan per ack; a sorted set would
need ids and times of our own.

Every decision is one Lua script whose keys are all passed in KEYS. The other seat's tag is
not known before reading the seats, so the store is optimistic: the caller passes the tag it
last saw for the room, and a script that finds another answers "moved" with the right one.
"""

from __future__ import annotations

import json

from .core import _JSON
from .mailbox import EXPIRED_NOTICES_MAX, Entry, Limits, Prekeys, Stored, seat_tag
from .redis_store import global_key, room_key
from .store import Conn

INDEX_KEY = global_key("mailboxes")
MARGIN_MS = 60_000
JANITOR_BATCH = 200  # mailboxes expired per janitor round and replica

_SEATS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- constant time over equal lengths (as redis_lua's): secret hashes are compared here
local function ct_eq(a, b)
  if a == '' or b == '' or #a ~= #b then return false end
  local d = 0
  for i = 1, #a do d = bit.bor(d, bit.bxor(string.byte(a, i), string.byte(b, i))) end
  return d == 0
end
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
-- drop entries older than the TTL; a notice for each one's sender; their tags
local function expire(mbox, mbytes, expired, now, ttl, cap)
  local cut = now - ttl
  local tags = {}
  if cut <= 0 then return tags end
  local old = redis.call('XRANGE', mbox, '-', cut, 'COUNT', 1000)
  for _, e in ipairs(old) do
    local f = fields(e[2])
    redis.call('RPUSH', expired, f.f .. '|' .. e[1])
    redis.call('DECRBY', mbytes, f.n)
    redis.call('XDEL', mbox, e[1])
    tags[f.f] = true
  end
  if #old > 0 then
    redis.call('LTRIM', expired, -cap, -1)
    redis.call('PEXPIRE', expired, 2 * ttl)
    if redis.call('XLEN', mbox) == 0 then redis.call('DEL', mbox, mbytes) end
  end
  return tags
end
"""

STORE = (
    _SEATS
    + """
local seats_key, mbox, mbytes, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hash, tag, payload, size = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_n, max_b, ttl, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local now = now_ms()
local mine, peer = pair(seats_key, hash, now)
if not mine or mine.c == '' or not peer then return cjson.encode({s = 'none'}) end
if peer.c ~= '' then return cjson.encode({s = 'live', r = peer.r, c = peer.c}) end
local ptag = string.sub(peer.h, 1, 16)
if ptag ~= tag then return cjson.encode({s = 'moved', t = ptag}) end
local gone = 0
for _ in pairs(expire(mbox, mbytes, expired, now, ttl, tonumber(cap))) do gone = gone + 1 end
local n = redis.call('XLEN', mbox)
local b = tonumber(redis.call('GET', mbytes) or '0')
if n + 1 > max_n or b + size > max_b then return cjson.encode({s = 'full', e = gone}) end
local id = redis.call('XADD', mbox, '*', 'p', payload, 'f', string.sub(hash, 1, 16), 'n', size)
redis.call('INCRBY', mbytes, size)
redis.call('PEXPIRE', mbox, ttl + 60000)
redis.call('PEXPIRE', mbytes, ttl + 60000)
return cjson.encode({s = 'stored', id = id, e = gone, n = n})
"""
)

# Expire one mailbox; report the live connections of the senders that got notices.
EXPIRE = (
    _SEATS
    + """
local seats_key, mbox, mbytes, expired = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local tags = expire(mbox, mbytes, expired, now_ms(), ttl, cap)
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
return cjson.encode({p = out, x = redis.call('EXISTS', mbox)})
"""
)

ACK = """
local mbox, mbytes = KEYS[1], KEYS[2]
local n = 0
for i = 1, #ARGV do
  local e = redis.call('XRANGE', mbox, ARGV[i], ARGV[i])
  if #e == 1 then
    local f = e[1][2]
    for j = 1, #f, 2 do if f[j] == 'n' then redis.call('DECRBY', mbytes, f[j + 1]) end end
    redis.call('XDEL', mbox, ARGV[i])
    n = n + 1
  end
end
if n > 0 and redis.call('XLEN', mbox) == 0 then redis.call('DEL', mbox, mbytes) end
return n
"""

TAKE_EXPIRED = """
local expired, tag = KEYS[1], ARGV[1]
local mine, rest = {}, {}
for _, v in ipairs(redis.call('LRANGE', expired, 0, -1)) do
  local i = string.find(v, '|', 1, true)
  if string.sub(v, 1, i - 1) == tag then table.insert(mine, string.sub(v, i + 1))
  else table.insert(rest, v) end
end
if #mine > 0 then
  redis.call('DEL', expired)
  if #rest > 0 then redis.call('RPUSH', expired, unpack(rest)) end
end
return mine
"""

PUT_PREKEYS = """
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
return n
"""

FETCH_PREKEYS = (
    _SEATS
    + """
local seats_key, bundle_key, otk = KEYS[1], KEYS[2], KEYS[3]
local hash, tag = ARGV[1], ARGV[2]
local mine, peer = pair(seats_key, hash, now_ms())
if not mine or not peer or peer.h == '' then return cjson.encode({s = 'none'}) end
local ptag = string.sub(peer.h, 1, 16)
if ptag ~= tag then return cjson.encode({s = 'moved', t = ptag}) end
local bundle = redis.call('GET', bundle_key)
if not bundle then return cjson.encode({s = 'none'}) end
return cjson.encode({s = 'ok', b = bundle, o = redis.call('LPOP', otk)})
"""
)


class RedisMailbox:
    """`MailboxStore` on the Redis of a `RedisStore` (same client, same seats)."""

    def __init__(self, seats, limits: Limits | None = None):
        self.seats = seats  # redis_store.RedisStore: its client and its seats' key
        self.client = seats.client
        self.limits = limits or Limits()
        self.seat_ttl_ms = seats.seat_ttl_ms
        # (room, asking seat's tag) -> the other seat's tag last seen
        self.peer_tags: dict[tuple[str, str], str] = {}
        self.cursor = 0
        self._store = self.client.register_script(STORE)
        self._expire = self.client.register_script(EXPIRE)
        self._ack = self.client.register_script(ACK)
        self._take = self.client.register_script(TAKE_EXPIRED)
        self._put = self.client.register_script(PUT_PREKEYS)
        self._fetch = self.client.register_script(FETCH_PREKEYS)

    def _keys(self, room: str, tag: str) -> list[str]:
        return [
            self.seats.seats_key(room),
            room_key(room, f"mbox:{tag}"),
            room_key(room, f"mbytes:{tag}"),
            room_key(room, "expired"),
        ]

    def _optimistic(self, room: str, asker_hash: str, run) -> tuple[dict, str]:
        """Run a script with the peer tag last seen; once more if the seat moved. Returns
        the script's answer and the tag it ran with."""
        key = (room, seat_tag(asker_hash))
        tag = self.peer_tags.get(key, "0" * 16)
        out = json.loads(run(tag))
        if out["s"] == "moved":
            tag = self.peer_tags[key] = out["t"]
            out = json.loads(run(tag))
        if len(self.peer_tags) > 10_000:  # a cache, not a registry: forget old rooms
            self.peer_tags.clear()
        return out, tag

    def store(self, room: str, sender_hash: str, payload: object, size: int) -> Stored:
        text = _JSON.encode(payload)
        lim = self.limits

        def run(tag: str):
            args = [sender_hash, tag, text, size, lim.max_messages, lim.max_bytes, lim.ttl_ms]
            return self._store(keys=self._keys(room, tag), args=[*args, EXPIRED_NOTICES_MAX])

        out, tag = self._optimistic(room, sender_hash, run)
        status = out["s"]
        if status == "live":
            return Stored("live", peer=Conn(out["r"], out["c"]))
        if status == "stored":
            # Outside the script: the index is one global key (another slot under Cluster).
            # Only for a new stream: the janitor keeps a member while its stream exists.
            if out["n"] == 0:
                self.client.sadd(INDEX_KEY, f"{room}|{tag}")
            return Stored("stored", id=out["id"], expired=int(out["e"]))
        return Stored(status, expired=int(out.get("e", 0)))

    def backlog(self, room: str, owner_hash: str, after: str = "", count: int = 100) -> list:
        key = room_key(room, f"mbox:{seat_tag(owner_hash)}")
        start = f"({after}" if after else "-"
        cut = _now_ms(self.client) - self.limits.ttl_ms
        out = []
        for entry_id, fields in self.client.xrange(key, start, "+", count=count):
            at = int(entry_id.partition("-")[0])
            if at > cut:  # an older one is the janitor's, with its notice
                out.append(Entry(entry_id, at, json.loads(fields["p"])))
        return out

    def ack(self, room: str, owner_hash: str, ids: list[str]) -> int:
        tag = seat_tag(owner_hash)
        keys = [room_key(room, f"mbox:{tag}"), room_key(room, f"mbytes:{tag}")]
        return int(self._ack(keys=keys, args=ids))

    def expire(self, room: str, owner_hash: str) -> list[Conn]:
        out = json.loads(
            self._expire(
                keys=self._keys(room, seat_tag(owner_hash)),
                args=[self.limits.ttl_ms, EXPIRED_NOTICES_MAX],
            )
        )
        return [Conn(r, c) for r, c in out["p"] or ()]

    def take_expired(self, room: str, sender_hash: str) -> list[str]:
        return list(self._take(keys=[room_key(room, "expired")], args=[seat_tag(sender_hash)]))

    def expire_all(self) -> list[tuple[str, Conn]]:
        """One janitor round over (part of) the index; a stream gone leaves the index."""
        self.cursor, members = self.client.sscan(INDEX_KEY, self.cursor, count=JANITOR_BATCH)
        told = []
        for member in members:
            room, _, tag = member.rpartition("|")
            out = json.loads(
                self._expire(
                    keys=self._keys(room, tag), args=[self.limits.ttl_ms, EXPIRED_NOTICES_MAX]
                )
            )
            told += [(room, Conn(r, c)) for r, c in out["p"] or ()]
            if not out["x"]:
                # Racing an append is harmless: re-add when the stream came back meanwhile.
                self.client.srem(INDEX_KEY, member)
                if self.client.exists(room_key(room, f"mbox:{tag}")):
                    self.client.sadd(INDEX_KEY, member)
        return told

    def put_prekeys(self, room: str, owner_hash: str, bundle, one_time: list) -> int:
        tag = seat_tag(owner_hash)
        args = [
            _JSON.encode(bundle) if bundle is not None else "",
            self.limits.prekeys_max,
            self.seat_ttl_ms,
        ]
        for key in one_time:
            args += [key["id"], _JSON.encode(key)]
        keys = [room_key(room, f"prekeys:{tag}"), room_key(room, f"otk:{tag}")]
        return int(self._put(keys=keys, args=args))

    def fetch_prekeys(self, room: str, asker_hash: str) -> Prekeys | None:
        def run(tag: str):
            keys = [
                self.seats.seats_key(room),
                room_key(room, f"prekeys:{tag}"),
                room_key(room, f"otk:{tag}"),
            ]
            return self._fetch(keys=keys, args=[asker_hash, tag])

        out, _ = self._optimistic(room, asker_hash, run)
        if out["s"] != "ok":
            return None
        one_time = out.get("o")
        return Prekeys(json.loads(out["b"]), json.loads(one_time) if one_time else None)

    def drop_seat(self, room: str, owner_hash: str) -> None:
        tag = seat_tag(owner_hash)
        parts = ("mbox", "mbytes", "prekeys", "otk")
        self.client.delete(*(room_key(room, f"{p}:{tag}") for p in parts))

    def counts(self, room: str, owner_hash: str) -> tuple[int, int, int]:
        tag = seat_tag(owner_hash)
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(room_key(room, f"mbox:{tag}"))
        pipe.get(room_key(room, f"mbytes:{tag}"))
        pipe.llen(room_key(room, f"otk:{tag}"))
        n, size, otk = pipe.execute()
        return int(n), int(size or 0), int(otk)


def _now_ms(client) -> int:
    """Redis's clock (the one entry ids come from), in ms."""
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000
