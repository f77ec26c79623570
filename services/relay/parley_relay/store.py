"""Seats: who owns which place in a room, and which connection currently sits in it.

A room has `capacity` seats. A seat belongs either to a resume secret (its SHA-256 is stored,
never the secret) or, for the original design's client that sends none, to one connection.
The display name never decides anything. The rules, shared by both stores (this in-memory
one and `redis_store.RedisStore`, one contract test suite runs against both):

* same secret, same instance, or the seat's connection is gone -> resume: the new
  connection takes the seat, the old one (if any) is returned as `replaced` to be dropped;
* same secret, another instance, old connection live -> `already_connected`;
* no matching seat: a free seat -> a new seat; else `room_full`;
* a secret seat whose connection goes stays reserved for `seat_ttl` seconds; `release`
  (the `leave` event) frees it at once; a seat without secret is freed on disconnect;
* after the backing store lost its data, only `restore` (a replica re-registering a
  connection it holds) may create seats until the resync window ends (`recovering`); seats
  a new replica granted before any older replica noticed the loss are provisional, and a
  restore in their room evicts them (`evicted`).
"""

from __future__ import annotations

import hmac
import itertools
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from typing import Protocol

ROOM_CAPACITY = 2
DEFAULT_SEAT_TTL = 7 * 24 * 3600.0  # as long as a mailbox keeps messages (offline delivery)


@dataclass(frozen=True)
class Conn:
    """Where one live connection is: the replica holding the socket and its Socket.IO sid."""

    replica: str
    sid: str


@dataclass(frozen=True)
class JoinRequest:
    """One connection asking for a seat. `secret_hash` is "" for the original client."""

    sid: str
    replica: str
    name: str
    secret_hash: str = ""
    instance: str = ""


@dataclass(frozen=True)
class JoinResult:
    """`status` is "joined", "room_full", "already_connected" or "recovering".

    When joined: `peers` are the other seats' live connections, `replaced` the connection
    this join took the seat from (to be dropped), `evicted` the connections of provisional
    seats a restore removed (to be dropped; see redis_lua.HEARTBEAT). `holder` names the
    seat's member for `already_connected`.
    """

    status: str
    peers: tuple[Conn, ...] = ()
    replaced: Conn | None = None
    holder: str = ""
    version: int = 0  # orders seat changes (see Connection.version in core.py)
    evicted: tuple[Conn, ...] = ()

    @property
    def joined(self) -> bool:
        return self.status == "joined"


@dataclass(frozen=True)
class LeaveResult:
    """`removed` True when `sid` held a seat (so `peer_left` is sent exactly once)."""

    removed: bool
    name: str = ""
    peers: tuple[Conn, ...] = ()
    version: int = 0


@dataclass(frozen=True)
class Pruned:
    """A connection of a dead replica taken out of its seat, with whom to tell."""

    room: str
    name: str
    peers: tuple[Conn, ...]
    version: int = 0


@dataclass(frozen=True)
class Held:
    """A seat whose connection is on this replica, as the store sees it (for reconciliation)."""

    room: str
    sid: str
    peers: tuple[Conn, ...]
    version: int = 0


class DataSetChanged(RuntimeError):
    """The store lost its data (Redis restarted empty) while `held` read it: the answer mixes
    two data sets, so nothing may be decided from it; the next lease renewal asks for a
    resync."""


class SeatStore(Protocol):
    """What the relay needs from a seat store (MemoryStore, RedisStore)."""

    replica: str

    def join(self, room: str, req: JoinRequest, restore: bool = False) -> JoinResult:
        """Atomically seat `req` per the module rules; `restore` is a resync after data loss."""

    def leave(self, room: str, sid: str, release: bool = False) -> LeaveResult:
        """Take `sid` (of this replica) out of its seat; `release` frees a secret seat too."""

    def held(self, skip: Container[str] = frozenset()) -> list[Held]:
        """Every seat whose connection is on this replica (and refresh those rooms' TTLs);
        `skip`: sids still joining, whose registration must not be dropped as stale.
        Raises DataSetChanged when the store lost its data since the last heartbeat."""

    def heartbeat(self) -> str:
        """Renew this replica's lease: "ok", "resync" (store lost its data: restore your
        connections) or "expired" (we were presumed dead: fence)."""

    def prune_dead(self) -> list[Pruned]:
        """Vacate the seats of replicas whose lease expired; return who to tell."""

    def ping(self) -> bool:
        """True if the backing store answers."""

    def close(self) -> None:
        """Deregister this replica (graceful shutdown, after its clients left)."""


def same_secret(stored: str, given: str) -> bool:
    """Constant-time comparison of two secret hashes; "" (no secret) never matches."""
    return bool(stored) and bool(given) and hmac.compare_digest(stored, given)


@dataclass
class Seat:
    """A seat in the in-memory store. `sid` "" means reserved until `expires`."""

    secret_hash: str
    name: str
    instance: str
    replica: str
    sid: str
    expires: float = 0.0


@dataclass
class MemoryStore:
    """In-process seats for a single relay without Redis.

    Under gevent nothing here yields, so each method is atomic without a lock.
    """

    replica: str = "local"
    seat_ttl: float = DEFAULT_SEAT_TTL
    capacity: int = ROOM_CAPACITY
    clock: Callable[[], float] = time.monotonic
    rooms: dict[str, dict[str, Seat]] = field(default_factory=dict)
    versions: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _seats(self, room: str) -> dict[str, Seat]:
        seats = self.rooms.get(room, {})
        now = self.clock()
        for key in [k for k, s in seats.items() if not s.sid and s.expires <= now]:
            del seats[key]
        return seats

    def join(self, room: str, req: JoinRequest, restore: bool = False) -> JoinResult:
        seats = self._seats(room)
        given = req.secret_hash
        mine = next((s for s in seats.values() if same_secret(s.secret_hash, given)), None)
        replaced = None
        if mine is not None:
            if mine.sid and mine.sid != req.sid and (restore or mine.instance != req.instance):
                if restore:
                    return JoinResult("room_full")
                return JoinResult("already_connected", holder=mine.name)
            if mine.sid and mine.sid != req.sid:
                replaced = Conn(mine.replica, mine.sid)
            mine.sid, mine.replica, mine.instance = req.sid, req.replica, req.instance
            mine.name, mine.expires = req.name, 0.0
        elif not any(s.sid == req.sid for s in seats.values()):
            if len(seats) >= self.capacity:
                return JoinResult("room_full")
            seats[req.sid] = Seat(req.secret_hash, req.name, req.instance, req.replica, req.sid)
            self.rooms[room] = seats
        peers = self._peers(seats, req.sid)
        return JoinResult("joined", peers, replaced, version=next(self.versions))

    @staticmethod
    def _peers(seats: dict[str, Seat], sid: str) -> tuple[Conn, ...]:
        return tuple(Conn(s.replica, s.sid) for s in seats.values() if s.sid and s.sid != sid)

    def leave(self, room: str, sid: str, release: bool = False) -> LeaveResult:
        seats = self._seats(room)
        mine = [k for k, s in seats.items() if s.sid == sid and s.replica == self.replica]
        key = mine[0] if mine else None
        if key is None:
            return LeaveResult(False)
        seat = seats[key]
        if release or not seat.secret_hash:
            del seats[key]
        else:
            seats[key] = replace(seat, sid="", expires=self.clock() + self.seat_ttl)
        if not seats:
            self.rooms.pop(room, None)
        return LeaveResult(True, seat.name, self._peers(seats, sid), next(self.versions))

    def held(self, skip: Container[str] = frozenset()) -> list[Held]:
        out = []
        for room in list(self.rooms):
            seats = self._seats(room)
            for s in seats.values():
                if s.sid and s.replica == self.replica:
                    peers = self._peers(seats, s.sid)
                    out.append(Held(room, s.sid, peers, next(self.versions)))
        return out

    def heartbeat(self) -> str:
        return "ok"

    def prune_dead(self) -> list[Pruned]:
        return []

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self.rooms.clear()

    def seats(self, room: str) -> list[dict]:
        """The room's seats as plain dicts (tests and diagnostics)."""
        return [
            {"secret_hash": s.secret_hash, "name": s.name, "sid": s.sid, "replica": s.replica}
            for s in self._seats(room).values()
        ]
