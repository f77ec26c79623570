"""A hostile relay: man in the middle, replayed and reordered envelopes."""

from __future__ import annotations

import pytest

from tests.support.clients import FakeRelay


@pytest.fixture
def fake_relay():
    relays: list[FakeRelay] = []

    def start(mode: str, room: str) -> FakeRelay:
        relay = FakeRelay(mode, room)
        relays.append(relay)
        return relay.start()

    try:
        yield start
    finally:
        for relay in relays:
            relay.cleanup()


def test_mitm_with_pinned_keys_is_refused_and_safety_numbers_differ(
    relay_factory,
    fake_relay,
    batch_clients,
    tmp_path,
):
    honest = relay_factory()
    homes = {n: tmp_path / n for n in ("alice", "bob")}
    alice = batch_clients("alice", "duo", honest.url, home=homes["alice"])
    bob = batch_clients("bob", "duo", honest.url, home=homes["bob"])
    alice.send("hello over the honest relay")
    bob.wait_received(1)
    assert alice.wait() == 0 and bob.wait() == 0
    honest_number = alice.of("secure")[0]["safety_number"]

    mitm = fake_relay("mitm", "duo")
    alice = batch_clients("alice", "duo", mitm.url, home=homes["alice"])
    bob = batch_clients("bob", "duo", mitm.url, home=homes["bob"])
    alice.send("wire the money to account 42")
    assert alice.wait(60) == 3, alice.stderr()
    assert bob.wait(60) == 3, bob.stderr()
    for client in (alice, bob):
        err = client.stderr()
        assert "has CHANGED" in err and "intercepting" in err, err
        assert "Traceback" not in err
        assert client.of("key_changed")
    # the user comparing numbers would see the difference
    na = alice.of("key_changed")[0]["safety_number"]
    nb = bob.of("key_changed")[0]["safety_number"]
    assert na != nb and honest_number not in (na, nb)
    # and nothing was sent for the man in the middle to read
    assert "mitm read" not in mitm.log()
    assert "wire the money" not in mitm.log()


def test_mitm_on_first_use_is_visible_in_the_safety_numbers(fake_relay, batch_clients):
    mitm = fake_relay("mitm", "first")
    alice = batch_clients("alice", "first", mitm.url)
    bob = batch_clients("bob", "first", mitm.url)
    sa, sb = alice.wait_secure(), bob.wait_secure()
    # with nothing pinned the attack "works", which is exactly what /verify is for
    assert sa["safety_number"] != sb["safety_number"]
    alice.send("hello")
    assert bob.wait_received(1) == ["hello"]
    assert "mitm read" in mitm.log()
    assert alice.wait() == 0 and bob.wait() == 0


def test_replayed_envelopes_are_rejected_reported_and_never_shown_twice(fake_relay, batch_clients):
    relay = fake_relay("replay", "echo")
    alice = batch_clients("alice", "echo", relay.url)
    bob = batch_clients("bob", "echo", relay.url)
    said = ["one", "two", "three"]
    alice.send(*said)
    assert bob.wait_received(3) == said
    assert alice.wait() == 0, alice.stderr()
    assert bob.wait() == 0, bob.stderr()
    assert bob.received() == said  # still exactly once each
    rejected = [e for e in bob.of("error") if "replayed or reordered" in e["message"]]
    assert len(rejected) >= 3
    assert "replayed an envelope" in relay.log()


def test_reordered_envelopes_are_rejected_then_resent_and_shown_once(fake_relay, batch_clients):
    relay = fake_relay("reorder", "swap")
    alice = batch_clients("alice", "swap", relay.url, "--resend-after", "1")
    bob = batch_clients("bob", "swap", relay.url, "--resend-after", "1")
    said = [f"message {i}" for i in range(6)]
    alice.send(*said)
    bob.wait_received(6, timeout=45)
    assert alice.wait() == 0, alice.stderr()
    assert bob.wait() == 0, bob.stderr()
    assert bob.received() == said  # all, once each, and in the order they were sent
    assert any("replayed or reordered" in e["message"] for e in bob.of("error"))
    assert "reordered two envelopes" in relay.log()


def test_original_unauthenticated_client_gets_a_clear_refusal(relay_factory, batch_clients):
    """The original design's client (no auth, decimal-string keys) through the real relay."""
    import socketio

    relay = relay_factory()
    parley = batch_clients("alice", "lobby", relay.url)
    legacy = socketio.Client(reconnection=False)
    legacy.on("KEY_EXCHANGE", lambda *_: legacy.emit("ELGAMAL_PK", "55"))
    legacy.on(
        "ELGAMAL_PK_BC",
        lambda *_: legacy.emit("DIFF_HELLMAN_PK", '{"diff_public_key": 5, "s1": 1, "s2": 2}'),
    )
    legacy.connect(relay.url)  # no auth: room lobby, name anonymous
    try:
        parley.send("is anyone there?")
        assert parley.wait(30) == 3
    finally:
        legacy.disconnect()
    err = parley.stderr()
    assert "original unauthenticated protocol" in err and "Traceback" not in err
    assert parley.of("refused")
