"""Interactive terminal UI: messages above, own undelivered messages and the prompt below,
a status line at the bottom.

A thin layer over :class:`~parley_client.core.ChatCore`: typed text becomes ``submit`` or a
command (:mod:`.commands`), core and transport events become lines (:mod:`.screen`).
prompt_toolkit's ``prompt_async`` under ``patch_stdout`` keeps the input intact while lines
arrive. Enter sends; Alt-Enter (or Esc then Enter) starts a new line; a bracketed paste stays
one message. Ctrl-C, Ctrl-D, ``exit`` and SIGINT/SIGTERM/SIGHUP all leave the same clean way.

Exit statuses (services/client/README.md): 0 you left (pending messages are reported),
1 the connection ended on an error (or /leave could not release the seat), 2 bad
configuration or a refused token,
4 the relay (or the room) refused this terminal: room full, already connected, same identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import termios
import time
from dataclasses import dataclass

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.patch_stdout import patch_stdout

from . import screen
from .app import App
from .commands import Commands
from .config import Settings
from .events import Event, State, printable, refusal_text

EXIT_LEFT, EXIT_ENDED, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 4
REFUSED_CODES = ("room_full", "already_connected", "same_identity")
QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
UNRECEIPTED_HINT_AFTER = 3  # sends of one message without a receipt before we suggest why

STYLE = {
    "message": "ansicyan",
    "error": "ansired",
    "relay_error": "ansired",
    "key_changed": "ansired bold",
    "refused": "ansired bold",
    "warning": "ansiyellow",
    "lost": "ansiyellow",
    "not_answering": "ansiyellow",
    "secure": "ansigreen",
    "quiet": "ansibrightblack",
}


class Leave(Exception):  # noqa: N818 - a request, not an error
    """Ctrl-C in the prompt: leave like ``exit`` (never a KeyboardInterrupt in a task)."""


@dataclass
class Mine:
    """One of our messages not yet receipted, as shown in the pane."""

    text: str
    ts: float
    state: str = "pending"  # pending -> sent (relay ack) -> delivered (peer's receipt)
    attempts: int = 0


class TerminalUI:
    """The interactive client; :meth:`run` returns the exit status."""

    def __init__(self, settings: Settings, encoding: str | None = None):
        self.settings = settings
        self.marks = screen.Marks.for_encoding(encoding or sys.stdout.encoding)
        self.mine: dict[str, Mine] = {}
        self._secure_with: str | None = None  # fingerprint of the peer we were last secure with
        self._gap: str | None = None  # "peer" or "relay" went away since then
        self._hinted = False
        self._unaccepted: str | None = None  # the peer told us it withholds our texts
        self.app = App(settings, self.show)
        self.core = self.app.core
        self.commands = Commands(self)
        self.session: PromptSession | None = None
        self._leave: asyncio.Event | None = None
        self.leaving = False  # /leave: release the seat on the way out

    # ----- output ------------------------------------------------------------------------
    def _print(self, text: str, style: str = "") -> None:
        print_formatted_text(FormattedText([(style, printable(text))]))

    def _lines(self, lines: list[str], style: str = "") -> None:
        # Lines are escaped already (screen.message_lines); print them as they are.
        print_formatted_text(FormattedText([(style, "\n".join(lines))]))

    def say(self, text: str, kind: str = "") -> None:
        """One timestamped notice line."""
        self._print(f"[{screen.clock()}] {text}", STYLE.get(kind, ""))

    def show(self, event: Event) -> None:
        """Turn one core/transport event into screen output."""
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)
        elif event.kind in ("info", "warning", "error", "relay_error", "key_changed", "refused"):
            self.say(event.text, event.kind)
        elif event.kind in ("lost", "not_answering"):
            self.say(event.text, event.kind)
            if event.kind == "lost":
                self._gap = self._gap or "relay"
        if self.session is not None and self.session.app.is_running:
            self.session.app.invalidate()  # redraw the pane and the status line

    def _on_message(self, event: Event) -> None:
        ts = event.data.get("ts")
        lines = screen.received(event.data["from"], event.text, ts, time.time())
        if event.data.get("recovered"):  # delivery.py: the last run ended while showing it
            lines.append("  (shown again: parley stopped while showing it last time)")
        self._lines(lines, STYLE["message"])

    def _on_queued(self, event: Event) -> None:
        self.mine[event.data["id"]] = Mine(event.data["text"], time.time())

    def _on_sent(self, event: Event) -> None:
        item = self.mine.get(event.data["id"])
        if item is not None:
            item.attempts = event.data.get("attempt", item.attempts + 1)
            if item.attempts >= UNRECEIPTED_HINT_AFTER and not self._hinted:
                self._hinted = True
                peer = self.core.peer.name if self.core.peer else "your peer"
                self.say(
                    f"no receipt from {peer} yet: if your key is new, {peer} must /verify "
                    "and /trust it first; your messages wait until then",
                    "warning",
                )

    def _on_peer_notice(self, event: Event) -> None:
        self._hinted = True  # said plainly now: no guessing line
        if not self._unaccepted:
            self.say(event.text, "warning")
        self._unaccepted = f"{event.data['from']} has not accepted your key"

    def _on_relayed(self, event: Event) -> None:
        item = self.mine.get(event.data["id"])
        if item is not None and item.state == "pending":
            item.state = "sent"

    def _on_delivered(self, event: Event) -> None:
        item = self.mine.pop(event.data["id"], None)
        self._hinted, self._unaccepted = False, None
        if item is not None:
            lines = screen.own(self.settings.name, item.text, item.ts, "delivered", self.marks)
            self._lines(lines)

    def _on_state(self, event: Event) -> None:
        state = event.data.get("state")
        if state == State.PEER_LEFT.value:
            self._gap = "peer"
        elif state == State.CONNECTING.value:
            self._gap = self._gap or "relay"

    def _on_secure(self, event: Event) -> None:
        fp, peer = event.data["fingerprint"], event.data["peer"]
        if event.data.get("blocked"):
            self.say(f"{event.text}; /verify to compare safety numbers", "key_changed")
            return
        if fp != self._secure_with:
            self.say(f"{event.text}; /verify to compare safety numbers", "secure")
        elif self._gap == "peer":
            self.say(f"{peer} is back; secure ({fp})", "secure")
        elif self._gap == "relay":
            self.say(f"relay connection back; secure with {peer} again", "secure")
        else:
            self.say(f"keys refreshed with {peer}", "quiet")
        self._secure_with, self._gap = fp, None

    # ----- the pane and the status line --------------------------------------------------
    def prompt_message(self) -> FormattedText:
        """Own undelivered messages (one line each, state inline), then the prompt."""
        entries = []
        for item in self.mine.values():
            detail = f"resent {item.attempts - 1}x" if item.attempts > 1 else ""
            text = screen.one_line(item.text)
            line = screen.own(self.settings.name, text, item.ts, item.state, self.marks, detail)
            entries.append(line[0])
        fragments = [("ansibrightblack", line + "\n") for line in screen.pane(entries)]
        fragments.append(("", f"{printable(self.settings.name)}> "))
        return FormattedText(fragments)

    def toolbar(self) -> FormattedText:
        """The bottom status line: alarms first (KEY CHANGED, relay lost), then the rest."""
        transport = self.app.transport
        relay = {
            "retry_at": transport.retry_at,
            "not_answering": transport.acks.not_answering,
            "url": transport.url,
            "ever_connected": transport.ever_connected,
        }
        st = {**self.core.status(), "unconfirmed": self._unaccepted}
        parts, alarm = screen.status_parts(st, relay, time.monotonic())
        line = " " + " | ".join(printable(p) for p in parts)
        if alarm:
            head, _, rest = line.partition(" | ")
            return FormattedText([("bg:ansired fg:ansiwhite bold", head), ("", " | " + rest)])
        return FormattedText([("", line)])

    def command(self, line: str) -> bool:
        """Run one typed entry; return False when the user wants to leave."""
        return self.commands.run(line)

    # ----- main loop ---------------------------------------------------------------------
    async def run(self) -> int:
        """Run until the user leaves or the relay refuses us for good."""
        self._leave = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in QUIT_SIGNALS:
            loop.add_signal_handler(sig, self._leave.set)
        self.session = PromptSession(
            self.prompt_message,
            bottom_toolbar=self.toolbar,
            refresh_interval=0.5,
            erase_when_done=True,
            key_bindings=_bindings(),
        )
        saved = _keys_as_input(sys.stdin)
        try:
            with patch_stdout(raw=True):
                transport = self.app.start()
                self._print(
                    f"parley: {self.settings.name} in room {self.settings.room}; Enter sends, "
                    "Alt-Enter adds a line, /help lists commands, Ctrl-D leaves"
                )
                status = await self._loop(transport)
                status = await self._leave_cleanly(status)
        finally:
            for sig in QUIT_SIGNALS:
                loop.remove_signal_handler(sig)
            if saved is not None:
                with contextlib.suppress(termios.error, OSError):
                    termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, saved)
        return status

    async def _leave_cleanly(self, status: int) -> int:
        """Release the seat after /leave, disconnect, then say what was not delivered (it
        stays on screen, marked). Returns the exit status (EXIT_ENDED: seat not released)."""
        if self.leaving:
            status = self._released(await self.app.release_seat())
        await self.app.stop()
        if not self.mine:
            return status
        for item in self.mine.values():
            state = "pending" if item.state == "pending" else "sent"
            lines = screen.own(self.settings.name, item.text, item.ts, state, self.marks)
            self._lines(lines, "ansiyellow")
        stored = sum(1 for item in self.core.outbox if item.stored)
        note = f" ({stored} stored in the relay's mailbox: ✓)" if stored else ""
        self.say(f"{len(self.mine)} message(s) were not delivered{note}", "warning")
        return status

    def _released(self, why: str | None) -> int:
        room = self.settings.room
        if why is None:
            self.say(
                f"left room {room}: the relay released your seat (joining again later "
                "takes a new seat)"
            )
            return EXIT_LEFT
        self.say(
            f"could not release your seat in room {room} ({why}); it stays reserved for "
            "you: /leave again next time",
            "warning",
        )
        return EXIT_ENDED

    async def _loop(self, transport: asyncio.Task) -> int:
        leave = asyncio.ensure_future(self._leave.wait())
        try:
            while True:
                # handle_sigint=False: a SIGINT (a Ctrl-C typed while a line is being printed,
                # or kill -INT) must reach our handler, not become a KeyboardInterrupt.
                prompt = asyncio.ensure_future(self.session.prompt_async(handle_sigint=False))
                waited = {prompt, transport, leave}
                done, _ = await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
                if prompt not in done:
                    await _cancel(prompt)
                    return EXIT_LEFT if leave in done else self._ended(transport)
                try:
                    line = prompt.result()
                except (EOFError, Leave):
                    return EXIT_LEFT
                if not self.command(line):
                    return EXIT_LEFT
        finally:
            await _cancel(leave)

    def _ended(self, transport: asyncio.Task) -> int:
        code, message = self.app.end_reason(transport)
        name, room = self.settings.name, self.settings.room
        self.say(refusal_text(code, message, name, room), "refused")
        if code == "unauthorized":
            return EXIT_CONFIG
        return EXIT_REFUSED if code in REFUSED_CODES else EXIT_ENDED


def _keys_as_input(stream) -> list | None:
    """Make Ctrl-C and Ctrl-D plain keys even in the moments prompt_toolkit returns the
    terminal to cooked mode to print a line; otherwise a Ctrl-C typed then is a signal and a
    Ctrl-D is swallowed as end-of-file. Returns the settings to restore, or None."""
    try:
        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError, AttributeError):
        return None  # not a terminal (tests driving the UI without one)
    changed = termios.tcgetattr(fd)
    disabled = b"\x00"  # _POSIX_VDISABLE on Linux
    changed[6][termios.VINTR] = disabled
    changed[6][termios.VEOF] = disabled
    with contextlib.suppress(termios.error, OSError):
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    return saved


def _bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("escape", "enter")  # Alt-Enter sends ESC CR; Esc then Enter does the same
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    @kb.add("c-c")
    def _leave(event) -> None:
        event.app.exit(exception=Leave())

    return kb


async def _cancel(task: asyncio.Future) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
