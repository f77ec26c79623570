"""Seats in Redis, shared by every relay replica (the rules are in `store.py`).

Keys (all under `parley:`), each with a TTL or an owner that removes it:
  room:<room>       hash    seat id -> seat JSON (see redis_lua.py); TTL seat_ttl + 60 s,
                            refreshed on every change and by every replica holding a member
  conns:<replica>   set     "<room>|<sid>" per seat that replica holds; owner: that replica
                            (deleted on shutdown, or by any replica pruning it when it died)
  alive:<replica>   string  the replica's lease, TTL heartbeat_seconds
  replicas          set     replicas with a lease; dead ones removed by the pruner
  epoch             string  random id of this Redis data set; TTL max(seat_ttl, 1 day),
                            renewed by every lease
  resync            string  present (TTL heartbeat_seconds) while replicas re-register their
                            connections after Redis lost its data: only restores seat anyone

Every decision runs as one Lua script, so two joins can never make a room of three. The
scripts touch keys they compute (alive:/conns:/room:), so this needs one Redis, not Cluster.
"""

from __future__ import annotations

import json
import secrets

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import redis_lua
from .store import (
    DEFAULT_SEAT_TTL,
    ROOM_CAPACITY,
    Conn,
    Held,
    JoinRequest,
    JoinResult,
    LeaveResult,
    Pruned,
)

PREFIX = "parley:"
# The epoch outlives every seat, and at least a day: while replicas run they renew it; if it
# expires anyway, the next lease sees a new epoch and resyncs, which is safe.
EPOCH_MIN_TTL_MS = 24 * 3600 * 1000


def room_key(room: str, part: str) -> str:
    """A per-room key in the room's hash slot: `parley:{<room>}:<part>` (DECISIONS.md)."""
    return f"{PREFIX}{{{room}}}:{part}"


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


def _conns(raw) -> tuple[Conn, ...]:
    return tuple(Conn(r, s) for r, s in (raw or ()))


class RedisStore:
    """Seats shared through Redis; see the module docstring for the key layout."""

    def __init__(
        self,
        client: redis.Redis,
        replica: str,
        heartbeat_seconds: float,
        seat_ttl: float = DEFAULT_SEAT_TTL,
        capacity: int = ROOM_CAPACITY,
    ):
        self.client = client
        self.replica = replica
        self.capacity = capacity
        self.lease_ms = max(1, int(heartbeat_seconds * 1000))
        self.seat_ttl_ms = max(1, int(seat_ttl * 1000))
        self.epoch = ""  # the data set we registered in; "" until the first heartbeat
        self.lease_token = ""  # what our lease key holds while it is ours (redis_lua.HEARTBEAT)
        self._join = client.register_script(redis_lua.JOIN)
        self._leave = client.register_script(redis_lua.LEAVE)
        self._prune = client.register_script(redis_lua.PRUNE)
        self._held = client.register_script(redis_lua.HELD)
        self._beat = client.register_script(redis_lua.HEARTBEAT)
        self._health: redis.Redis | None = None

    def _key(self, kind: str, name: str = "") -> str:
        return f"{PREFIX}{kind}:{name}" if name else PREFIX + kind

    def seats_key(self, room: str) -> str:
        """The key of the room's seats hash (read by the mailbox scripts, redis_mailbox.py)."""
        return self._key("room", room)

    def join(self, room: str, req: JoinRequest, restore: bool = False) -> JoinResult:
        """Atomic join (Lua): clean the room, then resume / seat / refuse per the rules."""
        out = json.loads(
            self._join(
                keys=[
                    self._key("room", room),
                    self._key("conns", req.replica),
                    self._key("replicas"),
                    self._key("epoch"),
                    self._key("resync"),
                ],
                args=[
                    room,
                    req.sid,
                    req.replica,
                    req.name,
                    req.instance,
                    req.secret_hash,
                    self.capacity,
                    self.seat_ttl_ms,
                    PREFIX,
                    "1" if restore else "0",
                ],
            )
        )
        replaced = out.get("r") or None
        return JoinResult(
            status=out["s"],
            peers=_conns(out.get("p")),
            replaced=Conn(replaced[0], replaced[1]) if replaced else None,
            holder=out.get("n", ""),
            version=int(out.get("v", 0)),
            evicted=_conns(out.get("e")),
        )

    def leave(self, room: str, sid: str, release: bool = False) -> LeaveResult:
        out = json.loads(
            self._leave(
                keys=[self._key("room", room), self._key("conns", self.replica)],
                args=[room, sid, self.replica, "1" if release else "0", self.seat_ttl_ms, PREFIX],
            )
        )
        if not out.get("ok"):
            return LeaveResult(False)
        return LeaveResult(True, out["n"], _conns(out.get("p")), int(out["v"]))

    def held(self) -> list[Held]:
        out = json.loads(
            self._held(
                keys=[self._key("conns", self.replica)],
                args=[PREFIX, self.replica, self.seat_ttl_ms],
            )
        )
        return [Held(room, sid, _conns(peers), int(v)) for room, sid, peers, v in out or ()]

    def heartbeat(self) -> str:
        """Renew our lease; "resync" when Redis lost its data, "expired" when we were
        presumed dead while Redis kept it (see redis_lua.HEARTBEAT)."""
        status, epoch, token = self._beat(
            keys=[
                self._key("alive", self.replica),
                self._key("epoch"),
                self._key("resync"),
                self._key("replicas"),
            ],
            args=[
                self.replica,
                self.epoch,
                secrets.token_hex(8),
                self.lease_ms,
                self.lease_ms,  # resync window: every live replica beats within one lease
                max(self.seat_ttl_ms, EPOCH_MIN_TTL_MS),
                self.lease_token,
            ],
        )
        self.epoch, self.lease_token = epoch, token
        return status

    def prune_dead(self) -> list[Pruned]:
        out = json.loads(
            self._prune(keys=[self._key("replicas")], args=[PREFIX, self.replica, self.seat_ttl_ms])
        )
        return [Pruned(room, name, _conns(peers), int(v)) for room, name, peers, v in out or ()]

    def seats(self, room: str) -> list[dict]:
        """The room's seats as plain dicts (tests and diagnostics)."""
        out = []
        for raw in self.client.hvals(self._key("room", room)):
            s = json.loads(raw)
            out.append({"secret_hash": s["h"], "name": s["n"], "sid": s["c"], "replica": s["r"]})
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
        """Drop our lease and registration (after our members have left)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self._key("alive", self.replica), self._key("conns", self.replica))
        pipe.srem(self._key("replicas"), self.replica)
        pipe.execute()
