"""Room membership: who is in which room, on which replica.

Two implementations share one interface: `MemoryStore` (single process, the no-Redis default)
and `RedisStore` (in `redis_store.py`, shared by every replica). Both apply the same rules:
a room holds `capacity` members; a join into a full room is refused, except that a member who
rejoins under the same non-default name replaces its own stale session (a client that lost
its connection can come back before the relay notices the old socket is dead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .core import DEFAULT_NAME, ROOM_CAPACITY


@dataclass(frozen=True)
class Member:
    """One room member: its Socket.IO sid, display name and the replica holding its socket."""

    sid: str
    name: str
    replica: str


@dataclass(frozen=True)
class JoinResult:
    """Outcome of a join: `joined` False means the room was full.

    `members` lists everyone in the room afterwards (the joiner included) when joined, or the
    current members when refused; `replaced` is the stale session this join took over.
    """

    joined: bool
    members: tuple[Member, ...] = ()
    replaced: Member | None = None


@dataclass(frozen=True)
class Pruned:
    """A member removed because its replica stopped heartbeating."""

    room: str
    member: Member


class MembershipStore(Protocol):
    """What the relay needs from a membership store."""

    def join(self, room: str, member: Member, capacity: int = ROOM_CAPACITY) -> JoinResult:
        """Atomically add `member` to `room` unless the room is full."""

    def leave(self, room: str, sid: str) -> bool:
        """Remove a member; True if it was there (so `peer_left` is sent exactly once)."""

    def heartbeat(self) -> bool:
        """Mark this replica alive; True if the store lost our state and needs a resync."""

    def prune_dead(self) -> list[Pruned]:
        """Remove members of replicas whose heartbeat expired; return what was removed."""

    def ping(self) -> bool:
        """True if the backing store answers."""

    def close(self) -> None:
        """Deregister this replica (on graceful shutdown)."""


def decide_join(current: list[Member], member: Member, capacity: int) -> tuple[bool, Member | None]:
    """The join rule shared by both stores: (accepted, member to replace or None)."""
    if any(m.sid == member.sid for m in current):
        return True, None
    if len(current) < capacity:
        return True, None
    if member.name != DEFAULT_NAME:
        same = [m for m in current if m.name == member.name]
        if len(same) == 1:
            return True, same[0]
    return False, None


@dataclass
class MemoryStore:
    """In-process membership for a single relay without Redis.

    Under gevent nothing here yields, so each method is atomic without a lock.
    """

    replica: str = "local"
    rooms: dict[str, dict[str, Member]] = field(default_factory=dict)

    def join(self, room: str, member: Member, capacity: int = ROOM_CAPACITY) -> JoinResult:
        members = self.rooms.get(room, {})
        accepted, replaced = decide_join(list(members.values()), member, capacity)
        if not accepted:
            return JoinResult(joined=False, members=tuple(members.values()))
        members = self.rooms.setdefault(room, {})
        if replaced is not None:
            del members[replaced.sid]
        members[member.sid] = member
        return JoinResult(joined=True, members=tuple(members.values()), replaced=replaced)

    def leave(self, room: str, sid: str) -> bool:
        members = self.rooms.get(room)
        if not members or sid not in members:
            return False
        del members[sid]
        if not members:
            del self.rooms[room]
        return True

    def heartbeat(self) -> bool:
        return False

    def prune_dead(self) -> list[Pruned]:
        return []

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self.rooms.clear()

    def members(self, room: str) -> list[Member]:
        """Current members of a room (for tests and metrics)."""
        return list(self.rooms.get(room, {}).values())
