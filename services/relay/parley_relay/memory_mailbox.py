"""Offline delivery for a single relay without Redis (the contract is in `mailbox.py`).

Seats come from the process's `MemoryStore`. Under gevent nothing here yields, so every
method is atomic, as the Redis store's Lua scripts are. Entry ids are made like Redis Stream
ids ("<ms>-<seq>", never decreasing) so clients see one format.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .mailbox import EXPIRED_NOTICES_MAX, Entry, Limits, Prekeys, Stored, seat_tag
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
    bundles: dict = field(default_factory=dict)
    one_time: dict = field(default_factory=dict)
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
        key = (room, seat_tag(peer.secret_hash))
        expired = len(self._expire(room, key))
        box = self.boxes.setdefault(key, _Box())
        if (
            len(box.entries) + 1 > self.limits.max_messages
            or box.size + size > self.limits.max_bytes
        ):
            return Stored("full", expired=expired)
        entry_id = self._next_id()
        box.entries[entry_id] = (self.last[0], seat_tag(sender_hash), size, payload)
        box.size += size
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
        return out

    def put_prekeys(self, room: str, owner_hash: str, bundle, one_time: list) -> int:
        key = (room, seat_tag(owner_hash))
        if bundle is not None:
            self.bundles[key] = bundle
        keys = self.one_time.setdefault(key, [])
        known = {k["id"] for k in keys}
        for k in one_time:
            if len(keys) >= self.limits.prekeys_max:
                break
            if k["id"] not in known:
                keys.append(k)
                known.add(k["id"])
        return len(keys)

    def fetch_prekeys(self, room: str, asker_hash: str) -> Prekeys | None:
        mine, peer = self._pair(room, asker_hash)
        if mine is None or peer is None or not peer.secret_hash:
            return None
        key = (room, seat_tag(peer.secret_hash))
        bundle = self.bundles.get(key)
        if bundle is None:
            return None
        keys = self.one_time.get(key) or []
        return Prekeys(bundle, keys.pop(0) if keys else None)

    def drop_seat(self, room: str, owner_hash: str) -> None:
        key = (room, seat_tag(owner_hash))
        for table in (self.boxes, self.bundles, self.one_time):
            table.pop(key, None)

    def counts(self, room: str, owner_hash: str) -> tuple[int, int, int]:
        key = (room, seat_tag(owner_hash))
        box = self.boxes.get(key, _Box())
        return len(box.entries), box.size, len(self.one_time.get(key, []))


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)
