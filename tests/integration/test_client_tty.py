"""The interactive UI in a pseudo-terminal: prompt, status line, one line per message with its
state, multi-line messages and pastes, /verify, the key-change flow on both screens."""

from __future__ import annotations

import re

from tests.support.terminal import NL, SAFETY

SEAT_TTL = 1  # seconds a left member's seat stays reserved on the test relay


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


def test_key_change_flow_on_both_screens(relay_factory, terminal, batch_clients, tmp_path):
    # The old laptop's seat is kept for its secret (PARLEY_SEAT_TTL); a short one lets the
    # new laptop, with a new home and so a new seat secret, take it.
    relay = relay_factory(env={"PARLEY_SEAT_TTL": str(SEAT_TTL)})
    alice = _alice(terminal, relay, "trust", tmp_path / "a")
    old_bob = batch_clients("bob", "trust", relay.url, home=tmp_path / "bob-old")
    old_bob.wait_secure()
    alice.expect("pinned the key of bob")
    assert old_bob.wait() == 0
    alice.expect("bob left the room")

    # "bob" comes back with another key (a new laptop, or someone in the middle)
    bob = terminal(
        "--name", "bob", "--room", "trust", "--relay", relay.url,
        "--home", str(tmp_path / "bob-new"), "--resend-after", "1",
    )  # fmt: skip
    bob.expect("bob>")
    alice.expect(r"the key of bob has CHANGED")
    alice.expect(r"\x1b\[[0-9;]*m KEY CHANGED: /verify then /trust")  # first, and styled
    alice.line("are you really bob?")
    alice.expect("sending is blocked until you /trust")

    # The changed side is told why nothing is receipted, once, not a line per resend.
    bob.line("it is me, new laptop")
    # (prompt_toolkit redraws only what changed, so the pane's line arrives in pieces)
    bob.expect_all(
        r"alice has not accepted your key yet: they must compare safety numbers",
        r"\| alice has not accepted your key \|",  # on the status line meanwhile
        r"✓ sent",  # the relay took it: the pending line's mark changes in place
        r"resent \dx",  # resends are counted on the same line
    )

    alice.line("/trust")
    alice.expect(r"then type /trust and its last 5 digits")
    alice.line("/trust 00000")
    alice.expect(r"key NOT trusted")
    alice.line("/verify")
    number = alice.expect(SAFETY).replace(" ", "")
    alice.line("/trust yes")
    alice.expect("now trusting the new key of bob")
    alice.line("/forward")  # what alice queued for bob's old key goes to the new one
    # withheld until trusted, then resent; and the forwarded one goes out
    alice.expect_all(r"bob: it is me, new laptop", r"alice: are you really bob\?  ✓✓")
    bob.expect_all(r"alice: are you really bob\?", r"bob: it is me, new laptop  ✓✓")
    bob.line("/verify")
    assert bob.expect(SAFETY).replace(" ", "") == number
    for t in (alice, bob):
        t.line("/quit")
        assert t.wait_exit() == 0
        assert t.crash_signs() == []
    assert bob.screen_text().count("alice has not accepted your key yet") == 1
    assert "no receipt from alice yet" not in bob.screen_text()  # the guess is not needed
    assert "resending" not in bob.screen_text()  # no line per resend


def test_scripted_mode_accepts_a_new_key_only_when_asked(relay_factory, batch_clients, tmp_path):
    # The old laptop's seat is kept for its secret (PARLEY_SEAT_TTL); a short one lets the
    # new laptop, with a new home and so a new seat secret, take it.
    relay = relay_factory(env={"PARLEY_SEAT_TTL": str(SEAT_TTL)})
    alice_home = tmp_path / "alice"
    first = batch_clients("alice", "acc", relay.url, home=alice_home)
    old_bob = batch_clients("bob", "acc", relay.url, home=tmp_path / "bob-old")
    first.wait_secure()
    assert old_bob.wait() == 0 and first.wait() == 0

    refused = batch_clients("alice", "acc", relay.url, home=alice_home)
    new_bob = batch_clients("bob", "acc", relay.url, home=tmp_path / "bob-new")
    refused.send("not for a changed key")
    assert refused.wait() == 3  # the peer's key changed: nothing sent
    new_bob.stop()

    asked = batch_clients("alice", "acc", relay.url, "--accept-new-key", "bob", home=alice_home)
    new_bob = batch_clients("bob", "acc", relay.url, home=tmp_path / "bob-new")
    asked.send("accepted on purpose")
    # What the refused run left queued (the outbox is kept on disk) goes along, in order.
    assert new_bob.wait_received(2) == ["not for a changed key", "accepted on purpose"]
    assert asked.wait() == 0
    assert "accepted the new key of bob (--accept-new-key)" in asked.stderr()
