"""Wiring shared by the terminal UI and batch mode: keys, core, transport and a resend ticker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from .config import Settings
from .core import ChatCore
from .events import Event
from .keylog import KeyLog
from .keystore import Home
from .seats import forget_room
from .transport import Transport

TICK_SECONDS = 0.5
SAME_IDENTITY = "same_identity"  # the peer presented our own key: a second terminal of ours


class App:
    """One running client. ``on_event`` receives every :class:`Event` for display."""

    def __init__(self, settings: Settings, on_event: Callable[[Event], None]):
        self.settings = settings
        self._show = on_event
        on_event = self._on_event
        self.home = Home(settings.home)
        self.identity = self.home.load_or_create_identity(settings.name, settings.group)
        for note in self.home.notes:
            on_event(Event("warning", note))
        self.keylog = KeyLog.open(settings.keylog) if settings.keylog else None
        self.room_state = self.home.room(settings.room)
        auth = {"room": settings.room, "name": settings.name}
        if settings.token:
            auth["token"] = settings.token
        self.transport = Transport(settings.relays, auth, on_event, home=settings.home)
        self.core = ChatCore(
            self.identity,
            self.home.contacts(),
            settings.room,
            self.transport.send,
            on_event,
            hash=settings.hash,
            deniable=settings.deniable,
            resend_after=settings.resend_after,
            on_session=self.keylog.record if self.keylog else None,
            state=self.room_state,
            # offline delivery needs a seat of our own (a secret): mailbox and prekeys
            request=self.transport.request if self.transport.has_seat else None,
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
        self.core.save_session()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.room_state.close()
        if self.keylog is not None:
            self.keylog.close()

    async def release_seat(self) -> str | None:
        """`/leave`: the relay releases this room's seat, then we forget its secret.
        Returns None on success, else why the seat is still ours (its secret is kept)."""
        why = await self.transport.leave()
        if why is None:
            forget_room(self.settings.home, self.settings.room)
        return why

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


def ended_label(code: str) -> str:
    """How to introduce the reason the connection loop gave up."""
    return "stopped after an internal error" if code == "internal" else "relay refused"
