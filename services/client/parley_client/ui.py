"""Interactive terminal UI: prompt at the bottom, messages printed above, a status toolbar.

A thin layer over :class:`~parley_client.core.ChatCore`: it turns typed lines into
``submit``/commands and core events into printed lines. prompt_toolkit's ``prompt_async``
under ``patch_stdout`` keeps the input line intact while messages arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.patch_stdout import patch_stdout

from parley_crypto import safety

from .app import App, ended_label
from .config import Settings
from .events import Event, printable

HELP = """commands:
  /verify   show the safety number to compare with your peer
  /trust    accept your peer's changed key (only after /verify matched)
  /forward  after /trust: send what you queued for the old key to the new one
  /discard  after /trust: drop what you queued for the old key
  /who      who is in this chat, with key fingerprints
  /status   connection state and pending messages
  /help     this text
  /quit or exit   leave"""

STYLE = {
    "message": "",
    "error": "ansired",
    "relay_error": "ansired",
    "key_changed": "ansired bold",
    "refused": "ansired bold",
    "warning": "ansiyellow",
    "secure": "ansigreen",
}


def clock(ts: float | None = None) -> str:
    """HH:MM:SS in local time."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


class TerminalUI:
    """The interactive client; :meth:`run` returns the exit status."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app = App(settings, self.show)
        self.core = self.app.core
        self.session: PromptSession | None = None

    # ----- output ------------------------------------------------------------------------
    def _print(self, text: str, style: str = "") -> None:
        print_formatted_text(FormattedText([(style, printable(text))]))

    def show(self, event: Event) -> None:
        """Print one core/transport event above the prompt."""
        kind = event.kind
        if kind == "message":
            sender = event.data["from"]
            self._print(f"[{clock()}] {sender}: {event.text}", "ansicyan")
        elif kind == "queued":
            mark = "" if self.core.can_send else "  (pending: will send when secure)"
            self._print(f"[{clock()}] {self.settings.name}: {event.data['text']}{mark}")
        elif kind == "delivered":
            self._print(f"           ✓ delivered: {event.data['text'][:40]}", "ansibrightblack")
        elif kind == "sent" and event.data.get("attempt", 1) > 1:
            self._print(
                f"           … resending (no receipt yet): {event.data['text'][:40]}", "ansiyellow"
            )
        elif kind == "secure":
            style = STYLE["key_changed" if event.data.get("blocked") else "secure"]
            self._print(f"[{clock()}] {event.text}; /verify to compare safety numbers", style)
        elif kind in ("info", "warning", "error", "relay_error", "key_changed", "refused"):
            self._print(f"[{clock()}] {event.text}", STYLE.get(kind, ""))
        if self.session is not None and self.session.app.is_running:
            self.session.app.invalidate()  # refresh the status toolbar

    def toolbar(self) -> FormattedText:
        """The bottom status line: state, peer, short fingerprint, pending count, relay."""
        st = self.core.status()
        parts = [f" {st['state']} | room {st['room']}"]
        if st["peer"]:
            parts.append(f" | {st['peer']} [{st['peer_fingerprint']}]")
        if st["pending"]:
            parts.append(f" | {st['pending']} pending")
        if self.app.transport.url:
            parts.append(f" | {self.app.transport.url}")
        style = "bg:ansired fg:ansiwhite" if st["blocked"] else ""
        if st["blocked"]:
            parts.append(" | KEY CHANGED: /verify then /trust")
        return FormattedText([(style, "".join(parts))])

    # ----- commands ----------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run one typed line; return False when the user wants to leave."""
        text = line.strip()
        if not text:
            return True
        if text in ("exit", "/quit", "/exit"):
            return False
        if not text.startswith("/"):
            if self.core.blocked_by is not None:
                self._print(
                    "not sent: sending is blocked until you /trust the changed key; "
                    "it stays pending",
                    "ansired",
                )
            self.core.submit(line)
            return True
        name = text.split()[0]
        handler = {
            "/help": self._help,
            "/verify": self._verify,
            "/trust": self._trust,
            "/forward": self._forward,
            "/discard": self._discard,
            "/who": self._who,
            "/status": self._status,
        }.get(name)
        if handler is None:
            self._print(f"unknown command {name}; /help lists them", "ansiyellow")
        else:
            handler()
        return True

    def _help(self) -> None:
        self._print(HELP)

    def _verify(self) -> None:
        number = self.core.safety_number()
        if number is None:
            self._print("no peer yet: the safety number appears once the peer has joined")
            return
        who = self.core.status()["peer"] or self.core.peer.name
        self._print(f"safety number with {who}:")
        self._print("  " + safety.format_safety_number(number), "bold")
        self._print(
            f"Compare it with {who} over another channel (in person or by "
            "phone). Both sides see the same 60 digits; if they differ, someone is in the "
            "middle: do not /trust."
        )

    def _trust(self) -> None:
        if not self.core.trust():
            self._print("nothing to trust: no changed key is waiting")

    def _forward(self) -> None:
        if not self.core.forward():
            self._print("nothing to forward: no message waits for an earlier key")

    def _discard(self) -> None:
        if not self.core.discard():
            self._print("nothing to discard: no message waits for an earlier key")

    def _who(self) -> None:
        st = self.core.status()
        self._print(f"you: {st['me']} [{st['my_fingerprint']}] in room {st['room']}")
        if st["peer"]:
            self._print(f"peer: {st['peer']} [{st['peer_fingerprint']}] ({st['state']})")
        else:
            self._print(f"no peer yet ({st['state']})")

    def _status(self) -> None:
        st = self.core.status()
        relay = self.app.transport.url or "not connected"
        self._print(f"state: {st['state']}; relay: {relay}; pending: {st['pending']}")
        for item in self.core.outbox:
            when = "not sent yet" if item.sent_at is None else f"sent {item.attempts}x"
            self._print(f"  pending {item.message.id[:8]}: {item.message.body[:40]} ({when})")

    # ----- main loop ---------------------------------------------------------------------
    async def run(self) -> int:
        """Run until ``exit``/``/quit``/Ctrl-D or a fatal relay refusal."""
        self.session = PromptSession(
            bottom_toolbar=self.toolbar, refresh_interval=1.0, erase_when_done=True
        )
        with patch_stdout(raw=True):
            transport = self.app.start()
            self._print(
                f"parley: {self.settings.name} in room {self.settings.room}; "
                "type /help for commands, exit to leave"
            )
            status = await self._loop(transport)
            pending = len(self.core.outbox)
            if pending:
                self._print(
                    f"{pending} message(s) were not delivered; they stay queued for the next run",
                    "ansiyellow",
                )
            await self.app.stop()
        return status

    async def _loop(self, transport: asyncio.Task) -> int:
        while True:
            prompt = asyncio.ensure_future(self.session.prompt_async(f"{self.settings.name}> "))
            done, _ = await asyncio.wait({prompt, transport}, return_when=asyncio.FIRST_COMPLETED)
            if prompt not in done:
                prompt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await prompt
                code, message = self.app.end_reason(transport)
                self._print(f"{ended_label(code)}: {code}: {message}", "ansired")
                return 2 if code == "unauthorized" else 1
            try:
                line = prompt.result()
            except (EOFError, KeyboardInterrupt):
                return 0
            if not self.command(line):
                return 0
