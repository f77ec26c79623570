"""Offline delivery in Redis, shared by every replica (the contract is in `mailbox.py`).

Keys, all in the room's hash slot (`redis_store.room_key`), `<tag>` = `mailbox.seat_tag`:
  mbox:<tag>     stream  one entry per stored message: p = payload JSON, f = sender's tag,
                         n = payload bytes. TTL mailbox TTL + 60 s, renewed by each append.
  mbytes:<tag>   string  sum of n over the stream (the byte limit without a scan); same TTL
  expired        list    "<sender tag>|<entry id>" per entry dropped unread (capped); TTL
                         twice the mailbox TTL, renewed by each notice
  prekeys:<tag>  string  the seat's signed bundle (JSON); TTL seat TTL + 60 s per publish
  otk:<tag>      list    one-time prekeys (JSON {"id","dh"}), capped; same TTL
  otkgive:<asker tag>:<owner tag>  string  the one-time key last handed to that asker; TTL
                         the fetch window (it gets the same one again meanwhile)
and one global set `parley:{g}:mailboxes` ("<room>|<tag>" of every mailbox) that the janitor
walks to expire old entries; each member is removed once its stream is gone. Stored bytes
and prekeys also count against the relay-wide budget (budget.py: `parley:{g}:stored:<bucket>`,
`parley:{g}:prekeyed`, `parley:{g}:prekey_bytes`).

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

from . import mailbox_lua as lua
from .budget import RedisBudget
from .core import _JSON
from .mailbox import EXPIRED_NOTICES_MAX, Entry, Full, Limits, Prekeys, Stored, seat_tag
from .redis_store import global_key, room_key
from .store import Conn

INDEX_KEY = global_key("mailboxes")
MARGIN_MS = 60_000
JANITOR_BATCH = 200  # mailboxes expired per janitor round and replica


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
        self.budget = RedisBudget(self.client, self.limits.total_bytes, self.limits.ttl_ms)
        register = self.client.register_script
        self._store, self._deliver = register(lua.STORE), register(lua.DELIVER)
        self._expire, self._ack = register(lua.EXPIRE), register(lua.ACK)
        self._take, self._drop = register(lua.TAKE_EXPIRED), register(lua.DROP)
        self._put, self._fetch = register(lua.PUT_PREKEYS), register(lua.FETCH_PREKEYS)

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

    def _append_args(self, payload: object, size: int, bucket: int | None) -> list:
        lim = self.limits
        text = _JSON.encode(payload)
        limits = [lim.max_messages, lim.max_bytes, lim.ttl_ms, EXPIRED_NOTICES_MAX]
        return [text, size, *limits, "" if bucket is None else bucket]

    def store(self, room: str, sender_hash: str, payload: object, size: int) -> Stored:
        bucket = self.budget.reserve(size)  # None: no room, the script refuses to append

        def run(tag: str):
            args = [sender_hash, tag, *self._append_args(payload, size, bucket)]
            return self._store(keys=self._keys(room, tag), args=args)

        try:
            out, tag = self._optimistic(room, sender_hash, run)
        except Exception:
            self._unreserve(bucket, size)
            raise
        return self._appended(room, tag, out, bucket, size)

    def _unreserve(self, bucket: int | None, size: int) -> None:
        if bucket is not None:
            self.budget.release({bucket: size})

    def _appended(self, room: str, tag: str, out: dict, bucket: int | None, size: int) -> Stored:
        """The answer of an append script: budget settled, index updated."""
        freed = dict(out.get("f") or {})
        if out["s"] != "stored" and bucket is not None:  # the reservation was not used
            freed[str(bucket)] = freed.get(str(bucket), 0) + size
        self.budget.release(freed)
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

    def deliver(self, room: str, owner_hash: str, payload: object, size: int) -> Stored:
        bucket = self.budget.reserve(size)
        tag = seat_tag(owner_hash)
        args = [owner_hash, *self._append_args(payload, size, bucket)]
        try:
            out = json.loads(self._deliver(keys=self._keys(room, tag), args=args))
        except Exception:
            self._unreserve(bucket, size)
            raise
        return self._appended(room, tag, out, bucket, size)

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
        out = json.loads(self._ack(keys=keys, args=ids))
        self.budget.release(out["f"] or {})
        return int(out["n"])

    def _expire_one(self, room: str, tag: str) -> dict:
        args = [self.limits.ttl_ms, EXPIRED_NOTICES_MAX]
        out = json.loads(self._expire(keys=self._keys(room, tag), args=args))
        self.budget.release(out["f"] or {})
        return out

    def expire(self, room: str, owner_hash: str) -> list[Conn]:
        out = self._expire_one(room, seat_tag(owner_hash))
        return [Conn(r, c) for r, c in out["p"] or ()]

    def take_expired(self, room: str, sender_hash: str) -> list[str]:
        return list(self._take(keys=[room_key(room, "expired")], args=[seat_tag(sender_hash)]))

    def expire_all(self) -> list[tuple[str, Conn]]:
        """One janitor round over (part of) the index; a stream gone leaves the index."""
        self.cursor, members = self.client.sscan(INDEX_KEY, self.cursor, count=JANITOR_BATCH)
        told = []
        for member in members:
            room, _, tag = member.rpartition("|")
            out = self._expire_one(room, tag)
            told += [(room, Conn(r, c)) for r, c in out["p"] or ()]
            if not out["x"]:
                # Racing an append is harmless: re-add when the stream came back meanwhile.
                self.client.srem(INDEX_KEY, member)
                if self.client.exists(room_key(room, f"mbox:{tag}")):
                    self.client.sadd(INDEX_KEY, member)
        self.budget.prekey_round(self._prekeys_gone, JANITOR_BATCH)
        return told

    def _prekeys_gone(self, member: str) -> bool:
        """Both prekey keys of "<room>|<tag>" expired (TTL: the seat was away too long)."""
        room, _, tag = member.rpartition("|")
        keys = (room_key(room, f"prekeys:{tag}"), room_key(room, f"otk:{tag}"))
        return not any(self.client.exists(k) for k in keys)

    def put_prekeys(self, room: str, owner_hash: str, bundle, one_time: list) -> int:
        tag = seat_tag(owner_hash)
        text = _JSON.encode(bundle) if bundle is not None else ""
        args = [text, self.limits.prekeys_max, self.seat_ttl_ms]
        for key in one_time:
            args += [key["id"], _JSON.encode(key)]
        size = len(text) + sum(len(a) for a in args[4::2])
        if size and not self.budget.fits(size):
            raise Full
        keys = [room_key(room, f"prekeys:{tag}"), room_key(room, f"otk:{tag}")]
        left, total = self._put(keys=keys, args=args)
        self.budget.set_prekeys(f"{room}|{tag}", int(total))
        return int(left)

    def fetch_prekeys(self, room: str, asker_hash: str) -> Prekeys | None:
        def run(tag: str):
            keys = [
                self.seats.seats_key(room),
                room_key(room, f"prekeys:{tag}"),
                room_key(room, f"otk:{tag}"),
                room_key(room, f"otkgive:{seat_tag(asker_hash)}:{tag}"),
            ]
            return self._fetch(keys=keys, args=[asker_hash, tag, self.limits.fetch_window_ms])

        out, tag = self._optimistic(room, asker_hash, run)
        if out["s"] != "ok":
            return None
        if out["t"] >= 0:  # popped one: the owner's prekeys take fewer bytes now
            self.budget.set_prekeys(f"{room}|{tag}", int(out["t"]))
        one_time = out.get("o")
        return Prekeys(json.loads(out["b"]), json.loads(one_time) if one_time else None)

    def drop_seat(self, room: str, owner_hash: str) -> None:
        tag = seat_tag(owner_hash)
        parts = ("mbox", "mbytes", "prekeys", "otk")
        out = json.loads(self._drop(keys=[room_key(room, f"{p}:{tag}") for p in parts]))
        self.budget.release(out["f"] or {})
        self.budget.set_prekeys(f"{room}|{tag}", 0)

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
