"""The soak test's checker: did every receiver show every message exactly once, in order?

Pure functions over what the harness recorded, so the checker itself is unit-tested
(`test_checker.py`) against made-up losses, duplicates and reorderings.

Message texts are ``SENDER#SEQ@SENT`` (``SENT`` = the harness's wall clock when it wrote the
line to the sender's stdin), so a receiver's output alone says who sent what, in which order
and when.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

TEXT_RE = re.compile(r"^(?P<sender>[A-Za-z0-9_.-]+)#(?P<seq>\d+)@(?P<sent>\d+\.\d+)$")


def make_text(sender: str, seq: int, sent: float) -> str:
    """The line the harness feeds a sender for its message number `seq`."""
    return f"{sender}#{seq:06d}@{sent:.3f}"


@dataclass(frozen=True)
class Shown:
    """One message as a receiver showed it: parsed text plus when the harness read it."""

    sender: str
    seq: int
    sent: float
    shown_at: float


def parse_shown(text: str, shown_at: float) -> Shown | None:
    """Parse a received text; None if it is not a soak message (that is itself a failure)."""
    m = TEXT_RE.match(text)
    if m is None:
        return None
    return Shown(m["sender"], int(m["seq"]), float(m["sent"]), shown_at)


@dataclass
class StreamReport:
    """One direction of one pair: what `sender` sent and what `receiver` showed."""

    sender: str
    receiver: str
    sent: int = 0
    delivered: int = 0  # distinct sequence numbers shown
    duplicated: int = 0  # extra showings of an already shown number
    lost: int = 0  # sent but never shown
    out_of_order: int = 0  # shown after a higher number from the same sender
    foreign: int = 0  # shown but never sent (or sent by someone else to someone else)
    max_delay: float = 0.0
    delays: list[float] = field(default_factory=list, repr=False)


def check_stream(sender: str, receiver: str, sent: int, shown: Iterable[Shown]) -> StreamReport:
    """Compare the numbers 1..`sent` with what the receiver showed from `sender`, in order."""
    report = StreamReport(sender, receiver, sent=sent)
    seen: set[int] = set()
    highest = 0
    for item in shown:
        if item.sender != sender or not 1 <= item.seq <= sent:
            report.foreign += 1
            continue
        if item.seq in seen:
            report.duplicated += 1
            continue
        seen.add(item.seq)
        if item.seq < highest:
            report.out_of_order += 1
        highest = max(highest, item.seq)
        delay = max(0.0, item.shown_at - item.sent)
        report.delays.append(delay)
    report.delivered = len(seen)
    report.lost = sent - len(seen)
    report.max_delay = max(report.delays, default=0.0)
    return report


@dataclass
class SoakReport:
    """Totals over every stream, as printed by the test and written to JSON for the docs."""

    sent: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    out_of_order: int = 0
    foreign: int = 0
    unparsable: int = 0
    max_delay_s: float = 0.0
    p50_delay_s: float = 0.0
    p99_delay_s: float = 0.0
    streams: list[dict] = field(default_factory=list)

    @property
    def perfect(self) -> bool:
        """Every message shown exactly once, in order, and nothing else shown."""
        return (
            self.delivered == self.sent
            and not (self.duplicated or self.lost or self.out_of_order)
            and not (self.foreign or self.unparsable)
        )

    def summary(self) -> str:
        return (
            f"sent={self.sent} delivered={self.delivered} duplicated={self.duplicated} "
            f"lost={self.lost} out_of_order={self.out_of_order} foreign={self.foreign} "
            f"unparsable={self.unparsable} max_delay={self.max_delay_s:.2f}s "
            f"p50={self.p50_delay_s:.3f}s p99={self.p99_delay_s:.3f}s"
        )

    def as_dict(self) -> dict:
        data = asdict(self)
        data["perfect"] = self.perfect
        return data


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def summarize(streams: list[StreamReport], unparsable: int = 0) -> SoakReport:
    """Add up the streams; delays are pooled for the percentiles."""
    report = SoakReport(unparsable=unparsable)
    delays: list[float] = []
    for s in streams:
        report.sent += s.sent
        report.delivered += s.delivered
        report.duplicated += s.duplicated
        report.lost += s.lost
        report.out_of_order += s.out_of_order
        report.foreign += s.foreign
        delays += s.delays
        row = asdict(s)
        del row["delays"]
        row["max_delay"] = round(row["max_delay"], 3)
        report.streams.append(row)
    report.max_delay_s = round(max(delays, default=0.0), 3)
    report.p50_delay_s = round(percentile(delays, 50), 4)
    report.p99_delay_s = round(percentile(delays, 99), 4)
    return report


def assert_zero_loss(report: SoakReport, figures: dict, problems: list, tracebacks: int) -> None:
    """The verdict both soaks share: nothing lost, duplicated or reordered, no client problem,
    no relay traceback (the failing streams are named in the message)."""
    bad = [s for s in report.streams if s["lost"] or s["duplicated"] or s["out_of_order"]]
    assert report.duplicated == 0, bad
    assert report.lost == 0, bad
    assert report.out_of_order == 0, bad
    assert report.perfect, figures
    assert not problems, problems
    assert tracebacks == 0
