"""In-memory harness for client-core unit tests: two ChatCores and a scriptable fake relay."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest

from parley_client.contacts import MemoryContacts
from parley_client.core import ChatCore, Event
from parley_client.roomstate import MemoryRoomState
from parley_crypto import identity

FORWARD = {
    "ELGAMAL_PK": "ELGAMAL_PK_BC",
    "DEFF_HELLMAN_PK": "DEFF_HELLMAN_PK_BC",
    "DIFF_HELLMAN_PK": "DIFF_HELLMAN_PK_BC",
    "KEY_CONFIRM": "KEY_CONFIRM_BC",
    "message": "received_message",
}

_IDENTITIES: dict[str, identity.Identity] = {}


def cached_identity(name: str) -> identity.Identity:
    """Key generation is the slow part; share one identity per name across tests."""
    if name not in _IDENTITIES:
        _IDENTITIES[name] = identity.Identity.generate(name)
    return _IDENTITIES[name]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Side:
    name: str
    core: ChatCore
    contacts: MemoryContacts
    events: list[Event] = field(default_factory=list)
    online: bool = True

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def texts(self) -> list[str]:
        return [e.text for e in self.kinds("message")]


class Pair:
    """Two cores joined by a relay that forwards in order; tests can hold, drop or tamper."""

    def __init__(self, tmp_path, clock: FakeClock, room: str = "demo", **core_options):
        self.clock = clock
        self.room = room
        self.queue: deque[tuple[str, str, object]] = deque()  # (to, event, payload)
        self.wire_log: list[tuple[str, str, object]] = []
        self.tamper = None  # optional callable(to, event, payload) -> list of payloads
        self.sides = {
            name: self._side(tmp_path, name, peer, core_options)
            for name, peer in (("alice", "bob"), ("bob", "alice"))
        }

    def _side(self, tmp_path, name, peer, options) -> Side:
        contacts = MemoryContacts()
        ident = cached_identity(name)
        side = Side(name, None, contacts)  # type: ignore[arg-type]

        def send(event, payload, _peer=peer):
            self.wire_log.append((name, event, payload))
            if side.online and event in FORWARD:
                self.queue.append((_peer, FORWARD[event], payload))

        options = {"state": MemoryRoomState(), **options}
        side.core = ChatCore(
            ident, contacts, self.room, send, side.events.append, clock=self.clock, **options
        )
        return side

    @property
    def a(self) -> Side:
        return self.sides["alice"]

    @property
    def b(self) -> Side:
        return self.sides["bob"]

    def connect(self) -> None:
        """Both connected and the room full: the relay sends KEY_EXCHANGE to both."""
        for side in self.sides.values():
            side.online = True
            side.core.connected()
        for side in self.sides.values():
            side.core.handle("KEY_EXCHANGE", 1)
        self.pump()

    def pump_random(self, rng, steps: int | None = None, limit: int = 2_000) -> None:
        """Deliver in a random interleaving of the two directions (each stays in order),
        ``steps`` events or until quiet."""
        done = 0
        while self.queue and (steps is None or done < steps):
            if done >= limit:
                raise AssertionError("the two cores never went quiet (handshake loop?)")
            to = rng.choice(sorted({q[0] for q in self.queue}))
            index = next(i for i, q in enumerate(self.queue) if q[0] == to)
            _, event, payload = self.queue[index]
            del self.queue[index]
            if self.sides[to].online:
                self.sides[to].core.handle(event, payload)
            done += 1

    def pump(self, limit: int = 10_000) -> None:
        """Deliver queued events in order until the wire is quiet."""
        for _ in range(limit):
            if not self.queue:
                return
            to, event, payload = self.queue.popleft()
            side = self.sides[to]
            if not side.online:
                continue
            payloads = [payload] if self.tamper is None else self.tamper(to, event, payload)
            for p in payloads:
                side.core.handle(event, p)
        raise AssertionError("the two cores never went quiet (handshake loop?)")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pair(tmp_path, clock) -> Pair:
    return Pair(tmp_path, clock)


@pytest.fixture
def make_pair(tmp_path, clock):
    """Build a Pair with custom core options (e.g. deniable=True)."""
    return lambda **options: Pair(tmp_path, clock, **options)


@pytest.fixture
def known():
    """``known(name)``: a cached identity (the same key for the same name in every test)."""
    return cached_identity


@pytest.fixture
def pair_in(tmp_path, clock):
    """``pair_in(room)``: a Pair in another room."""
    return lambda room: Pair(tmp_path, clock, room=room)
