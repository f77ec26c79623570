"""Seats in Redis, shared by every relay replica (the rules are in `store.py`).

Keys, each with a TTL or an owner that removes it. Every key carries a hash tag, and every
Lua script (redis_lua.py) touches the keys of one slot only, so this runs unchanged on one
Redis and on Redis Cluster (`redis_cluster.py`). Key names are built ONLY by the helpers
below (`room_key`, `replica_key`, `global_key`):
  parley:{<room>}:seats     hash    seat id -> seat JSON (see redis_lua.py); TTL seat_ttl +
                                    60 s, refreshed on every change and by every replica
                                    holding a member. Other per-room keys share the tag.
  parley:{r:<replica>}:conns set    "<room>|<sid>" per seat that replica holds; owner: that
                                    replica (deleted on shutdown, or pruned when it died)
  parley:{g}:leases         hash    replica -> "<lease end ms>|<token>"; TTL max(seat_ttl, 1 day),
                                    renewed by every lease; dead entries removed by the pruner
  parley:{g}:epoch          string  random id of this Redis data set; same TTL as leases
  parley:{g}:resync         string  present (TTL heartbeat_seconds) while replicas re-register
                                    their connections after Redis lost its data: "1" only
                                    restores seat anyone, "p" new seats are provisional

A join is three steps: register "<room>|<sid>" under our replica and read the epoch, run the
room's JOIN script, re-read the epoch. If the epoch changed in between (Redis lost its data),
the join is rolled back; a stale registration is harmless (`held` and the pruner skip and
drop it). So two joins can never make a room of three, on one Redis or on a cluster.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Container

import gevent
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import redis_lua
from .store import (
    DEFAULT_SEAT_TTL,
    ROOM_CAPACITY,
    Conn,
    DataSetChanged,
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
_TAG_BREAKERS = frozenset("{}")
# `held` runs one seat script per connection of the replica: this many per pipeline round
# trip (single Redis), then the relay's other greenlets get a turn. A renewal of our lease
# queued in Redis waits behind at most one batch (~256 short scripts, a few ms), and the
# relay never decodes more than one batch's answers in a row (10,000 at once: ~100 ms).
HELD_BATCH = 256


def _tag(name: str, what: str) -> str:
    # A brace would end the hash tag early: two rooms could then share keys' slots with
    # different tags. core.ROOM_RE and the replica id rules already exclude them.
    if not name or _TAG_BREAKERS & set(name):
        raise ValueError(f"{what} {name!r} cannot be used in a Redis key")
    return name


def room_key(room: str, part: str) -> str:
    """The key of `part` of `room` (e.g. "seats", "mbox:<seat>"): all in the room's slot."""
    return f"{PREFIX}{{{_tag(room, 'room')}}}:{part}"


def replica_key(replica: str, part: str) -> str:
    """The key of `part` of a relay replica (e.g. "conns", "to" for its bus channel)."""
    return f"{PREFIX}{{r:{_tag(replica, 'replica')}}}:{part}"


def global_key(part: str) -> str:
    """A key shared by all replicas ("leases", "epoch", "resync"): all in one slot."""
    return f"{PREFIX}{{g}}:{part}"


LEASES_KEY = global_key("leases")
EPOCH_KEY = global_key("epoch")
RESYNC_KEY = global_key("resync")


def make_client(
    url: str, *, max_connections: int = 512, decode: bool = True, name: str | None = None
):
    """A Redis client (a cluster client for a redis+cluster:// URL) whose pool waits for a
    free connection instead of failing.

    redis-py's default pool raises MaxConnectionsError past 100 connections; a blocking
    pool can never run dry, a burst just queues for a moment.
    """
    from .redis_cluster import is_cluster_url, make_cluster_client

    if is_cluster_url(url):
        return make_cluster_client(url, max_connections=max_connections, decode=decode, name=name)
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


def _entry(room: str, sid: str) -> str:
    return f"{room}|{sid}"


def _split(entry: str) -> tuple[str, str]:
    room, _, sid = entry.partition("|")
    return room, sid


class RedisStore:
    """Seats shared through Redis; see the module docstring for the key layout."""

    def __init__(
        self,
        client,
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
        # Replicas whose lease had run out at our last heartbeat: "rep=lease end,..." (the
        # room scripts free their seats; they cannot read other slots' leases themselves).
        self.dead = ""
        self.lease_token = ""  # what our lease holds while it is ours (redis_lua.HEARTBEAT)
        self._conns_key = replica_key(replica, "conns")
        self._join = client.register_script(redis_lua.JOIN)
        self._leave = client.register_script(redis_lua.LEAVE)
        self._hold = client.register_script(redis_lua.HOLD)
        self._beat = client.register_script(redis_lua.HEARTBEAT)
        self._forget = client.register_script(redis_lua.FORGET)
        self._health = None
        from .redis_cluster import is_cluster_client

        self._cluster = is_cluster_client(client)

    def seats_key(self, room: str) -> str:
        """The key of the room's seats hash (read by the mailbox scripts, redis_mailbox.py)."""
        return room_key(room, "seats")

    def join(self, room: str, req: JoinRequest, restore: bool = False) -> JoinResult:
        """Join in three single-slot steps (module docstring): resume / seat / refuse."""
        entry = _entry(room, req.sid)
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(replica_key(req.replica, "conns"), entry)
        pipe.get(EPOCH_KEY)  # GETs, not MGET: a cluster pipeline refuses multi-key commands
        pipe.get(RESYNC_KEY)
        _, epoch, resync = pipe.execute()
        epoch = _text(epoch)
        if epoch is None:
            return self._refused(req, entry, JoinResult("recovering"))
        out = json.loads(
            self._join(
                keys=[room_key(room, "seats")],
                args=[
                    req.sid,
                    req.replica,
                    req.name,
                    req.instance,
                    req.secret_hash,
                    self.capacity,
                    self.seat_ttl_ms,
                    "1" if restore else "0",
                    epoch,
                    _text(resync) or "",
                    self.dead,
                ],
            )
        )
        if out["s"] != "joined":
            return self._refused(req, entry, JoinResult(out["s"], holder=out.get("n", "")))
        if _text(self.client.get(EPOCH_KEY)) != epoch:
            # Redis lost its data while we joined: the seat went into a data set whose
            # replicas have not resynced yet. Undo it; the client retries.
            self.leave(room, req.sid)
            return JoinResult("recovering")
        replaced = out.get("r") or None
        return JoinResult(
            status="joined",
            peers=_conns(out.get("p")),
            replaced=Conn(replaced[0], replaced[1]) if replaced else None,
            version=int(out.get("v", 0)),
            evicted=_conns(out.get("e")),
        )

    def _refused(self, req: JoinRequest, entry: str, result: JoinResult) -> JoinResult:
        self.client.srem(replica_key(req.replica, "conns"), entry)
        return result

    def _vacate(self, room: str, sid: str, replica: str, release: bool, before: int = 0):
        return json.loads(
            self._leave(
                keys=[room_key(room, "seats")],
                args=[sid, replica, "1" if release else "0", self.seat_ttl_ms, self.dead, before],
            )
        )

    def leave(self, room: str, sid: str, release: bool = False) -> LeaveResult:
        out = self._vacate(room, sid, self.replica, release)
        self.client.srem(self._conns_key, _entry(room, sid))
        if not out.get("ok"):
            return LeaveResult(False)
        return LeaveResult(True, out["n"], _conns(out.get("p")), int(out["v"]))

    def _many(self, script, calls: list[tuple[list, list]]) -> list:
        """Run `script` once per (keys, args), pipelined (each call still one slot)."""
        if not calls:
            return []
        if self._cluster:  # redis-py refuses EVALSHA in a cluster pipeline: one by one
            return [script(keys=keys, args=args) for keys, args in calls]
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        results = pipe.execute(raise_on_error=False)
        # A script unknown to a node (e.g. one just promoted) fails alone: run it directly,
        # which loads it.
        return [
            script(keys=keys, args=args) if isinstance(res, Exception) else res
            for (keys, args), res in zip(calls, results, strict=True)
        ]

    def held(self, skip: Container[str] = frozenset()) -> list[Held]:
        """Seats our connections hold; our registrations without a seat are dropped, except
        those of `skip` (connections still joining: their seat may not be written yet).
        Raises DataSetChanged if the epoch is not the one of our last heartbeat."""
        known = self.epoch  # the lease loop may learn a new one while we read
        entries = sorted(_text(e) for e in self.client.smembers(self._conns_key))
        out, stale = [], []
        for start in range(0, len(entries), HELD_BATCH):
            if start:  # decoding a batch is CPU: let the other greenlets in between
                gevent.sleep(0)
            batch = entries[start : start + HELD_BATCH]
            calls = []
            for entry in batch:
                room, sid = _split(entry)
                calls.append(([room_key(room, "seats")], [sid, self.replica, self.seat_ttl_ms]))
            for entry, raw in zip(batch, self._many(self._hold, calls), strict=True):
                room, sid = _split(entry)
                res = json.loads(raw)
                if res.get("ok"):
                    out.append(Held(room, sid, _conns(res.get("p")), int(res["v"])))
                elif sid not in skip:
                    stale.append(entry)
        # Read after the scripts: a data set lost before or during them shows here (the
        # new one has another epoch, or none yet), and then "not listed" means nothing.
        if not known or _text(self.client.get(EPOCH_KEY)) != known:
            raise DataSetChanged
        if stale:
            self.client.srem(self._conns_key, *stale)
        return out

    def heartbeat(self) -> str:
        """Renew our lease; "resync" when Redis lost its data, "expired" when we were
        presumed dead while Redis kept it (see redis_lua.HEARTBEAT)."""
        status, epoch, dead, token = self._beat(
            keys=[LEASES_KEY, EPOCH_KEY, RESYNC_KEY],
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
        self.epoch, self.dead, self.lease_token = _text(epoch), _text(dead), _text(token)
        return _text(status)

    def prune_dead(self) -> list[Pruned]:
        """Vacate the seats of replicas dead at our last heartbeat, one room at a time; two
        pruners at once report each seat once (the room script vacates it once)."""
        out = []
        for item in filter(None, self.dead.split(",")):
            rep, _, until = item.rpartition("=")
            if rep == self.replica:
                continue
            key = replica_key(rep, "conns")
            entries = sorted(_text(e) for e in self.client.smembers(key))
            for entry in entries:
                room, sid = _split(entry)
                res = self._vacate(room, sid, rep, False, before=int(until))
                if res.get("ok"):
                    out.append(Pruned(room, res["n"], _conns(res.get("p")), int(res["v"])))
            if entries:  # only what we read: a replica back to life may have added more
                self.client.srem(key, *entries)
            self._forget(keys=[LEASES_KEY], args=[rep])
        return out

    def seats(self, room: str) -> list[dict]:
        """The room's seats as plain dicts (tests and diagnostics)."""
        out = []
        for raw in self.client.hvals(room_key(room, "seats")):
            s = json.loads(raw)
            out.append({"secret_hash": s["h"], "name": s["n"], "sid": s["c"], "replica": s["r"]})
        return out

    def ping(self) -> bool:
        """One quick PING (1 s timeouts, no retries) so /healthz answers fast even when
        Redis is unreachable or blackholed."""
        if self._health is None:
            self._health = _health_client(self.client)
        try:
            if self._cluster:  # the leases' master: what the heartbeat needs (not every node)
                node = self._health.get_node_from_key(LEASES_KEY)
                return bool(self._health.ping(target_nodes=node))
            return bool(self._health.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        """Drop our lease and registration (after our members have left)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self._conns_key)
        pipe.hdel(LEASES_KEY, self.replica)
        pipe.execute()


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _health_client(client):
    from .redis_cluster import cluster_health_client, is_cluster_client

    if is_cluster_client(client):
        return cluster_health_client(client)
    pool = client.connection_pool
    kwargs = {
        **pool.connection_kwargs,
        "socket_timeout": 1,
        "socket_connect_timeout": 1,
        "retry": Retry(NoBackoff(), 0),
    }
    return redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, max_connections=4, **kwargs
        )
    )
