"""A conversation belongs to the room's contact (a key), whoever takes the seat and whatever name
it sends. Real `parley` processes on the real relay; the hostile relay is a tap on it."""

from __future__ import annotations

import time

from parley_client.batch import EXIT_ABSENT, EXIT_VERIFY
from tests.support.tap import tapped_relay_fixture  # noqa: F401 - fixture

# Seats expire a second after their member left: the relay lets anyone take a free seat, as a
# hostile relay would (an honest one keeps Bob's seat for PARLEY_SEAT_TTL, 7 days).
LAX_SEATS = {"PARLEY_SEAT_TTL": "1"}
SEAT_FREE = 2.0  # seconds to wait after a member left


def _bob_was_here(batch_clients, relay, room: str):
    """Alice and Bob pin each other with one text each way, then Bob leaves; returns Alice."""
    alice = batch_clients("alice", room, relay.url)
    bob = batch_clients("bob", room, relay.url)
    alice.send("hello bob")
    bob.send("hello alice")
    assert bob.wait_received(1) == ["hello bob"]
    assert alice.wait_received(1) == ["hello alice"]
    assert bob.wait() == 0, bob.stderr()
    alice.wait_event(
        lambda e: e.get("event") == "info" and "left the room" in e.get("message", ""),
        what="bob left",
    )
    time.sleep(SEAT_FREE)
    return alice


def test_a_stranger_joining_after_bob_left_gets_nothing_and_alice_is_told(
    relay_factory, batch_clients, tmp_path
):
    relay = relay_factory(env=LAX_SEATS)
    alice = _bob_was_here(batch_clients, relay, "door")
    alice.send("bob, the door code is 4711")
    alice.wait_event(lambda e: e.get("event") == "queued" and "4711" in e["text"])
    mallory = batch_clients("mallory", "door", relay.url)
    status = alice.wait(60)
    assert status in (EXIT_VERIFY, EXIT_ABSENT), alice.stderr()  # never 0, "all delivered"
    err = alice.stderr()
    assert "1 message(s) wait for bob" in err, err
    if status == EXIT_VERIFY:  # mallory got in: a key change, under another name
        assert "the key of bob has CHANGED" in err and "'mallory'" in err
    mallory.close_stdin()
    mallory.proc.wait(30)
    assert mallory.received() == []
    assert not [e for e in alice.of("delivered") if "4711" in e["text"]]
    time.sleep(SEAT_FREE)
    # the text stays queued for bob: his next visit gets it
    alice = batch_clients("alice", "door", relay.url, home=tmp_path / "alice")
    bob = batch_clients("bob", "door", relay.url, home=tmp_path / "bob")
    assert bob.wait_received(1) == ["bob, the door code is 4711"]
    assert alice.wait() == 0, alice.stderr()


def test_lookalike_name_rotation_after_pinning_is_warned_and_blocked(
    relay_factory, batch_clients, tmp_path
):
    relay = relay_factory(env=LAX_SEATS)
    alice = _bob_was_here(batch_clients, relay, "spoof")
    alice.send("for bob's eyes only")
    spoof = batch_clients("b\u043eb", "spoof", relay.url, home=tmp_path / "spoof")  # Cyrillic o
    assert alice.wait(60) == EXIT_VERIFY, alice.stderr()
    warning = alice.of("key_changed")[0]
    assert warning["lookalike"] == "bob" and warning["claimed_name"] == "b\u043eb"
    assert "looks like your contact 'bob'" in warning["message"]
    secure = alice.of("secure")[-1]
    assert secure["blocked"] and "unknown key" in secure["peer"]  # never shown as bob
    spoof.close_stdin()
    spoof.proc.wait(30)
    assert spoof.received() == []


def test_held_back_impostor_envelope_is_never_shown_as_bobs(
    tapped_relay, terminal, batch_clients, tmp_path
):
    relay = tapped_relay(env=LAX_SEATS)
    held: list = []
    holding = {"on": False}

    def policy(e):
        if holding["on"] and e.event == "received_message":
            held.append(e)
            return []  # the relay keeps the impostor's envelopes for later
        return None

    relay.tap.policy = policy
    alice = terminal(
        "--name", "alice", "--room", "held", "--relay", relay.url, "--home", str(tmp_path / "a")
    )
    alice.expect("alice>")
    bob = batch_clients("bob", "held", relay.url, home=tmp_path / "bob")
    bob.send("the real bob")
    alice.expect("bob: the real bob")
    assert bob.wait() == 0
    alice.expect("bob left the room")
    time.sleep(SEAT_FREE)

    holding["on"] = True
    impostor = batch_clients("bob", "held", relay.url, "--timeout", "3", home=tmp_path / "imp")
    alice.expect("the key of bob has CHANGED")
    impostor.send("it is me, bob: send the door code")
    deadline = time.monotonic() + 20
    while not held and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held, "the tap held no envelope of the impostor"
    impostor.wait(60)
    holding["on"] = False
    alice.expect("left the room")
    time.sleep(SEAT_FREE)

    bob = batch_clients("bob", "held", relay.url, home=tmp_path / "bob")
    bob.wait_secure()
    alice.expect(r"bob is back|secure with bob")
    target = held[0].recipients[0]["sid"]
    for e in held:
        relay.tap.inject({"event": e.event, "data": e.data, "route": {"to": target}})
    alice.expect(r"rejected message|bob: it is me")  # the old client showed it as bob's
    alice.line("/status")
    alice.expect("state: secure")
    shown = alice.screen_text()
    assert "send the door code" not in shown, shown[-2000:]
    alice.line("/quit")


def test_changed_key_blocks_until_trust_and_old_texts_need_forward(
    relay_factory, terminal, batch_clients, tmp_path
):
    relay = relay_factory(env=LAX_SEATS)
    alice = terminal(
        "--name", "alice", "--room", "trust", "--relay", relay.url, "--home", str(tmp_path / "a")
    )
    alice.expect("alice>")
    first = batch_clients("bob", "trust", relay.url, home=tmp_path / "bob-old")
    first.wait_secure()
    alice.expect("pinned the key of bob")
    assert first.wait() == 0
    alice.expect("bob left the room")
    time.sleep(SEAT_FREE)

    # "bob" comes back with another key (a new device, or someone in the middle)
    second = batch_clients("bob", "trust", relay.url, home=tmp_path / "bob-new")
    alice.expect("the key of bob has CHANGED")
    alice.line("are you really bob?")
    alice.expect("sending is blocked until you /trust")
    alice.line("/verify")
    alice.expect("/trust yes")
    assert second.received() == []
    alice.line("/trust yes")
    alice.expect("now trusting the new key of bob")
    # typed for the old key: the new one gets it only on an explicit /forward naming both
    alice.expect("/forward sends them to the new key")
    time.sleep(1)
    assert second.received() == []
    alice.line("/forward")
    assert second.wait_received(1) == ["are you really bob?"]
    alice.line("/quit")
    assert alice.wait_exit() == 0
