"""The test side of scripts/relay_tap.py: a fault-injecting tap on a REAL relay's emits.

The relay process is the real `parley-relay` (optionally with Redis); the tap wraps its
Socket.IO `emit`, so every event it would deliver to a client is first shown to a `Tap` in
the test process, whose policy answers what to deliver instead: the original (`e.passed()`),
nothing (`[]`), the same event twice (replay), a held-back one later (`tap.inject`), a
different payload, or the payload routed to another client (`to(sid, ...)`). Events are
handled generically by name, so protocol changes (KEY_CONFIRM, ...) need no tap change.

    relay = tapped_relay()                 # fixture: a real relay + an attached Tap
    relay.tap.policy = lambda e: [e.passed(), e.passed()] if e.event == "received_message" else None
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.servers import RelayProcess, free_port


@dataclass
class Emit:
    """One event the relay was about to deliver, with who sent it and who would get it."""

    id: int
    event: str
    data: Any
    route: dict
    sender: dict | None = None  # {"sid", "name", "room"} of the member it came from
    recipients: list[dict] = field(default_factory=list)  # members it would reach
    # When the tap read it and when its policy had decided (time.monotonic(), for a test's
    # record of a failure: a late decision is one the relay may have given up on).
    read_at: float = 0.0
    decided_at: float = 0.0

    @property
    def sender_name(self) -> str | None:
        return self.sender["name"] if self.sender else None

    def passed(self) -> dict:
        """Deliver the original event unchanged."""
        return {"pass": True}

    def replaced(self, data: Any, event: str | None = None) -> dict:
        """Deliver this event's route with other data (or under another event name)."""
        return {"event": event or self.event, "data": data, "route": self.route}


def to(sid: str, event: str, data: Any) -> dict:
    """An action (or an inject) delivering `event` with `data` to one connection."""
    return {"event": event, "data": data, "route": {"to": sid}}


Policy = Callable[[Emit], "list[dict] | None"]


class Tap:
    """Controller attached to one tapped relay; `policy` decides every emit (None = pass)."""

    def __init__(self, port: int, policy: Policy | None = None, timeout: float = 15.0):
        self.policy = policy
        self.emits: list[Emit] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._inspected: dict[int, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(None)
        self._lines = self.sock.makefile("rb")
        hello = json.loads(self._lines.readline() or b"{}")
        if hello.get("op") != "hello":
            raise RuntimeError(f"relay tap did not greet: {hello!r}")
        self._reader = threading.Thread(target=self._read, daemon=True, name="tap")
        self._reader.start()

    def _send(self, message: dict) -> None:
        with self._lock:
            self.sock.sendall((json.dumps(message) + "\n").encode())

    def _read(self) -> None:
        # The relay closing the tap (it exited, or dropped the tap) ends the reader, quietly:
        # whatever the test then waits for fails it, with its own message.
        with contextlib.suppress(OSError, ValueError):  # ValueError: read of a closed file
            self._read_until_closed()

    def _read_until_closed(self) -> None:
        for raw in self._lines:
            msg = json.loads(raw)
            if msg["op"] == "emit":
                self._decide(msg)
            elif msg["op"] == "gave_up":  # the relay passed it unchanged: not the policy's scene
                self.errors.append(
                    f"the relay gave up waiting for the decision on emit {msg['id']} "
                    f"({msg.get('event')}, {msg.get('why')}) and delivered it unchanged"
                )
            elif msg["op"] == "inspected":
                with self._cond:
                    self._inspected[msg["id"]] = msg["state"]
                    self._cond.notify_all()

    def _decide(self, msg: dict) -> None:
        emit = Emit(
            msg["id"],
            msg["event"],
            msg["data"],
            msg["route"],
            msg.get("sender"),
            msg.get("recipients") or [],
            read_at=time.monotonic(),
        )
        try:
            actions = self.policy(emit) if self.policy else None
        except Exception as exc:  # noqa: BLE001 - a broken policy fails the test, not the relay
            self.errors.append(f"{emit.event}: {type(exc).__name__}: {exc}")
            actions = None
        emit.decided_at = time.monotonic()
        with self._cond:
            self.emits.append(emit)
            self._cond.notify_all()
        self._send({"op": "reply", "id": emit.id, "actions": [emit.passed()] if actions is None
                    else actions})  # fmt: skip

    def inject(self, action: dict) -> None:
        """Deliver an event now, outside any emit (e.g. a held-back envelope)."""
        self._send({"op": "inject", **action})

    def inspect(self, timeout: float = 10.0, types: bool = False) -> dict:
        """Counts of the relay's per-connection state (sockets, rooms, conns) and gc objects;
        `types=True` adds {"types": {type name: live count}}."""
        rid = next(self._ids)
        self._send({"op": "inspect", "id": rid, "types": types})
        with self._cond:
            assert self._cond.wait_for(lambda: rid in self._inspected, timeout), "no inspect"
            return self._inspected.pop(rid)

    def seen(self, event: str) -> list[Emit]:
        with self._cond:
            return [e for e in self.emits if e.event == event]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


class TappedRelay(RelayProcess):
    """A real relay process under scripts/relay_tap.py with its `Tap` attached."""

    tap: Tap | None = None

    def start(self, timeout: float = 60.0) -> TappedRelay:
        if self.tap_port is None:
            self.tap_port = free_port()
        super().start(timeout)
        policy = self.tap.policy if self.tap is not None else None
        if self.tap is not None:
            self.tap.close()
        self.tap = Tap(self.tap_port, policy)
        return self

    def cleanup(self) -> None:
        if self.tap is not None:
            self.tap.close()
        super().cleanup()


@pytest.fixture(name="tapped_relay")
def tapped_relay_fixture():
    """Factory: `tapped_relay(redis_url=None, **RelayProcess kwargs)` -> started TappedRelay.

    Test modules import it (`from tests.support.tap import tapped_relay_fixture`)."""
    started: list[TappedRelay] = []

    def start(redis_url: str | None = None, **kwargs) -> TappedRelay:
        relay = TappedRelay(redis_url=redis_url, **kwargs)
        started.append(relay)
        return relay.start()

    try:
        yield start
    finally:
        for relay in started:
            relay.cleanup()
