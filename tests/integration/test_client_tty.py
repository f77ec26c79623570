"""The interactive UI in a pseudo-terminal: prompt, status line, round trip, /verify, exit."""

from __future__ import annotations

import pexpect

from tests.support.terminal import terminal_fixture  # noqa: F401 - fixture

SAFETY = r"(\d{5} ){11}\d{5}"


def test_interactive_round_trip_verify_and_exit(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice = terminal(
        "--name", "alice", "--room", "tty", "--relay", relay.url, "--home", str(tmp_path / "a")
    )
    alice.expect("alice>")
    alice.expect(r"waiting for peer \| room tty")  # the status line
    alice.line("typed before bob arrived")
    alice.expect(r"alice: typed before bob arrived\s+\(pending")

    bob = batch_clients("bob", "tty", relay.url)
    bob_secure = bob.wait_secure()
    assert bob.wait_received(1) == ["typed before bob arrived"]
    alice.expect("delivered: typed before bob arrived")
    alice.expect(r"secure \| room tty \| bob \[[0-9a-f ]+\]")  # redrawn every second

    bob.send("hello from bob")
    alice.expect(r"\d\d:\d\d:\d\d\] bob: hello from bob")
    alice.line("hi bob, got it")
    assert bob.wait_received(2)[-1] == "hi bob, got it"

    alice.line("/verify")
    shown = alice.expect(SAFETY)
    assert shown.replace(" ", "") == bob_secure["safety_number"]
    alice.expect("another channel")

    alice.line("/help")
    alice.expect("/trust")
    alice.line("/who")
    alice.expect(r"peer: bob \[")

    alice.line("exit")
    alice.expect(pexpect.EOF)
    alice.child.close()
    assert alice.child.exitstatus == 0
    assert bob.wait() == 0


def test_changed_key_warning_blocks_until_trust(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice = terminal(
        "--name", "alice", "--room", "trust", "--relay", relay.url, "--home", str(tmp_path / "a")
    )
    alice.expect("alice>")
    first = batch_clients("bob", "trust", relay.url, home=tmp_path / "bob-old")
    first.wait_secure()
    alice.expect("pinned the key of bob")
    assert first.wait() == 0
    alice.expect("bob left the room")

    # "bob" comes back with another key (a new device, or someone in the middle)
    second = batch_clients("bob", "trust", relay.url, home=tmp_path / "bob-new")
    alice.expect(r"the key of bob has CHANGED")
    alice.expect(r"KEY CHANGED: /verify then /trust")  # the status line
    alice.line("are you really bob?")
    alice.expect("sending is blocked until you /trust")
    alice.line("/verify")
    shown = alice.expect(SAFETY).replace(" ", "")
    assert shown == second.wait_secure()["safety_number"]
    assert second.received() == []
    alice.line("/trust")
    alice.expect("now trusting the new key of bob")
    # typed for the old key: the new one gets it only on an explicit /forward
    alice.expect("/forward sends them to the new key")
    assert second.received() == []
    alice.line("/forward")
    assert second.wait_received(1) == ["are you really bob?"]
    alice.expect("delivered: are you really bob?")
    alice.line("/quit")
    alice.expect(pexpect.EOF)
    alice.child.close()
    assert alice.child.exitstatus == 0
