"""The interactive UI in a pseudo-terminal: prompt, status line, one line per message with its
state, multi-line messages and pastes, /verify, the key-change flow on both screens."""

from __future__ import annotations

import re

from tests.support.terminal import NL, SAFETY


def _alice(terminal, relay, room, home, *args):
    alice = terminal(
        "--name", "alice", "--room", room, "--relay", relay.url, "--home", str(home), *args
    )
    alice.expect("alice>")
    return alice


def test_interactive_round_trip_verify_and_exit(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice = _alice(terminal, relay, "tty", tmp_path / "a")
    alice.expect(r"waiting for peer \| room tty")  # the status line
    alice.line("typed before bob arrived")
    # One line, its state inline: pending, in the pane above the prompt.
    alice.expect(r"\[\d\d:\d\d:\d\d\] alice: typed before bob arrived  · pending")

    bob = batch_clients("bob", "tty", relay.url)
    bob_secure = bob.wait_secure()
    assert bob.wait_received(1) == ["typed before bob arrived"]
    alice.expect(r"\[\d\d:\d\d:\d\d\] alice: typed before bob arrived  ✓✓")  # delivered
    alice.expect(r"secure \| bob \[[0-9a-f ]+\] \| room tty")  # redrawn twice a second

    bob.send("hello from bob")
    alice.expect(r"\d\d:\d\d:\d\d\] bob: hello from bob")
    alice.line("hi bob, got it")
    assert bob.wait_received(2)[-1] == "hi bob, got it"
    alice.expect(r"alice: hi bob, got it  ✓✓")

    alice.line("/verify")
    shown = alice.expect(SAFETY)
    assert shown.replace(" ", "") == bob_secure["safety_number"]
    alice.expect("another channel")

    alice.line("/help")
    alice.expect(NL + r"  /trust DIGITS ")  # a list, one command a line, not "\x0a"
    alice.line("/who")
    alice.expect(r"peer: bob \[")

    alice.line("exit")
    assert alice.wait_exit() == 0
    assert bob.wait() == 0
    text = alice.screen_text()
    assert "\\x0a" not in text and "delivered:" not in text  # no second line per message
    assert alice.crash_signs() == []


def test_multi_line_by_alt_enter_and_paste(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice = _alice(terminal, relay, "multi", tmp_path / "a")
    bob = batch_clients("bob", "multi", relay.url)
    bob.wait_secure()
    alice.expect("secure with bob")

    alice.child.send("first line")
    alice.child.send("\x1b\r")  # Alt-Enter: a new line, not a send
    alice.child.send("second line\r")
    assert bob.wait_received(1) == ["first line\nsecond line"]

    alice.paste("pasted one\npasted two\npasted three")
    alice.child.send("\r")
    assert bob.wait_received(2)[-1] == "pasted one\npasted two\npasted three"

    # Received newlines: indented continuation lines; other control characters escaped.
    bob.send("from bob\\nnot a newline")  # a literal backslash-n stays as typed
    alice.expect(r"bob: from bob\\nnot a newline")
    alice.line("/quit")
    assert alice.wait_exit() == 0


def test_received_escape_sequences_stay_escaped(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice = _alice(terminal, relay, "indent", tmp_path / "a")
    carol = batch_clients("carol", "indent", relay.url)
    carol.wait_secure()
    alice.expect("secure with carol")
    carol.send("red \x1b[31malert")  # an escape sequence must not colour alice's screen
    alice.expect(re.escape("carol: red \\x1b[31malert"))
    alice.line("/quit")
    assert alice.wait_exit() == 0


def test_paste_arrives_as_indented_lines_on_the_other_screen(relay_factory, terminal, tmp_path):
    relay = relay_factory()
    alice = _alice(terminal, relay, "two", tmp_path / "a")
    bob = terminal(
        "--name", "bob", "--room", "two", "--relay", relay.url, "--home", str(tmp_path / "b")
    )
    bob.expect("bob>")
    alice.expect("secure with bob")
    bob.expect("secure with alice")
    alice.paste("line one\nline two")
    alice.child.send("\r")
    shown = bob.expect(r"alice: line one" + NL + r"( +)line two")
    indent = re.search(r"( +)line two", shown).group(1)
    assert len(indent) == len("[00:00:00] alice: ")
    alice.expect(r"alice: line one" + NL + r" +line two  ✓✓")
    for t in (alice, bob):
        t.ctrl("d")
        assert t.wait_exit() == 0
        assert t.crash_signs() == []
