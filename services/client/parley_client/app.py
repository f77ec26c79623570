"""Wiring shared by the terminal UI and batch mode: keys, core, transport and a resend ticker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable

from .config import Settings
from .core import ChatCore
from .events import Event
from .keystore import Keystore
from .transport import Transport

TICK_SECONDS = 0.5
SAME_IDENTITY = "same_identity"  # the peer presented our own key: a second terminal of ours


class App:
    """One running client. ``on_event`` receives every :class:`Event` for display."""

    def __init__(self, settings: Settings, on_event: Callable[[Event], None]):
        self.settings = settings
        self._show = on_event
        on_event = self._on_event
        self.keystore = Keystore(settings.home, settings.name)
        self.identity = self.keystore.load_or_create_identity(settings.group)
        auth = {"room": settings.room, "name": settings.name}
        if settings.token:
            auth["token"] = settings.token
        self.transport = Transport(settings.relays, auth, on_event, home=settings.home)
        self.core = ChatCore(
            self.identity,
            self.keystore,
            settings.room,
            self.transport.send,
            on_event,
            hash=settings.hash,
            deniable=settings.deniable,
            rekey_after=settings.rekey_after,
            resend_after=settings.resend_after,
            on_session=self._keylog if settings.keylog else None,
        )
        self.transport.core = self.core
        self._tasks: list[asyncio.Task] = []

    def start(self) -> asyncio.Task:
        """Start connecting; returns the transport task (it ends on stop or fatal refusal)."""
        run = asyncio.create_task(self.transport.run())
        self._tasks = [run, asyncio.create_task(self._ticker())]
        return run

    def end_reason(self, task: asyncio.Task) -> tuple[str, str]:
        """(code, message) explaining why the transport task ended on its own."""
        if self.transport.fatal:
            return self.transport.fatal
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            return "internal", f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return "error", "connection ended"

    async def stop(self) -> None:
        """Flush what is queued, disconnect, cancel background tasks."""
        await self.transport.drain(1.0)
        await self.transport.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.core.tick()
            self.transport.tick()

    def _on_event(self, event: Event) -> None:
        """Every event passes here on its way to the UI or batch output."""
        if event.kind == "sent":
            self.transport.tag_last(event.data["id"])  # so the relay's ack can name it
        elif event.kind == "refused" and event.data.get("code") == SAME_IDENTITY:
            # Retrying cannot help: the other terminal holds the same key.
            self.transport.fatal = (SAME_IDENTITY, event.text)
            asyncio.get_running_loop().create_task(self.transport.stop())
        self._show(event)

    def _keylog(self, session, ephemeral, peer_payload) -> None:
        """Debug aid in the spirit of SSLKEYLOGFILE: append this session's secrets so tests
        can prove they never reach the relay. Only active when PARLEY_KEYLOG_FILE is set."""
        record = {"time": time.time(), "name": self.settings.name, **_secrets(session)}
        if ephemeral is not None:
            group = ephemeral.group
            peer_dh = int(peer_payload["dh"], 16)
            shared = pow(peer_dh, ephemeral.x, group.p).to_bytes(group.byte_length, "big")
            record["dh_private"] = format(ephemeral.x, "x")
            record["dh_secret"] = shared.hex()
        fd = os.open(self.settings.keylog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def ended_label(code: str) -> str:
    """How to introduce the reason the connection loop gave up."""
    return "stopped after an internal error" if code == "internal" else "relay refused"


def _secrets(session) -> dict[str, str]:
    """The session's current root and chain keys (hex)."""
    return session.debug_secrets()
