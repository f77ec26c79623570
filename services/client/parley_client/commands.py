"""The interactive ``/commands``: what each typed entry does, apart from drawing the screen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley_crypto import safety

if TYPE_CHECKING:
    from .ui import TerminalUI

HELP = [
    "commands:",
    "  /verify          show the safety number to compare with your peer",
    "  /trust DIGITS    accept your peer's changed key: the last 5 digits of the safety",
    "                   number you compared (or /trust yes right after /verify)",
    "  /label NAME      your own name for this room's contact (its key stays the same)",
    "  /forward         after /trust: send what you queued for the old key to the new one",
    "  /discard         drop what you queued for an old key, and stored messages withheld",
    "                   from a key you did not /trust",
    "  /who             who is in this chat, with key fingerprints",
    "  /status          connection state and every pending message",
    "  /help            this list",
    "  /quit, exit      leave (Ctrl-D and Ctrl-C too); your seat stays reserved for you",
    "  /leave           leave this room for good: the relay releases your seat, so someone",
    "                   else may take it (joining again later takes a new seat)",
    "keys: Enter sends; Alt-Enter (or Esc then Enter) starts a new line; a paste stays one",
    "message. Marks after your messages: {pending} pending, {sent} sent to the relay, "
    "{delivered} delivered.",
]
TRUST_DIGITS = 5  # typing the safety number's tail proves it was looked at


class Commands:
    """Commands of one :class:`TerminalUI`."""

    def __init__(self, ui: TerminalUI):
        self.ui = ui
        self.core = ui.core
        self._verified_number: str | None = None  # the number /verify last showed

    def run(self, line: str) -> bool:
        """Run one typed entry; return False when the user wants to leave."""
        text = line.strip()
        if not text:
            return True
        if text in ("exit", "/quit", "/exit"):
            return False
        if text == "/leave":
            return self._leave()
        if not text.startswith("/"):
            self._send(line.strip("\r\n"))
            return True
        name, _, arg = text.partition(" ")
        handler = {
            "/help": self._help,
            "/verify": self._verify,
            "/trust": self._trust,
            "/forward": self._forward,
            "/label": self._label,
            "/discard": self._discard,
            "/who": self._who,
            "/status": self._status,
        }.get(name)
        if handler is None:
            self.ui._print(f"unknown command {name}; /help lists them", "ansiyellow")
        else:
            handler(arg.strip())
        return True

    def _leave(self) -> bool:
        """Leave for good (the UI releases the seat on its way out); only while connected,
        since the relay must release the seat: otherwise it stays reserved for us."""
        if self.ui.app.transport.url is None:
            self.ui._print(
                "not connected to the relay: your seat cannot be released now; /leave again "
                "once connected (/quit leaves and keeps the seat)",
                "ansiyellow",
            )
            return True
        self.ui.leaving = True
        return False

    def _send(self, text: str) -> None:
        if self.core.blocked_by is not None:
            self.ui._print(
                "not sent yet: sending is blocked until you /trust the changed key; "
                "it stays pending",
                "ansired",
            )
        self.core.submit(text)

    def _help(self, _arg: str) -> None:
        marks = self.ui.marks
        text = "\n".join(HELP).format(
            pending=marks.pending, sent=marks.sent, delivered=marks.delivered
        )
        for line in text.splitlines():
            self.ui._print(line)

    def _verify(self, _arg: str) -> None:
        number = self.core.safety_number()
        if number is None:
            self.ui._print("no peer yet: the safety number appears once the peer has joined")
            return
        self._verified_number = number
        peer = self.core.status()["peer"] or self.core.peer.name
        self.ui._print(f"safety number with {peer}:")
        self.ui._print("  " + safety.format_safety_number(number), "bold")
        self.ui._print(
            f"Compare it with {peer} over another channel (in person or by phone). Both "
            "sides see the same 60 digits; if they differ, someone is in the middle: do not "
            "/trust."
        )
        if self.core.blocked_by is not None:
            self.ui._print(f"If they match, type /trust yes (or /trust {'N' * TRUST_DIGITS}).")

    def _trust(self, arg: str) -> None:
        if self.core.blocked_by is None:
            self.ui._print("nothing to trust: no changed key is waiting")
            return
        number = self.core.safety_number() or ""
        peer = self.core.blocked_by.name
        digits = arg.replace(" ", "")
        looked = arg.lower() == "yes" and self._verified_number == number
        if not (looked or (len(digits) == TRUST_DIGITS and number.endswith(digits))):
            if digits and arg.lower() != "yes":
                self.ui._print(
                    f"those are not the last {TRUST_DIGITS} digits of the safety number "
                    f"with {peer}; key NOT trusted",
                    "ansired",
                )
            else:
                self.ui._print(
                    f"to accept the new key of {peer}: compare the safety number with them "
                    f"(/verify), then type /trust and its last {TRUST_DIGITS} digits "
                    "(or /trust yes right after /verify)",
                    "ansiyellow",
                )
            return
        self.core.trust()

    def _label(self, arg: str) -> None:
        if not self.core.rename_contact(arg):
            self.ui._print("usage: /label NAME (once the room has a contact; 1-64 characters)")

    def _forward(self, _arg: str) -> None:
        if not self.core.forward():
            self.ui._print("nothing to forward: no message waits for an earlier key")

    def _discard(self, _arg: str) -> None:
        if not self.core.discard():
            self.ui._print("nothing to discard: no message waits for an earlier key")

    def _who(self, _arg: str) -> None:
        st = self.core.status()
        self.ui._print(f"you: {st['me']} [{st['my_fingerprint']}] in room {st['room']}")
        if st["peer"]:
            self.ui._print(f"peer: {st['peer']} [{st['peer_fingerprint']}] ({st['state']})")
        else:
            self.ui._print(f"no peer yet ({st['state']})")

    def _status(self, _arg: str) -> None:
        st = self.core.status()
        relay = self.ui.app.transport.url or "not connected"
        self.ui._print(f"state: {st['state']}; relay: {relay}; pending: {st['pending']}")
        for item in self.core.outbox:
            when = "not sent yet" if item.sent_at is None else f"sent {item.attempts}x"
            body = item.message.body.replace("\n", " / ")[:40]
            self.ui._print(f"  pending {item.message.id[:8]}: {body} ({when})")
