"""Socket.IO transport: connect with auth, fail over across relay URLs with backoff, feed the core.

One ``socketio.AsyncClient`` per connection attempt (a fresh object is simpler than reusing
one whose internal reconnect logic we do not use). Outgoing payloads go through one queue and
one sender task so they leave in the order the core produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import socketio

from .core import ChatCore
from .events import Event, relay_error_fields

FORWARDED = (
    "KEY_EXCHANGE",
    "ELGAMAL_PK_BC",
    "DEFF_HELLMAN_PK_BC",
    "DIFF_HELLMAN_PK_BC",
    "KEY_CONFIRM_BC",  # protocol v2 key confirmation
    "received_message",
    "peer_left",
)
# Rejections retrying cannot fix. room_full only counts before we ever got in: afterwards it
# usually means the relay has not yet noticed our previous connection is gone.
ALWAYS_FATAL = ("unauthorized",)
FATAL_AT_START = ("room_full",)
MAX_BACKOFF = 5.0


class Transport:
    """Keeps one relay connection alive for a :class:`ChatCore`."""

    def __init__(
        self,
        urls: tuple[str, ...],
        auth: dict[str, str],
        on_event: Callable[[Event], None],
        connect_timeout: float = 5.0,
    ):
        self.urls = urls
        self.auth = auth
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

    # ----- called by the core ------------------------------------------------------------
    def send(self, event: str, payload: Any) -> None:
        """Queue one event for the relay (dropped if we are offline: the core re-sends)."""
        if self._sio is not None and self.url is not None:
            self._queue.put_nowait((event, payload))

    # ----- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, reconnect and fail over until :meth:`stop` or a fatal rejection."""
        index, failures = 0, 0
        while not self._stopping:
            url = self.urls[index % len(self.urls)]
            connected = await self._connect(url)
            if self._stopping:
                break
            if connected:
                failures = 0
                await self._serve()
                if self._stopping:
                    break
            else:
                index += 1  # fail over to the next relay
                failures += 1
            if self._check_fatal():
                return
            delay = min(MAX_BACKOFF, 0.2 * 2 ** min(failures, 6))
            await asyncio.sleep(delay * random.uniform(0.7, 1.3))

    async def stop(self) -> None:
        """Disconnect and make :meth:`run` return."""
        self._stopping = True
        if self._gone is not None:
            self._gone.set()
        sio = self._sio
        if sio is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sio.disconnect(), 3)

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait until queued payloads have been handed to the socket (best effort)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    # ----- internals ---------------------------------------------------------------------
    def _make_client(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False)
        for name in FORWARDED:
            sio.on(name, self._forwarder(name))
        sio.on("error", self._on_error)
        sio.on("connect", self._on_connect)
        sio.on("connect_error", self._on_connect_error)
        sio.on("disconnect", self._on_disconnect)
        return sio

    def _forwarder(self, name: str):
        def handler(*args):
            self.core.handle(name, args[0] if args else None)

        return handler

    async def _connect(self, url: str) -> bool:
        self._rejection = None
        self._gone = asyncio.Event()
        self._queue = asyncio.Queue()
        self._sio = sio = self._make_client()
        self.url = url
        try:
            await sio.connect(url, auth=self.auth, wait_timeout=self.connect_timeout)
            return True
        except Exception as e:  # noqa: BLE001 - every failure here just means "try again"
            self.url = None
            self._sio = None
            if self._rejection is None and url not in self._unreachable:
                self._unreachable.add(url)  # once per outage, not once per retry
                self._emit(Event("warning", f"cannot reach relay {url}: {_reason(e)}"))
            with contextlib.suppress(Exception):
                await sio.disconnect()
            return False

    async def _serve(self) -> None:
        self.ever_connected = True
        self._unreachable.clear()
        self._refusals.clear()
        sender = asyncio.create_task(self._sender(self._sio))
        try:
            await self._gone.wait()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            self.url = None
            self._sio = None
            if not self._stopping:
                self.core.disconnected()

    async def _sender(self, sio: socketio.AsyncClient) -> None:
        while True:
            event, payload = await self._queue.get()
            try:
                callback = self._ack if event == "message" else None
                await sio.emit(event, payload, callback=callback)
            except Exception as e:  # noqa: BLE001 - lost link; the outbox re-sends later
                self._emit(Event("warning", f"could not send to relay: {_reason(e)}"))
            finally:
                self._queue.task_done()

    def _ack(self, *args) -> None:
        # A refused message is reported by the relay's `error` event that accompanies the
        # negative ack; the outbox re-sends it, so there is nothing more to do here.
        return None

    def _check_fatal(self) -> bool:
        if self._rejection is None:
            return False
        code, message = self._rejection
        if self._is_fatal(code):
            self.fatal = (code, message)
            return True
        return False

    def _is_fatal(self, code: str) -> bool:
        return code in ALWAYS_FATAL or (code in FATAL_AT_START and not self.ever_connected)

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
