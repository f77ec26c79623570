"""Scripted mode: stdin lines are messages, received messages are stdout lines.

Plain output is ``NAME: text`` per received message on stdout and ``parley: ...`` status lines
on stderr (including the safety number once secure). With ``--json`` every event is one JSON
object per line on stdout. Exit statuses are the ``EXIT_*`` constants below (documented in
services/client/README.md); a script can tell "the peer's key changed" (3) from "the contact is
not there to receive what waits for it" (5) from "the relay would not let us in" (4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
import time

from parley_crypto import safety

from .app import App, ended_label
from .config import Settings
from .events import Event, State, printable
from .roomstate import RoomBusy

EXIT_OK = 0  # every message delivered, or stored in the away contact's relay mailbox
EXIT_UNDELIVERED = 1  # the contact was there, but some messages got no receipt in time
# (also: --wait-delivered and some messages only stored, not receipted, in time)
EXIT_CONFIG = 2  # bad configuration or home (permissions), a token the relay refused
EXIT_VERIFY = 3  # another key than the contact's is in the room (key changed), or a v1 peer
EXIT_REFUSED = 4  # the relay refused the seat: room_full, already_connected (or a busy home)
EXIT_ABSENT = 5  # messages remain for a contact that is not in the room (they stay queued)
REFUSAL_CODES = ("room_full", "already_connected")
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM/SIGHUP: stopped cleanly, what was pending is reported
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
QUIET_SECONDS = 1.0  # after our last receipt, keep answering the peer this long


class BatchClient:
    """Runs one scripted conversation; :meth:`run` returns the exit status."""

    def __init__(self, settings: Settings, stdin=None, stdout=None, stderr=None):
        self.settings = settings
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.verify_failed: str | None = None
        self.refused_input = 0  # lines too long to send: they count as undelivered
        self.interrupted = False
        self.last_activity = time.monotonic()
        self._wake = asyncio.Event()
        self.app = App(settings, self.on_event)
        self.core = self.app.core

    # ----- output ------------------------------------------------------------------------
    def _json(self, obj: dict) -> None:
        self.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.stdout.flush()

    def _status(self, text: str) -> None:
        self.stderr.write(f"parley: {printable(text)}\n")
        self.stderr.flush()

    def on_event(self, event: Event) -> None:
        """Print one event (stdout for messages, stderr for the rest, or JSON lines)."""
        if event.kind in ("message", "delivered", "stored"):
            self.last_activity = time.monotonic()
        accept = self.settings.accept_new_key
        if event.kind == "key_changed" and accept is not None and event.data.get("peer") == accept:
            # Asked for on the command line, for this one contact: accept, and say so.
            asyncio.get_running_loop().call_soon(self._accept_new_key, event)
        elif event.kind in ("key_changed", "refused"):
            self.verify_failed = event.text
        self._wake.set()
        if self.settings.json:
            self._json(_json_event(event))
        elif event.kind == "message":
            self.stdout.write(f"{event.data['from']}: {printable(event.text)}\n")
            self.stdout.flush()
        elif event.kind in ("secure", "key_changed"):
            number = safety.format_safety_number(event.data["safety_number"])
            self._status(f"{event.text}; safety number: {number}")
        elif event.kind in ("queued", "sent", "delivered", "stored", "prekeys"):
            return
        elif event.kind == "state":
            self._status(f"state: {event.text}")
        else:
            self._status(event.text)

    def _accept_new_key(self, event: Event) -> None:
        if self.core.trust():
            number = safety.format_safety_number(event.data["safety_number"])
            self._status(
                f"accepted the new key of {event.data['peer']} (--accept-new-key); "
                f"safety number: {number}"
            )
            self.core.forward()  # what this run queued for the old key goes to the new one

    # ----- run ---------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._interrupt)
        transport = self.app.start()
        reader = asyncio.create_task(self._read_input())
        try:
            status = await self._supervise(transport, reader)
        finally:
            reader.cancel()
            await self.app.stop()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        return status

    def _interrupt(self) -> None:
        self.interrupted = True
        self._wake.set()

    async def _supervise(self, transport: asyncio.Task, reader: asyncio.Task) -> int:
        deadline = None
        while True:
            if self.interrupted:
                pending = len(self.core.outbox)
                self._status(f"interrupted; {pending} message(s) not delivered")
                self._report_waiting()
                return EXIT_INTERRUPTED
            if self.verify_failed and not self.core.backlog_pending:
                # (After the backlog: what it withholds is kept for a /trust, see kept.py.)
                self._status(f"peer verification failed, nothing sent: {self.verify_failed}")
                self._report_waiting()
                return EXIT_VERIFY
            if transport.done():
                code, message = self.app.end_reason(transport)
                self._status(f"{ended_label(code)}: {code}: {message}")
                self._report_waiting()
                if code in REFUSAL_CODES:
                    return EXIT_REFUSED
                return EXIT_CONFIG if code == "unauthorized" else EXIT_UNDELIVERED
            if reader.done() and deadline is None:
                deadline = time.monotonic() + self.settings.timeout
            if deadline is not None:
                now = time.monotonic()
                drained = self._drained()
                if drained and now - self.last_activity >= QUIET_SECONDS:
                    self._report_stored()
                    return EXIT_UNDELIVERED if self.refused_input else EXIT_OK
                if now >= deadline:
                    return self._undelivered()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)

    def _report_stored(self) -> None:
        count, contact = len(self.core.outbox), self.core.contact
        if count and contact is not None:
            self._status(
                f"{count} message(s) stored in the relay's mailbox for {contact.label} (✓); "
                f"{contact.label} gets them on return (receipts: next run)"
            )

    def _drained(self) -> bool:
        """Nothing left to wait for: every line receipted, or (unless --wait-delivered) at
        least stored in the away contact's mailbox; and the backlog is in."""
        if self.core.backlog_pending or self.core.receipts_pending:
            return False
        outbox = self.core.outbox
        return len(outbox) == 0 or (not self.settings.wait_delivered and outbox.all_stored())

    def _undelivered(self) -> int:
        count = len(self.core.outbox)
        if count == 0:
            return EXIT_OK
        self._report_waiting()
        if self.core.outbox.all_stored():  # only with --wait-delivered
            self._status(f"{count} message(s) stored at the relay but not yet delivered")
            return EXIT_UNDELIVERED
        present = self.core.state is State.SECURE and self.core.blocked_by is None
        if not present:
            return EXIT_ABSENT
        self._status(f"{count} message(s) not delivered within {self.settings.timeout:g}s")
        return EXIT_UNDELIVERED

    def _report_waiting(self) -> None:
        """Say what stays queued, and for whom (it is resent when that contact is back)."""
        contact = self.core.contact
        for item in self.core.outbox:
            if self.settings.json:
                record = {"event": "undelivered", "id": item.message.id, "to": item.to}
                self._json({**record, "text": item.message.body})
        count = len(self.core.outbox)
        if not count:
            return
        if contact is None:
            who = "the first peer to join this room"
        else:
            who = f"{contact.label} ({contact.fingerprint})"
        self._status(f"{count} message(s) wait for {who}; they stay queued for the next run")
        stored = sum(1 for item in self.core.outbox if item.stored)
        if stored:
            self._status(f"{stored} of them are stored in the relay's mailbox (✓)")

    async def _read_input(self) -> None:
        async for line in _lines(self.stdin):
            text = line.rstrip("\r\n")
            if text and self.core.submit(text) is None:
                self.refused_input += 1
        self.last_activity = time.monotonic()
        self._wake.set()


async def _lines(stream):
    """Yield text lines from stdin without blocking the loop (pipes, ttys and plain files)."""
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        # Regular files and /dev/null never block, and epoll refuses them.
        for line in stream:
            yield line
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    while True:
        line = await reader.readline()
        if not line:
            return
        yield line.decode("utf-8", errors="replace")


def _json_event(event: Event) -> dict:
    kind = event.kind
    if kind == "message":
        return {"event": "message", **event.data}
    if kind in ("queued", "sent", "delivered"):
        return {"event": kind, **event.data}
    if kind == "secure":
        return {"event": "secure", "text": event.text, **event.data}
    if kind == "state":
        return {"event": "status", "state": event.text}
    return {"event": kind, "message": event.text, **event.data}


async def run_batch(settings: Settings) -> int:
    """Entry point used by ``main()``."""
    try:
        client = BatchClient(settings)
    except RoomBusy as e:
        sys.stderr.write(f"parley: error: {e}\n")
        return EXIT_REFUSED
    return await client.run()
