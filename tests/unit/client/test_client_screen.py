"""How the terminal UI draws messages, marks and the status line (no terminal needed)."""

from __future__ import annotations

import time

from parley_client import screen
from parley_client.events import printable

UTF8 = screen.Marks.for_encoding("utf-8")
ASCII = screen.Marks.for_encoding("ascii")


def test_marks_fall_back_to_ascii():
    assert (UTF8.pending, UTF8.sent, UTF8.delivered) == ("·", "✓", "✓✓")
    assert (ASCII.pending, ASCII.sent, ASCII.delivered) == (".", "+", "++")
    assert screen.Marks.for_encoding("UTF8") == UTF8
    assert screen.Marks.for_encoding(None) == ASCII
    assert all(ch.isascii() for ch in ASCII.pending + ASCII.sent + ASCII.delivered)


def test_sender_time_shown_and_arrival_when_far_apart():
    sent = time.mktime((2026, 1, 2, 6, 9, 50, 0, 0, -1))
    assert screen.stamp(sent, sent + 30) == "[06:09:50]"
    assert screen.stamp(sent, sent + 32 + 60) == "[06:09:50, arrived 06:11:22]"
    assert screen.stamp(sent, sent - 120) == "[06:09:50, arrived 06:07:50]"  # a fast clock


def test_newlines_become_indented_lines_other_controls_stay_escaped():
    lines = screen.message_lines("[12:00:00] bob: ", "one\r\ntwo\nred \x1b[31m\x07\u202e")
    assert lines == [
        "[12:00:00] bob: one",
        "                two",
        "                red \\x1b[31m\\x07\\u202e",
    ]
    assert printable("a\nb") == "a\\x0ab"  # elsewhere (names, notices) newlines stay escaped


def test_own_message_states_on_one_line():
    ts = time.time()
    assert screen.own("alice", "hi", ts, "pending", UTF8)[0].endswith("alice: hi  · pending")
    assert screen.own("alice", "hi", ts, "sent", UTF8, "resent 2x")[0].endswith(
        "alice: hi  ✓ sent resent 2x"
    )
    two = screen.own("alice", "a\nb", ts, "delivered", ASCII)
    assert two[0].endswith("alice: a") and two[1].strip() == "b  ++"


def test_pane_is_bounded_and_counts_the_rest():
    entries = [f"m{i}" for i in range(20)]
    shown = screen.pane(entries)
    assert len(shown) == screen.PANE_LINES + 1
    assert "14 more pending" in shown[0] and shown[-1] == "m19"
    assert screen.one_line("a\nb\nc") == "a (+2 lines)"


def test_status_line_puts_alarms_first():
    st = {"state": "verifying", "room": "r", "peer": "bob", "peer_fingerprint": "ab12"}
    parts, alarm = screen.status_parts({**st, "blocked": True, "pending": 2}, {}, 0)
    assert parts[0] == "KEY CHANGED: /verify then /trust" and alarm
    assert "2 pending" in parts
    relay = {"retry_at": 3.2, "url": "http://r:1", "ever_connected": True}
    parts, alarm = screen.status_parts(st, relay, 0.4)
    assert parts[0] == "relay connection lost, retrying in 3 s" and not alarm
    parts, _ = screen.status_parts(st, {**relay, "ever_connected": False}, 3.1)
    assert parts[0] == "no relay yet, retrying in 1 s"
    parts, _ = screen.status_parts(st, {"not_answering": True}, 0)
    assert parts[0] == "relay not answering"
