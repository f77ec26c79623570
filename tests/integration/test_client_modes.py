"""Client modes and limits with real `parley` processes and the real relay, checked on the
wire through the tap (tests/support/tap.py): deniable mode, key renewal (the ratchet) with
messages in flight, the input size limit, and more early envelopes than the client keeps."""

from __future__ import annotations

import threading

from parley_client.batch import EXIT_UNDELIVERED
from parley_client.core import MAX_EARLY_ENVELOPES
from parley_client.messages import MAX_BODY_BYTES
from tests.support.servers import wait_for
from tests.support.tap import tapped_relay_fixture  # noqa: F401 - fixture

ENVELOPE = "received_message"


def from_(relay, name: str, event: str = ENVELOPE) -> list:
    return [e for e in relay.tap.seen(event) if e.sender_name == name]


def test_deniable_mode_end_to_end_sends_unsigned_envelopes(tapped_relay, batch_clients):
    relay = tapped_relay()
    alice = batch_clients("alice", "deny", relay.url, "--deniable")
    bob = batch_clients("bob", "deny", relay.url, "--deniable")
    alice.send("nobody can prove I said this")
    bob.send("nor this")
    assert bob.wait_received(1) == ["nobody can prove I said this"]
    assert alice.wait_received(1) == ["nor this"]
    assert alice.wait() == 0 and bob.wait() == 0
    sa, sb = alice.of("secure")[0], bob.of("secure")[0]
    assert sa["safety_number"] == sb["safety_number"]
    for name in ("alice", "bob"):
        offers = from_(relay, name, "DEFF_HELLMAN_PK_BC") + from_(relay, name, "DIFF_HELLMAN_PK_BC")
        assert offers and all(o.data.get("deniable") is True for o in offers), offers
        envelopes = from_(relay, name)
        assert envelopes and all(env.data.get("sig") is None for env in envelopes), envelopes


def test_signed_mode_envelopes_carry_a_signature(tapped_relay, batch_clients):
    """The control for the test above: without --deniable every envelope is signed."""
    relay = tapped_relay()
    alice = batch_clients("alice", "sign", relay.url)
    bob = batch_clients("bob", "sign", relay.url)
    alice.send("signed")
    assert bob.wait_received(1) == ["signed"]
    assert alice.wait() == 0 and bob.wait() == 0
    envelopes = from_(relay, "alice")
    assert envelopes and all(env.data.get("sig") for env in envelopes)


def test_ratchet_renews_keys_with_messages_in_flight_and_loses_nothing(tapped_relay, batch_clients):
    """Protocol v2 renews keys every turn (the DH ratchet; there is no rekey option).
    Both sides fire bursts at once, so turns overlap messages in flight:
    everything arrives once and in order, and each side's ratchet key really changed."""
    relay = tapped_relay()
    alice = batch_clients("alice", "turns", relay.url)
    bob = batch_clients("bob", "turns", relay.url)
    said_a, said_b = [], []
    for turn in range(4):
        a_burst = [f"a{turn}.{i}" for i in range(4)]
        b_burst = [f"b{turn}.{i}" for i in range(4)]
        alice.send(*a_burst)
        bob.send(*b_burst)
        said_a += a_burst
        said_b += b_burst
        bob.wait_received(len(said_a), timeout=60)
        alice.wait_received(len(said_b), timeout=60)
    assert alice.wait(60) == 0, alice.stderr()
    assert bob.wait(60) == 0, bob.stderr()
    assert alice.received() == said_b and bob.received() == said_a
    for name in ("alice", "bob"):
        ratchet_keys = {e.data["dh"] for e in from_(relay, name)}
        assert len(ratchet_keys) >= 3, (name, len(ratchet_keys))  # renewed turn after turn
    numbers = {e["safety_number"] for e in alice.of("secure") + bob.of("secure")}
    assert len(numbers) == 1  # same identities throughout
    for client in (alice, bob):
        assert "Traceback" not in client.stderr()


def test_oversized_input_line_is_refused_with_one_line_and_nothing_sent(
    tapped_relay, batch_clients
):
    relay = tapped_relay()
    alice = batch_clients("alice", "big", relay.url)
    bob = batch_clients("bob", "big", relay.url)
    alice.wait_secure()
    alice.send("x" * (MAX_BODY_BYTES + 1), "fits")
    assert bob.wait_received(1) == ["fits"]
    # The refused line counts as undelivered (batch.py): exit 1, not a silent 0.
    assert alice.wait() == EXIT_UNDELIVERED and bob.wait() == 0
    errors = [e["message"] for e in alice.of("error")]
    assert len(errors) == 1 and str(MAX_BODY_BYTES) in errors[0], errors
    assert bob.received() == ["fits"]
    sizes = [len(repr(e.data)) for e in from_(relay, "alice")]
    assert sizes and max(sizes) < MAX_BODY_BYTES  # the big line never left alice


def test_more_early_envelopes_than_kept_are_all_shown_once_in_order(tapped_relay, batch_clients):
    """bob is secure before alice (the tap holds bob's KEY_CONFIRM for alice) and sends more
    envelopes than alice keeps before her session exists; the ones she dropped are re-sent,
    so she shows everything, once and in order."""
    relay = tapped_relay()
    count = MAX_EARLY_ENVELOPES + 16
    held: list = []
    release = threading.Event()

    def hold_bobs_confirm(e):
        if e.event == "KEY_CONFIRM_BC" and e.sender_name == "bob" and not release.is_set():
            held.append(e)
            return []
        return None

    relay.tap.policy = hold_bobs_confirm
    said = [f"early {i}" for i in range(count)]
    alice = batch_clients("alice", "early", relay.url, "--resend-after", "2")
    bob = batch_clients("bob", "early", relay.url, "--resend-after", "2")
    bob.wait_secure()
    bob.send(*said)
    wait_for(lambda: len(from_(relay, "bob")) >= count, timeout=60, what="bob's envelopes")
    assert not alice.of("secure")  # they all arrived before her session
    release.set()
    relay.tap.inject(held[0].replaced(held[0].data))
    assert alice.wait_received(count, timeout=120) == said
    assert bob.wait(120) == 0, bob.stderr()
    assert alice.wait(60) == 0, alice.stderr()
    assert alice.received() == said
