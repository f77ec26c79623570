"""Offline delivery for a single relay without Redis (the contract is in `mailbox.py`).

Seats come from the process's `MemoryStore`. Under gevent nothing here yields, so every
method is atomic, as the Redis store's Lua scripts are. Entry ids are made like Redis Stream
ids ("<ms>-<seq>", never decreasing) so clients see one format.

Everything kept here counts against `Limits.total_bytes` (`used`, exact: one process): stored
payloads, bundles and one-time keys. Prekeys not published again for the seat TTL expire
with the janitor's round, as they do by key TTL in Redis.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .core import _JSON
from .mailbox import EXPIRED_NOTICES_MAX, Entry, Full, Limits, Prekeys, Stored, seat_tag
from .store import Conn, MemoryStore, Seat, same_secret


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Box:
    entries: OrderedDict = field(default_factory=OrderedDict)  # id -> (at, sender, size, payload)
    size: int = 0


@dataclass
class MemoryMailbox:
    """Mailboxes, notices and prekeys of one process, keyed by (room, seat tag)."""

    seats: MemoryStore
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], int] = _wall_ms  # ms since the epoch: the entries' `at`
    boxes: dict = field(default_factory=dict)
    notices: dict = field(default_factory=dict)  # room -> [(sender tag, id)]
    bundles: dict = field(default_factory=dict)  # key -> (bundle, its bytes)
    one_time: dict = field(default_factory=dict)  # key -> [one-time key]
    published: dict = field(default_factory=dict)  # key -> ms of the last `prekeys`
    given: dict = field(default_factory=dict)  # (room, asker, owner) -> (key, until ms)
    used: int = 0  # bytes of everything above, against limits.total_bytes
    last: tuple = (0, -1)

    def _pair(self, room: str, me_hash: str) -> tuple[Seat | None, Seat | None]:
        """(my seat, the room's other seat) for a secret hash (None where there is none)."""
        mine, other = None, None
        for seat in self.seats._seats(room).values():
            if same_secret(seat.secret_hash, me_hash):
                mine = seat
            else:
                other = seat
        return mine, other

    def _next_id(self) -> str:
        now = self.clock()
        ms, seq = self.last
        self.last = (now, 0) if now > ms else (ms, seq + 1)
        return f"{self.last[0]}-{self.last[1]}"

    def store(self, room: str, sender_hash: str, payload: object, size: int) -> Stored:
        mine, peer = self._pair(room, sender_hash)
        if mine is None or not mine.sid or peer is None:
            return Stored("none")
        if peer.sid:
            return Stored("live", peer=Conn(peer.replica, peer.sid))
        if not peer.secret_hash:
            return Stored("none")
        return self._append(room, seat_tag(peer.secret_hash), seat_tag(sender_hash), payload, size)

    def deliver(self, room: str, owner_hash: str, payload: object, size: int) -> Stored:
        mine, other = self._pair(room, owner_hash)
        if mine is None or not owner_hash:
            return Stored("none")
        if mine.sid:
            return Stored("live", peer=Conn(mine.replica, mine.sid))
        sender = seat_tag(other.secret_hash) if other and other.secret_hash else ""
        return self._append(room, seat_tag(owner_hash), sender, payload, size)

    def _append(self, room: str, owner: str, sender: str, payload: object, size: int) -> Stored:
        key = (room, owner)
        expired = len(self._expire(room, key))
        box = self.boxes.setdefault(key, _Box())
        if (
            len(box.entries) + 1 > self.limits.max_messages
            or box.size + size > self.limits.max_bytes
            or self.used + size > self.limits.total_bytes
        ):
            if not box.entries:
                self.boxes.pop(key, None)
            return Stored("full", expired=expired)
        entry_id = self._next_id()
        box.entries[entry_id] = (self.last[0], sender, size, payload)
        box.size += size
        self.used += size
        return Stored("stored", id=entry_id, expired=expired)

    def _expire(self, room: str, key: tuple) -> set[str]:
        """Drop entries older than the TTL; notices for their senders; their tags."""
        box = self.boxes.get(key)
        if box is None:
            return set()
        cut = self.clock() - self.limits.ttl_ms
        senders = set()
        notes = self.notices.setdefault(room, [])
        for entry_id, (at, sender, size, _) in list(box.entries.items()):
            if at > cut:
                break
            del box.entries[entry_id]
            box.size -= size
            self.used -= size
            notes.append((sender, entry_id))
            senders.add(sender)
        del notes[:-EXPIRED_NOTICES_MAX]
        if not notes:
            self.notices.pop(room, None)
        if not box.entries:
            self.boxes.pop(key, None)
        return senders

    def backlog(self, room: str, owner_hash: str, after: str = "", count: int = 100) -> list:
        box = self.boxes.get((room, seat_tag(owner_hash)))
        if box is None:
            return []
        cut = self.clock() - self.limits.ttl_ms
        out = []
        for entry_id, (at, _, _, payload) in box.entries.items():
            if after and _id_key(entry_id) <= _id_key(after):
                continue
            if at > cut:
                out.append(Entry(entry_id, at, payload))
            if len(out) >= count:
                break
        return out

    def ack(self, room: str, owner_hash: str, ids: list[str]) -> int:
        key = (room, seat_tag(owner_hash))
        box = self.boxes.get(key)
        if box is None:
            return 0
        removed = 0
        for entry_id in ids:
            entry = box.entries.pop(entry_id, None)
            if entry is not None:
                box.size -= entry[2]
                self.used -= entry[2]
                removed += 1
        if not box.entries:
            self.boxes.pop(key, None)
        return removed

    def _live(self, room: str, tags: set[str]) -> list[Conn]:
        return [
            Conn(s.replica, s.sid)
            for s in self.seats._seats(room).values()
            if s.sid and s.secret_hash and seat_tag(s.secret_hash) in tags
        ]

    def expire(self, room: str, owner_hash: str) -> list[Conn]:
        return self._live(room, self._expire(room, (room, seat_tag(owner_hash))))

    def take_expired(self, room: str, sender_hash: str) -> list[str]:
        tag = seat_tag(sender_hash)
        notes = self.notices.get(room, [])
        mine = [i for t, i in notes if t == tag]
        rest = [(t, i) for t, i in notes if t != tag]
        if rest:
            self.notices[room] = rest
        else:
            self.notices.pop(room, None)
        return mine

    def expire_all(self) -> list[tuple[str, Conn]]:
        out = []
        for room, tag in list(self.boxes):
            out += [(room, c) for c in self._live(room, self._expire(room, (room, tag)))]
        now = self.clock()
        cut = now - int(self.seats.seat_ttl * 1000)
        for key in [k for k, at in self.published.items() if at <= cut]:
            self._drop_prekeys(key)
        for key in [k for k, (_, until) in self.given.items() if until <= now]:
            del self.given[key]
        return out

    def put_prekeys(self, room: str, owner_hash: str, bundle, one_time: list) -> int:
        key = (room, seat_tag(owner_hash))
        keys = self.one_time.setdefault(key, [])
        known = {k["id"] for k in keys}
        new = [k for k in dict((k["id"], k) for k in one_time).values() if k["id"] not in known]
        new = new[: max(0, self.limits.prekeys_max - len(keys))]
        added = sum(_size(k) for k in new)
        old = self.bundles.get(key, (None, 0))[1]
        text = _size(bundle) if bundle is not None else old
        if self.used + added + text - old > self.limits.total_bytes:
            if not keys:
                self.one_time.pop(key, None)
            raise Full
        if bundle is not None:
            self.bundles[key] = (bundle, text)
        keys += new
        self.used += added + text - old
        self.published[key] = self.clock()
        return len(keys)

    def _drop_prekeys(self, key: tuple) -> None:
        self.used -= self.bundles.pop(key, (None, 0))[1]
        self.used -= sum(_size(k) for k in self.one_time.pop(key, []))
        self.published.pop(key, None)

    def fetch_prekeys(self, room: str, asker_hash: str) -> Prekeys | None:
        mine, peer = self._pair(room, asker_hash)
        if mine is None or peer is None or not peer.secret_hash:
            return None
        key = (room, seat_tag(peer.secret_hash))
        bundle = self.bundles.get(key)
        if bundle is None:
            return None
        now = self.clock()
        gift = (room, seat_tag(asker_hash), key[1])
        if gift in self.given and self.given[gift][1] > now:
            return Prekeys(bundle[0], self.given[gift][0])
        keys = self.one_time.get(key) or []
        one = keys.pop(0) if keys else None
        if one is not None:
            self.used -= _size(one)
            if self.limits.fetch_window_ms > 0:
                self.given[gift] = (one, now + self.limits.fetch_window_ms)
        return Prekeys(bundle[0], one)

    def drop_seat(self, room: str, owner_hash: str) -> None:
        key = (room, seat_tag(owner_hash))
        box = self.boxes.pop(key, None)
        if box is not None:
            self.used -= box.size
        self._drop_prekeys(key)

    def counts(self, room: str, owner_hash: str) -> tuple[int, int, int]:
        key = (room, seat_tag(owner_hash))
        box = self.boxes.get(key, _Box())
        return len(box.entries), box.size, len(self.one_time.get(key, []))


def _size(value: object) -> int:
    """Bytes a kept value counts against the budget (its JSON, as Redis keeps it)."""
    return len(_JSON.encode(value).encode())


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)
