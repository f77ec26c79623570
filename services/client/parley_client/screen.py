"""How the terminal UI draws things: message lines, delivery marks, the own-messages pane and
the status line. Pure functions of their arguments, so tests need no terminal.

Each message is one entry: ``[12:01:02] bob: text``, further lines of a multi-line text
indented under the first. Own messages carry their state at the end, in the spirit of
Signal's ticks: ``·`` waiting, ``✓`` the relay took it, ``✓✓`` the peer's key receipted it
(``.``, ``+`` and ``++`` where the terminal cannot show UTF-8).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .events import printable

# The sender's clock is shown; the arrival time too when the two differ by more than this.
CLOCK_DRIFT_SHOWN = 60.0
PANE_LINES = 6  # own undelivered messages shown above the prompt; more are counted
PREVIEW_CHARS = 200  # a very long pending message is cut in the pane (shown whole once sent)


@dataclass(frozen=True)
class Marks:
    """The three delivery marks, in UTF-8 or plain ASCII."""

    pending: str
    sent: str
    delivered: str

    @classmethod
    def for_encoding(cls, encoding: str | None) -> Marks:
        if (encoding or "").lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
            return cls("·", "✓", "✓✓")
        return cls(".", "+", "++")


def clock(ts: float | None = None) -> str:
    """HH:MM:SS in local time (``??:??:??`` for a time the platform cannot show)."""
    try:
        return time.strftime("%H:%M:%S", time.localtime(ts))
    except (OverflowError, ValueError, OSError):
        return "??:??:??"


def stamp(sent: float | None, arrived: float | None = None) -> str:
    """``[HH:MM:SS]`` of the sender's time; the arrival time too when far apart."""
    if sent is None:
        return f"[{clock(arrived)}]"
    if arrived is not None and abs(arrived - sent) > CLOCK_DRIFT_SHOWN:
        return f"[{clock(sent)}, arrived {clock(arrived)}]"
    return f"[{clock(sent)}]"


def message_lines(prefix: str, text: str, suffix: str = "") -> list[str]:
    """A message as terminal lines: newlines become indented continuation lines, every other
    control character stays escaped (``\\x1b``), and ``suffix`` ends the last line."""
    parts = text.replace("\r\n", "\n").split("\n")
    indent = " " * len(prefix)
    lines = [prefix + printable(parts[0])]
    lines += [indent + printable(part) for part in parts[1:]]
    if suffix:
        lines[-1] += suffix
    return lines


def received(sender: str, text: str, sent_ts: float | None, arrived: float) -> list[str]:
    """Lines for a message from the peer."""
    return message_lines(f"{stamp(sent_ts, arrived)} {printable(sender)}: ", text)


def own(me: str, text: str, ts: float, state: str, marks: Marks, detail: str = "") -> list[str]:
    """Lines for one of our messages; ``state`` is pending, sent or delivered."""
    mark = {"pending": marks.pending, "sent": marks.sent, "delivered": marks.delivered}[state]
    label = {"pending": "pending", "sent": "sent", "delivered": ""}[state]
    tail = "  " + " ".join(p for p in (mark, label, detail) if p)
    return message_lines(f"{stamp(ts)} {printable(me)}: ", text, tail)


def pane(entries: list[str]) -> list[str]:
    """The own-undelivered pane: the newest PANE_LINES entries (one line each), counted."""
    shown = entries[-PANE_LINES:]
    lines = []
    if len(entries) > len(shown):
        lines.append(f"  ... {len(entries) - len(shown)} more pending (/status lists them)")
    for entry in shown:
        lines.append(entry if len(entry) <= PREVIEW_CHARS else entry[: PREVIEW_CHARS - 3] + "...")
    return lines


def one_line(text: str) -> str:
    """A multi-line text shortened to its first line, for the pane."""
    first, _, rest = text.replace("\r\n", "\n").partition("\n")
    more = rest.count("\n") + 1
    return f"{first} (+{more} lines)" if rest else first


def status_parts(st: dict, relay: dict, now: float) -> tuple[list[str], bool]:
    """Status line pieces, most important first, and whether it is an alarm (red)."""
    parts: list[str] = []
    alarm = False
    if st.get("blocked"):
        parts.append("KEY CHANGED: /verify then /trust")
        alarm = True
    if relay.get("retry_at") is not None:
        left = max(1, math.ceil(relay["retry_at"] - now))
        what = "relay connection lost" if relay.get("ever_connected") else "no relay yet"
        parts.append(f"{what}, retrying in {left} s")
    elif relay.get("not_answering"):
        parts.append("relay not answering")
    else:
        parts.append(st["state"])
    if st.get("peer"):
        parts.append(f"{st['peer']} [{st['peer_fingerprint']}]")
    parts.append(f"room {st['room']}")
    if st.get("pending"):
        parts.append(f"{st['pending']} pending")
    if st.get("unconfirmed"):
        parts.append(st["unconfirmed"])
    if relay.get("url"):
        parts.append(relay["url"])
    return parts, alarm
