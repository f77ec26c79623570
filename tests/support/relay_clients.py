"""A recording Socket.IO test client for the relay's integration tests.

Wraps the real sync `socketio.Client` (WebSocket transport via websocket-client) and records
every event it receives, so tests can wait for and assert on exact event sequences.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from typing import Any

import engineio
import pytest
import redis
import socketio

from parley_relay.redis_store import room_key


class _InOrderEngineIO(engineio.Client):
    """python-engineio's threaded client runs every message's handler in a thread of its own,
    so what a test records can differ from the order on the wire (seen: stored entries of a
    drain recorded s72 before s71 at load 4). Here handlers run in the read loop, one after
    the other, as the asyncio client (and so Parley's) does. Handlers must not block.

    Only Socket.IO EVENT packets (type "2", what tests record): the others keep their own
    thread as before (a DISCONNECT or CONNECT_ERROR ends in `eio.disconnect()`, which joins
    the read loop and so must not run in it)."""

    def _trigger_event(self, event, *args, **kwargs):
        if event == "message" and args and str(args[0])[:1] == "2":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    """socketio.Client whose handlers see events in the order they arrived."""

    def _engineio_client_class(self):
        return _InOrderEngineIO


class RelayClient:
    """One real Socket.IO client connected to a relay, recording what it receives (in the
    order it arrived: :class:`InOrderClient`)."""

    def __init__(
        self,
        url: str,
        auth: dict | None = None,
        *,
        transports=("websocket",),
        reconnection: bool = False,
    ):
        self.url = url
        self.auth = auth
        self.events: list[tuple[str, Any]] = []
        self.connect_errors: list[Any] = []
        self.disconnected = threading.Event()
        self._cond = threading.Condition()
        self.sio = InOrderClient(reconnection=reconnection)
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._connect_error)
        self.sio.on("disconnect", self._disconnect)
        self.transports = list(transports)

    # socketio callbacks -------------------------------------------------------------------
    def _record(self, event, *args):
        with self._cond:
            self.events.append((event, args[0] if len(args) == 1 else args))
            self._cond.notify_all()

    def _connect_error(self, data=None):
        with self._cond:
            self.connect_errors.append(data)
            self._cond.notify_all()

    def _disconnect(self, *args):
        self.disconnected.set()

    # API ----------------------------------------------------------------------------------
    def connect(self, timeout: float = 10) -> RelayClient:
        """Connect; raises socketio.exceptions.ConnectionError when refused."""
        kwargs = {"transports": self.transports, "wait_timeout": timeout}
        if self.auth is not None:
            kwargs["auth"] = self.auth
        self.sio.connect(self.url, **kwargs)
        return self

    def try_connect(self, timeout: float = 10) -> Any:
        """Connect expecting a refusal; return the connect_error data."""
        try:
            self.connect(timeout)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError("connection was accepted")
        return self.wait_connect_error()

    def wait_connect_error(self, timeout: float = 5) -> Any:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.connect_errors, timeout)
        assert ok, "no connect_error received"
        return self.connect_errors[0]

    def emit(self, event: str, *args) -> None:
        """Emit with zero, one or several arguments (several go out as a tuple)."""
        if not args:
            self.sio.emit(event)
        else:
            self.sio.emit(event, args[0] if len(args) == 1 else tuple(args))

    # Generous default bounds: a loaded machine (xdist workers, CI) may take seconds to answer;
    # only a hang should fail, and a test waiting for an answer gets it as soon as it comes.
    def call(self, event: str, data: Any, timeout: float = 20) -> Any:
        """Emit with an ack callback and return the ack."""
        return self.sio.call(event, data, timeout=timeout)

    def named(self, event: str) -> list[Any]:
        with self._cond:
            return [data for name, data in self.events if name == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = 20) -> list[Any]:
        """Wait until `count` events named `event` arrived; return their payloads."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [data for name, data in self.events if name == event]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} x {event!r}, got {len(got)}; all events: "
                        f"{[n for n, _ in self.events]}"
                    )
                self._cond.wait(left)

    def wait_for_payload(self, event: str, payload: Any, timeout: float = 20) -> None:
        """Wait until an `event` carrying exactly `payload` arrived."""
        with self._cond:
            ok = self._cond.wait_for(lambda: (event, payload) in self.events, timeout)
        assert ok, f"{event!r} with {payload!r} never arrived; got {self.names()}"

    def names(self) -> list[str]:
        with self._cond:
            return [name for name, _ in self.events]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone is fine at teardown
            self.sio.disconnect()


@pytest.fixture(name="clients")
def clients_fixture():
    """Factory fixture: `clients(url, auth)` makes a RelayClient, closed after the test.

    Test modules import it (`from tests.support.relay_clients import clients_fixture`).
    """
    made: list[RelayClient] = []

    def make(url: str, auth: dict | None = None, **kw) -> RelayClient:
        c = RelayClient(url, auth, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def pair(clients, url_a: str, url_b: str, room: str = "r1") -> tuple[RelayClient, RelayClient]:
    """Connect alice to url_a and bob to url_b in `room`; both must get KEY_EXCHANGE 1."""
    a = clients(url_a, {"room": room, "name": "alice"}).connect()
    b = clients(url_b, {"room": room, "name": "bob"}).connect()
    assert a.wait_for("KEY_EXCHANGE") == [1]
    assert b.wait_for("KEY_EXCHANGE") == [1]
    return a, b


def new_secret() -> str:
    """A resume secret as a Parley client makes one (32 random bytes, hex)."""
    return secrets.token_hex(32)


def new_instance() -> str:
    """A client-process instance id (16 random bytes, hex)."""
    return secrets.token_hex(16)


def seat_auth(room: str, name: str, secret: str, instance: str, **extra) -> dict:
    """Connect auth of a relay-v2 client that owns its seat by `secret`."""
    return {"room": room, "name": name, "secret": secret, "instance": instance, **extra}


def seat_sids(redis_url: str, room: str) -> list[str]:
    """The sids Redis lists as holding a seat of `room` ("" for a reserved seat)."""
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    out = []
    for field, value in raw.hgetall(room_key(room, "seats")).items():
        try:
            out.append(json.loads(value)["c"])
        except ValueError:  # the relay before seats: field = sid, value = "replica|name"
            out.append(field)
    return out
