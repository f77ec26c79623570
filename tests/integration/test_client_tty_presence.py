"""Presence lines that are true: a relay stop is not "bob left the room", a frozen relay is
"relay not answering", a return is "bob is back", and the same identity twice stops at once
instead of looping."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time

import pexpect

from tests.support.servers import RelayProcess


def _pair(relay, terminal, batch_clients, tmp_path, room, *alice_args):
    alice = terminal(
        "--name", "alice", "--room", room, "--relay", relay.url,
        "--home", str(tmp_path / "alice"), *alice_args,
    )  # fmt: skip
    alice.expect("alice>")
    bob = batch_clients("bob", room, relay.url, home=tmp_path / "bob")
    bob.wait_secure()
    alice.expect("secure with bob")
    return alice, bob


def test_relay_stop_and_restart(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice, bob = _pair(relay, terminal, batch_clients, tmp_path, "stop")
    relay.stop()  # graceful: the relay disconnects both members
    alice.expect(r"relay connection lost \(http://127\.0\.0\.1:\d+\); reconnecting")
    alice.expect(r"relay connection lost, retrying in \d s")  # countdown on the status line
    alice.line("written while the relay was down")
    again = RelayProcess(port=relay.port)
    try:
        again.start()
        alice.expect(r"relay connection back; secure with bob again")
        assert bob.wait_received(1) == ["written while the relay was down"]
        alice.expect(r"alice: written while the relay was down  ✓✓")
        alice.ctrl("d")
        assert alice.wait_exit() == 0
    finally:
        again.cleanup()
    assert "bob left the room" not in alice.screen_text()


def test_frozen_relay_is_not_answering(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice, bob = _pair(relay, terminal, batch_clients, tmp_path, "frozen")
    relay.proc.send_signal(signal.SIGSTOP)
    try:
        alice.line("sent into a frozen relay")
        alice.expect(r"relay not answering \(no reply for 5 s\)")
        alice.expect(r" relay not answering \|")  # the status line
    finally:
        relay.proc.send_signal(signal.SIGCONT)
    alice.expect("relay answering again")
    assert bob.wait_received(1) == ["sent into a frozen relay"]
    alice.expect(r"alice: sent into a frozen relay  ✓✓")
    alice.ctrl("c")
    assert alice.wait_exit() == 0


def test_peer_leaves_and_is_back(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    alice, bob = _pair(relay, terminal, batch_clients, tmp_path, "back")
    for i in range(3):
        alice.line(f"message {i}")
    assert bob.wait_received(3)[-1] == "message 2"
    bob.close_stdin()
    assert bob.wait() == 0
    alice.expect("bob left the room")
    again = batch_clients("bob", "back", relay.url, home=tmp_path / "bob")
    again.wait_secure()
    alice.expect(r"bob is back; secure \(")
    alice.ctrl("d")
    assert alice.wait_exit() == 0
    assert alice.screen_text().count("secure with bob") == 1  # a return is not a new "secure"


def _joins(relay) -> int:
    count = 0
    for line in relay.log().splitlines():
        try:
            count += json.loads(line).get("event") == "joined"
        except ValueError:
            continue
    return count


def test_same_home_twice_is_refused_at_once(relay_factory, terminal, tmp_path):
    relay = relay_factory()
    args = ("--name", "alice", "--room", "twice", "--relay", relay.url, "--home", str(tmp_path))
    first = terminal(*args)
    first.expect("waiting for peer")
    second = terminal(*args)
    second.expect(r"already connected to room 'twice' from another terminal")
    assert second.wait_exit() == 4
    first.line("/quit")
    assert first.wait_exit() == 0
    assert _joins(relay) == 1


def test_same_key_in_two_homes_stops_instead_of_looping(relay_factory, terminal, tmp_path):
    relay = relay_factory()
    home, copy = tmp_path / "alice", tmp_path / "copy"
    args = ("--name", "alice", "--room", "twice", "--relay", relay.url, "--home")
    first = terminal(*args, str(home))
    first.expect("waiting for peer")
    copy.mkdir(mode=0o700)
    shutil.copy2(home / "identity.json", copy / "identity.json")  # the same key elsewhere
    second = terminal(*args, str(copy))
    # Whichever terminal sees its own key first says so and stops (the other may stop too,
    # or keep waiting): nobody flaps in and out of the room.
    stopped = []
    deadline = time.monotonic() + 30
    pattern = r"stopped: (both terminals use the key of 'alice'|you are already connected)"
    while not stopped and time.monotonic() < deadline:
        for term in (first, second):
            with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
                term.expect(pattern, 0.5)
                stopped.append(term)
    assert stopped, first.screen_text()[-2000:] + second.screen_text()[-2000:]
    assert stopped[0].wait_exit() == 4
    time.sleep(3)
    assert _joins(relay) <= 2
    for term in (first, second):
        assert term.crash_signs() == []


def test_failover_to_the_other_relay(two_relays, terminal, batch_clients, tmp_path):
    a, b = two_relays
    alice = terminal(
        "--name", "alice", "--room", "failover", "--relay", f"{a.url},{b.url}",
        "--home", str(tmp_path / "alice"),
    )  # fmt: skip
    alice.expect("alice>")
    bob = batch_clients("bob", "failover", [b.url, a.url], home=tmp_path / "bob")
    bob.wait_secure()
    alice.expect("secure with bob")
    a.stop()  # alice's relay goes away; bob's stays
    alice.expect(rf"relay connection lost \({a.url}\); reconnecting")
    alice.expect(rf"connected to relay {b.url}")
    alice.expect(r"relay connection back; secure with bob again")
    alice.line("after the failover")
    assert bob.wait_received(1) == ["after the failover"]
    alice.expect(r"alice: after the failover  ✓✓")
    alice.ctrl("d")
    assert alice.wait_exit() == 0
    assert "bob left the room" not in alice.screen_text()


def test_same_seat_from_another_terminal_is_refused_by_the_relay(relay_factory, terminal, tmp_path):
    relay = relay_factory()
    home, copy = tmp_path / "alice", tmp_path / "copy"
    args = ("--name", "alice", "--room", "seat", "--relay", relay.url, "--home")
    first = terminal(*args, str(home))
    first.expect("waiting for peer")
    copy.mkdir(mode=0o700)
    for name in ("identity.json", "seats.json"):  # the same key and seat secret elsewhere
        shutil.copy2(home / name, copy / name)
    second = terminal(*args, str(copy))
    second.expect(r"stopped: you are already connected as 'alice' from another terminal")
    assert second.wait_exit() == 4
    first.line("/status")
    first.expect(r"state: waiting for peer")  # the first terminal is undisturbed
    time.sleep(2)
    assert _joins(relay) == 1  # no swapping back and forth
    first.ctrl("d")
    assert first.wait_exit() == 0
