"""Socket.IO transport: connect with auth, fail over across relay URLs with backoff, feed the core.

One ``socketio.AsyncClient`` per connection attempt (a fresh object is simpler than reusing
one whose internal reconnect logic we do not use). Outgoing payloads go through one queue and
one sender task so they leave in the order the core produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import socketio

from .core import ChatCore
from .events import Event, relay_error_fields
from .relay_status import AckWatch, PeerLeftHold, plain_error, probe
from .seats import new_instance, seat_auth

FORWARDED = (
    "KEY_EXCHANGE",
    "ELGAMAL_PK_BC",
    "DEFF_HELLMAN_PK_BC",
    "DIFF_HELLMAN_PK_BC",
    "KEY_CONFIRM_BC",  # protocol v2 key confirmation
    "received_message",
    "peer_left",
    # offline delivery (issue 15): the backlog before live traffic, and expiry notices
    "stored_message",
    "mailbox_done",
    "mailbox_expired",
)
# Rejections retrying cannot fix: the client stops with one line (no reconnect loop, no
# flapping). `already_connected`: our seat is live in another terminal. `room_full` with a
# seat secret: both seats belong to others (ours would have been kept for our secret).
# Without a secret (no home given), room_full only counts before we ever got in: afterwards
# it usually means the relay has not yet noticed our previous connection is gone.
ALWAYS_FATAL = ("unauthorized", "already_connected")
FATAL_AT_START = ("room_full",)
# Socket.IO over websocket only: no long-polling phase (docs/protocol.md).
TRANSPORTS = ["websocket"]
MAX_BACKOFF = 5.0
# A connection that ends sooner than this after connecting backs off as a failed connect.
SHORT_LIVED_CONNECTION = 2.0
# A whole connection attempt (TCP, Engine.IO and Socket.IO handshakes). aiohttp's own default
# is five minutes, which is how long a frozen relay would otherwise hold us.
CONNECT_TIMEOUT = 10.0
# How long /leave waits for the relay's ack (it answers at once unless Redis is unreachable).
LEAVE_TIMEOUT = 5.0


def failed_attempt(lived: float | None) -> bool:
    """Whether a connection attempt failed: it never connected (None), or the relay ended it
    within SHORT_LIVED_CONNECTION s (a fenced replica, or one dropping every seat it cannot
    serve, accepts and drops each one). A failed attempt fails over to the next relay URL and
    grows the backoff, instead of a reconnect to the same replica every 0.2 s for ever."""
    return lived is None or lived < SHORT_LIVED_CONNECTION


def reconnect_delay(failures: int, jitter: float) -> float:
    """Seconds before the next attempt after `failures` failed ones in a row: 0.2 s doubling,
    capped at MAX_BACKOFF, times `jitter` (0.7-1.3, so clients do not retry in step)."""
    return min(MAX_BACKOFF, 0.2 * 2 ** min(failures, 6)) * jitter


class Transport:
    """Keeps one relay connection alive for a :class:`ChatCore`."""

    def __init__(
        self,
        urls: tuple[str, ...],
        auth: dict[str, str],
        on_event: Callable[[Event], None],
        connect_timeout: float = 5.0,
        home=None,
    ):
        self.urls = urls
        # With a home folder we own our seat by its resume secret (seats.py); the instance id
        # is new per process, so our own reconnects resume and a second terminal is refused.
        self.has_seat = home is not None
        self.auth = seat_auth(auth, home, new_instance()) if self.has_seat else auth
        self._emit = on_event
        self.connect_timeout = connect_timeout
        self.core: ChatCore | None = None
        self.url: str | None = None
        self.fatal: tuple[str, str] | None = None
        self.ever_connected = False
        self._queue: asyncio.Queue = asyncio.Queue()
        self._sio: socketio.AsyncClient | None = None
        self._gone: asyncio.Event | None = None
        self._stopping = False
        self._rejection: tuple[str, str] | None = None
        self._unreachable: set[str] = set()
        self._refusals: set[str] = set()
        self.retry_at: float | None = None  # monotonic time of the next attempt, while waiting
        self.acks = AckWatch()
        self._peer_left = PeerLeftHold(lambda payload: self.core.handle("peer_left", payload))
        self._last: list | None = None  # the newest queued entry, so the core can tag it

    # ----- called by the core ------------------------------------------------------------
    def send(self, event: str, payload: Any) -> None:
        """Queue one event for the relay (dropped if we are offline: the core re-sends)."""
        if self._sio is not None and self.url is not None:
            self._last = [event, payload, None, None]
            self._queue.put_nowait(self._last)

    def request(self, event: str, payload: Any, on_reply: Callable[[Any], None] | None) -> None:
        """Queue one event whose ack (the relay's reply) goes to ``on_reply`` (dropped if we
        are offline: the core asks again on the next join)."""
        if self._sio is not None and self.url is not None:
            self._queue.put_nowait([event, payload, None, on_reply])

    def tag_last(self, message_id: str) -> None:
        """Name the text the event just queued carries, so its relay ack can be reported
        (``relayed``): the envelope itself shows the relay no id."""
        if self._last is not None and self._last[0] == "message":
            self._last[2] = message_id

    def tick(self) -> None:
        """Called about twice a second: notice a relay that stopped answering."""
        if self.acks.check():
            self._emit(
                Event(
                    "not_answering",
                    "relay not answering (no reply for 5 s); messages wait until it does",
                    {"url": self.url},
                )
            )

    # ----- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, reconnect and fail over until :meth:`stop` or a fatal rejection."""
        index, failures = 0, 0
        while not self._stopping:
            url = self.urls[index % len(self.urls)]
            connected = await self._connect(url)
            if self._stopping:
                break
            lived = None
            if connected:
                began = time.monotonic()
                await self._serve()
                if self._stopping:
                    break
                lived = time.monotonic() - began
            failed = failed_attempt(lived)
            index += failed  # fail over to the next relay
            failures = failures + 1 if failed else 0
            if self._check_fatal():
                return
            delay = reconnect_delay(failures, random.uniform(0.7, 1.3))
            self.retry_at = time.monotonic() + delay
            try:
                await asyncio.sleep(delay)
            finally:
                self.retry_at = None

    async def stop(self) -> None:
        """Disconnect and make :meth:`run` return."""
        self._stopping = True
        if self._gone is not None:
            self._gone.set()
        sio = self._sio
        if sio is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sio.disconnect(), 3)
            await _close(sio)

    async def leave(self, timeout: float = LEAVE_TIMEOUT) -> str | None:
        """Ask the relay to release our seat (`leave`): None once it acked, else why not.

        The relay closes the connection after its ack, so from here on this transport
        stops (no reconnect) whatever the answer.
        """
        sio = self._sio
        if sio is None or self.url is None:
            return "not connected to a relay"
        await self.drain(1.0)  # what the user typed before /leave goes out first
        self._stopping = True
        try:
            ack = await sio.call("leave", {}, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - a lost link or no answer: say so
            return _reason(e)
        if isinstance(ack, dict) and ack.get("ok") is True:
            return None
        code, message = relay_error_fields(ack)
        return f"{code}: {message}"

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait until queued payloads have been handed to the socket (best effort)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    # ----- internals ---------------------------------------------------------------------
    def _make_client(self) -> socketio.AsyncClient:
        # handle_sigint=False: python-engineio would otherwise take over SIGINT on the first
        # connect and drop the connection itself; the UI and batch mode leave cleanly instead.
        sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        for name in FORWARDED:
            sio.on(name, self._forwarder(name))
        sio.on("error", self._on_error)
        sio.on("connect", self._on_connect)
        sio.on("connect_error", self._on_connect_error)
        sio.on("disconnect", self._on_disconnect)
        return sio

    def _forwarder(self, name: str):
        def handler(*args):
            payload = args[0] if args else None
            if name == "peer_left":
                self._peer_left.hold(payload)
                return
            self._peer_left.release()  # it came first, so the core hears it first
            self.core.handle(name, payload)

        return handler

    async def _connect(self, url: str) -> bool:
        self._rejection = None
        self._gone = asyncio.Event()
        self._queue = asyncio.Queue()
        self._sio = sio = self._make_client()
        self.url = url
        try:
            connect = sio.connect(
                url, auth=self.auth, transports=TRANSPORTS, wait_timeout=self.connect_timeout
            )
            await asyncio.wait_for(connect, CONNECT_TIMEOUT)
            if sio.eio.state != "connected":
                # The connection ended between the relay's CONNECT ack and the end of
                # connect() (a relay that drops it at once sends DISCONNECT and CLOSE right
                # behind the ack; on Python 3.12+ they are always handled in that window).
                # python-socketio reports nothing then and returns success: count it as lost.
                # From here on the library reports every end through `disconnect`.
                self._gone.set()
            return True
        except Exception as e:  # noqa: BLE001 - every failure here just means "try again"
            self.url = None
            self._sio = None
            if self._rejection is None and url not in self._unreachable:
                self._unreachable.add(url)  # once per outage, not once per retry
                reason = await probe(url) or e  # websocket-only hides the cause: look again
                self._emit(Event("warning", plain_error(url, reason), {"url": url}))
            with contextlib.suppress(Exception):
                await sio.disconnect()
            return False
        finally:
            if self._sio is None or self._stopping:
                await _close(sio)  # no "Unclosed client session" when we give up or quit

    async def _serve(self) -> None:
        self.ever_connected = True
        self._unreachable.clear()
        self._refusals.clear()
        self.acks.reset()
        sender = asyncio.create_task(self._sender(self._sio))
        try:
            await self._gone.wait()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            lost, self.url, self._sio = self.url, None, None
            self._peer_left.drop()  # the relay went away, not (necessarily) the peer
            if not self._stopping:
                self.core.disconnected()
                if self._rejection is None:
                    text = f"relay connection lost ({lost}); reconnecting"
                    self._emit(Event("lost", text, {"url": lost}))

    async def _sender(self, sio: socketio.AsyncClient) -> None:
        while True:
            event, payload, tag, on_reply = await self._queue.get()
            try:
                callback = self._ack(self.acks.sent(), tag, on_reply)
                await sio.emit(event, payload, callback=callback)
            except Exception as e:  # noqa: BLE001 - lost link; the outbox re-sends later
                self._emit(Event("warning", f"could not send to relay: {_reason(e)}"))
            finally:
                self._queue.task_done()

    def _ack(self, token: int, tag: str | None, on_reply: Callable[[Any], None] | None = None):
        def on_ack(*args) -> None:
            if self.acks.acked(token):
                self._emit(Event("info", "relay answering again", {"url": self.url}))
            reply = args[0] if args else None
            if on_reply is not None:
                on_reply(reply)
            if tag is not None:
                self.core.message_acked(tag, reply)  # stored for an away contact, or full
            ok = isinstance(reply, dict) and reply.get("ok") is True
            # A refused message is reported by the relay's `error` event that comes with the
            # negative ack; the outbox re-sends it, so only a success is worth telling.
            if ok and tag is not None:
                self._emit(Event("relayed", data={"id": tag}))

        return on_ack

    def _check_fatal(self) -> bool:
        if self._rejection is None:
            return False
        code, message = self._rejection
        if self._is_fatal(code):
            self.fatal = (code, message)
            return True
        return False

    def _is_fatal(self, code: str) -> bool:
        if code in ALWAYS_FATAL:
            return True
        return code in FATAL_AT_START and (self.has_seat or not self.ever_connected)

    # ----- socket.io handlers ------------------------------------------------------------
    def _on_connect(self) -> None:
        self._emit(Event("info", f"connected to relay {self.url}", {"url": self.url}))
        self.core.connected()

    def _on_disconnect(self, *args) -> None:
        if self._gone is not None:
            self._gone.set()

    def _on_error(self, *args) -> None:
        payload = args[0] if args else None
        self._rejection = relay_error_fields(payload)
        self.core.handle("error", payload)

    def _on_connect_error(self, *args) -> None:
        payload = args[0] if args else None
        if not isinstance(payload, dict):
            return  # a network failure, not a refusal: _connect reports it and retries
        code, message = relay_error_fields(payload)
        if code == "error" and isinstance(payload, dict) and "message" in payload:
            # A bare Socket.IO refusal: the code may be the message text itself.
            text = str(payload["message"])
            code = text if text in ALWAYS_FATAL + FATAL_AT_START else "refused"
        self._rejection = (code, message)
        if self._gone is not None:
            self._gone.set()
        if self._is_fatal(code) or code in self._refusals:
            return  # fatal ones are reported once by the caller; repeats once per outage
        self._refusals.add(code)
        text = f"relay refused the connection: {code}: {message}"
        self._emit(Event("relay_error", text, {"code": code}))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


async def _close(sio: socketio.AsyncClient) -> None:
    """Release the aiohttp session of a client that never (or no longer) connects."""
    eio = getattr(sio, "eio", None)
    http = getattr(eio, "http", None)
    if http is not None and not http.closed:
        with contextlib.suppress(Exception):
            await http.close()
