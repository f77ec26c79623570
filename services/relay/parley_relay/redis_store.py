"""Room membership in Redis, shared by every relay replica.

Keys (all under `parley:`):
  room:<room>       hash   sid -> "<replica>|<name>"
  members:<replica> set    "<room>|<sid>" for every member that replica holds (for pruning)
  alive:<replica>   string heartbeat, expires after `heartbeat_seconds`
  replicas          set    every replica that ever joined someone

Joins run as one Lua script, so two simultaneous joins can never make a room of three, and
members of replicas whose heartbeat has expired are pruned inside the same script. The
scripts touch keys they compute (alive:/members:), so this needs a single Redis, not Cluster.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .core import DEFAULT_NAME, ROOM_CAPACITY
from .store import JoinResult, Member, Pruned

PREFIX = "parley:"

_JOIN = """
local room_key, my_set, replicas = KEYS[1], KEYS[2], KEYS[3]
local sid, replica, name = ARGV[1], ARGV[2], ARGV[3]
local cap, room, anon, prefix = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local function split(v)
  local i = string.find(v, '|', 1, true)
  return string.sub(v, 1, i - 1), string.sub(v, i + 1)
end
local entries = redis.call('HGETALL', room_key)
local members, present = {}, false
for i = 1, #entries, 2 do
  local msid = entries[i]
  local rep, mname = split(entries[i + 1])
  if rep ~= replica and redis.call('EXISTS', prefix .. 'alive:' .. rep) == 0 then
    -- a ghost: its replica stopped heartbeating
    redis.call('HDEL', room_key, msid)
    redis.call('SREM', prefix .. 'members:' .. rep, room .. '|' .. msid)
  else
    if msid == sid then present = true end
    table.insert(members, {msid, rep, mname})
  end
end
local out = {1, '', '', ''}
if not present and #members >= cap then
  local same = {}
  if name ~= anon then
    for _, m in ipairs(members) do
      if m[3] == name then table.insert(same, m) end
    end
  end
  if #same ~= 1 then
    out = {0, '', '', ''}
    for _, m in ipairs(members) do
      table.insert(out, m[1]); table.insert(out, m[2]); table.insert(out, m[3])
    end
    return out
  end
  local old = same[1]
  redis.call('HDEL', room_key, old[1])
  redis.call('SREM', prefix .. 'members:' .. old[2], room .. '|' .. old[1])
  out = {1, old[1], old[2], old[3]}
end
redis.call('HSET', room_key, sid, replica .. '|' .. name)
redis.call('SADD', my_set, room .. '|' .. sid)
redis.call('SADD', replicas, replica)
entries = redis.call('HGETALL', room_key)
for i = 1, #entries, 2 do
  local rep, mname = split(entries[i + 1])
  table.insert(out, entries[i]); table.insert(out, rep); table.insert(out, mname)
end
return out
"""

_PRUNE = """
local prefix, me = ARGV[1], ARGV[2]
local out = {}
for _, rep in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if rep ~= me and redis.call('EXISTS', prefix .. 'alive:' .. rep) == 0 then
    local set = prefix .. 'members:' .. rep
    for _, entry in ipairs(redis.call('SMEMBERS', set)) do
      local i = string.find(entry, '|', 1, true)
      local room, msid = string.sub(entry, 1, i - 1), string.sub(entry, i + 1)
      local key = prefix .. 'room:' .. room
      local val = redis.call('HGET', key, msid)
      if val then
        redis.call('HDEL', key, msid)
        local j = string.find(val, '|', 1, true)
        table.insert(out, room); table.insert(out, msid)
        table.insert(out, rep); table.insert(out, string.sub(val, j + 1))
      end
    end
    redis.call('DEL', set)
    redis.call('SREM', KEYS[1], rep)
  end
end
return out
"""


def make_client(
    url: str, *, max_connections: int = 512, decode: bool = True, name: str | None = None
) -> redis.Redis:
    """A Redis client whose pool waits for a free connection instead of failing.

    redis-py's default pool raises MaxConnectionsError past 100 connections; a blocking
    pool can never run dry, a burst just queues for a moment.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_timeout=5,
        socket_connect_timeout=2,
        socket_keepalive=True,
        health_check_interval=30,
        decode_responses=decode,
        client_name=name,
    )
    return redis.Redis(connection_pool=pool)


def _triplets(flat: list, start: int) -> tuple[Member, ...]:
    return tuple(
        Member(sid=flat[i], replica=flat[i + 1], name=flat[i + 2])
        for i in range(start, len(flat), 3)
    )


class RedisStore:
    """Membership shared through Redis; see the module docstring for the key layout."""

    def __init__(self, client: redis.Redis, replica: str, heartbeat_seconds: float):
        self.client = client
        self.replica = replica
        self.ttl_ms = max(1, int(heartbeat_seconds * 1000))
        self._join = client.register_script(_JOIN)
        self._prune = client.register_script(_PRUNE)
        self._health: redis.Redis | None = None

    def _room_key(self, room: str) -> str:
        return f"{PREFIX}room:{room}"

    def _members_key(self, replica: str) -> str:
        return f"{PREFIX}members:{replica}"

    def join(self, room: str, member: Member, capacity: int = ROOM_CAPACITY) -> JoinResult:
        """Atomic join (Lua): prune ghosts, refuse when full, or take over a stale session."""
        out = self._join(
            keys=[self._room_key(room), self._members_key(member.replica), PREFIX + "replicas"],
            args=[member.sid, member.replica, member.name, capacity, room, DEFAULT_NAME, PREFIX],
        )
        replaced = None
        if out[1]:
            replaced = Member(sid=out[1], replica=out[2], name=out[3])
        return JoinResult(joined=int(out[0]) == 1, members=_triplets(out, 4), replaced=replaced)

    def leave(self, room: str, sid: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self._room_key(room), sid)
        pipe.srem(self._members_key(self.replica), f"{room}|{sid}")
        removed, _ = pipe.execute()
        return int(removed) == 1

    def heartbeat(self) -> bool:
        """Refresh our liveness key; True when it had vanished (Redis lost its data)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(f"{PREFIX}alive:{self.replica}", "1", px=self.ttl_ms, get=True)
        pipe.sadd(PREFIX + "replicas", self.replica)
        previous, _ = pipe.execute()
        return previous is None

    def prune_dead(self) -> list[Pruned]:
        out = self._prune(keys=[PREFIX + "replicas"], args=[PREFIX, self.replica])
        return [
            Pruned(room=out[i], member=Member(sid=out[i + 1], replica=out[i + 2], name=out[i + 3]))
            for i in range(0, len(out), 4)
        ]

    def members(self, room: str) -> list[Member]:
        """Current members of a room (for tests and diagnostics)."""
        raw = self.client.hgetall(self._room_key(room))
        out = []
        for sid, val in raw.items():
            replica, _, name = val.partition("|")
            out.append(Member(sid=sid, replica=replica, name=name))
        return out

    def ping(self) -> bool:
        """One quick PING (1 s timeouts, no retries) so /healthz answers fast even when
        Redis is unreachable or blackholed."""
        if self._health is None:
            pool = self.client.connection_pool
            kwargs = {
                **pool.connection_kwargs,
                "socket_timeout": 1,
                "socket_connect_timeout": 1,
                "retry": Retry(NoBackoff(), 0),
            }
            self._health = redis.Redis(
                connection_pool=redis.ConnectionPool(
                    connection_class=pool.connection_class, max_connections=4, **kwargs
                )
            )
        try:
            return bool(self._health.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        """Drop our liveness key and registration (after our members have left)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(f"{PREFIX}alive:{self.replica}", self._members_key(self.replica))
        pipe.srem(PREFIX + "replicas", self.replica)
        pipe.execute()
