"""The Double Ratchet: either side first, forward secrecy, post-compromise security,
out-of-order delivery, skip bounds without state change, key expiry, bursts, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_crypto import errors, identity, ratchet
from parley_crypto.session import Session
from tests.unit.crypto.conftest import connect

DENIABLE = {"deniable": True}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _pair(alice, bob, **options):
    """(side a, side b) of a fresh deniable session, whatever the transcript order."""
    opts = dict(DENIABLE, **options)
    x, y = connect(alice, bob, a=opts, b=opts)
    return (x, y) if x.role == "a" else (y, x)


def _steal(session, me):
    """An attacker's copy of all of ``session``'s state at this moment."""
    return Session.from_state(json.loads(json.dumps(session.to_state())), me)


def _me(session, alice, bob):
    return bob if session.peer == alice.public else alice


@pytest.mark.parametrize("first", ["a", "b"])
def test_either_side_speaks_first(alice, bob, first):
    a, b = _pair(alice, bob)
    one, two = (a, b) if first == "a" else (b, a)
    for i in range(3):
        assert two.open(one.seal(b"m%d" % i)) == b"m%d" % i
    for i in range(3):
        assert one.open(two.seal(b"r%d" % i)) == b"r%d" % i
    assert two.open(one.seal(b"again")) == b"again"


def test_b_first_uses_its_handshake_key_and_a_steps_at_once(alice, bob):
    a, b = _pair(alice, bob)
    b_first = b.seal(b"from b")
    a_first = a.seal(b"from a")
    assert int(b_first["dh"], 16) == a._state.DHr  # b's handshake ephemeral
    assert int(a_first["dh"], 16) != b._state.DHs.public  # a's fresh ratchet key
    # Crossing in flight: both open, then both step once more.
    assert a.open(b_first) == b"from b" and b.open(a_first) == b"from a"
    reply = b.seal(b"reply")
    assert reply["dh"] != b_first["dh"] and reply["pn"] == 1
    assert a.open(reply) == b"reply"


def test_a_dh_step_per_turn(alice, bob):
    a, b = _pair(alice, bob)
    keys = set()
    for turn in range(6):
        sender, receiver = (a, b) if turn % 2 == 0 else (b, a)
        envelope = sender.seal(b"turn")
        keys.add(envelope["dh"])
        assert receiver.open(envelope) == b"turn"
    assert len(keys) == 6  # a new ratchet key every time the speaker changes


def test_forward_secrecy_state_at_n_opens_nothing_before_n(alice, bob):
    a, b = _pair(alice, bob)
    captured = []
    for i in range(10):
        sender, receiver = (a, b) if i % 3 else (b, a)
        envelope = sender.seal(b"secret %d" % i)
        captured.append((receiver, envelope))
        receiver.open(envelope)
    for receiver, envelope in captured:
        stolen = _steal(receiver, _me(receiver, alice, bob))
        with pytest.raises(errors.InvalidMessage):
            stolen.open(envelope)
    # The stolen state holds no skipped keys: every used key was deleted.
    assert a._state.MKSKIPPED == {} and b._state.MKSKIPPED == {}


@pytest.mark.parametrize("victim", ["a", "b"])
def test_post_compromise_security_after_one_round_trip(alice, bob, victim):
    a, b = _pair(alice, bob)
    for _ in range(2):
        b.open(a.seal(b"warm up"))
        a.open(b.seal(b"warm up"))
    target, peer = (a, b) if victim == "a" else (b, a)
    eve = _steal(target, _me(target, alice, bob))  # all of the target's state at message n
    # Eve stays passive and sees every envelope. Until the round trip completes she reads
    # along: the target's current ratchet key is in the stolen state.
    assert peer.open(target.seal(b"sent with the stolen key")) == b"sent with the stolen key"
    reply = peer.seal(b"reply")
    assert eve.open(reply) == b"reply"
    assert target.open(reply) == b"reply"
    # After the round trip the target's fresh ratchet key locks her out, both ways.
    later = target.seal(b"after the round trip")
    assert peer.open(later) == b"after the round trip"
    answer = peer.seal(b"and the answer")
    assert target.open(answer) == b"and the answer"
    for envelope in (later, answer):
        with pytest.raises(errors.InvalidMessage):
            eve.open(envelope)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_out_of_order_within_bound(alice, bob, data):
    a, b = _pair(alice, bob)
    envelopes = [(a, b, i, a.seal(b"%d" % i)) for i in range(8)]
    envelopes += [(b, a, i, b.seal(b"%d" % i)) for i in range(8, 12)]
    order = data.draw(st.permutations(range(len(envelopes))))
    for index in order:
        _, receiver, i, envelope = envelopes[index]
        assert receiver.open(envelope) == b"%d" % i
    assert a._state.MKSKIPPED == {} and b._state.MKSKIPPED == {}  # each key used, deleted


def _variants(genuine):
    """Rejected variants of one genuine envelope."""
    far = ratchet.MAX_SKIP + 5
    return [
        dict(genuine, n=far),  # a jump past MAX_SKIP in this chain
        dict(genuine, pn=far, n=0),  # a new chain (b has not seen this key) after a huge gap
        dict(genuine, mac=("B" if genuine["mac"][0] == "A" else "A") + genuine["mac"][1:]),
        dict(genuine, ct="A" * len(genuine["ct"])),
        dict(genuine, n=genuine["n"] + 1),
        dict(genuine, pn=genuine["pn"] + 1),
        dict(genuine, dh="4"),  # a valid group element that nobody holds (2^2)
    ]


def test_rejections_change_no_state(alice, bob):
    a, b = _pair(alice, bob)
    b.open(a.seal(b"hello"))
    a.open(b.seal(b"hi"))
    genuine = a.seal(b"genuine")
    spare = a.seal(b"spare")
    before = json.dumps(b.to_state(), sort_keys=True)
    for variant in _variants(genuine):
        with pytest.raises(errors.InvalidMessage):
            b.open(variant)
        assert json.dumps(b.to_state(), sort_keys=True) == before
        assert _steal(b, _me(b, alice, bob)).open(genuine) == b"genuine"  # still opens
    assert b.open(genuine) == b"genuine"
    assert b.open(spare) == b"spare"


def test_message_beyond_the_skip_bound_is_rejected(alice, bob):
    a, b = _pair(alice, bob)
    envelopes = [a.seal(b"%d" % i) for i in range(ratchet.MAX_SKIP + 2)]
    before = json.dumps(b.to_state(), sort_keys=True)
    with pytest.raises(errors.InvalidMessage, match="skips more than"):
        b.open(envelopes[-1])  # would need MAX_SKIP + 1 skipped keys
    assert json.dumps(b.to_state(), sort_keys=True) == before
    assert b.open(envelopes[-2]) == b"%d" % ratchet.MAX_SKIP  # exactly MAX_SKIP: fine
    assert len(b._state.MKSKIPPED) == ratchet.MAX_SKIP
    assert b.open(envelopes[0]) == b"0"


def test_total_skipped_keys_are_bounded_oldest_dropped(alice, bob, monkeypatch):
    monkeypatch.setattr(ratchet, "MAX_SKIPPED_TOTAL", 10)
    a, b = _pair(alice, bob)
    first = [a.seal(b"1-%d" % i) for i in range(8)]
    b.open(first[-1])  # skips 7 keys of chain 1
    a.open(b.seal(b"turn"))
    second = [a.seal(b"2-%d" % i) for i in range(8)]
    b.open(second[-1])  # skips 7 more: 14 > 10, the 4 oldest go
    assert len(b._state.MKSKIPPED) == 10
    for envelope in first[:4]:
        with pytest.raises(errors.InvalidMessage):
            b.open(envelope)
    assert [b.open(e) for e in first[4:7]] == [b"1-%d" % i for i in range(4, 7)]
    assert [b.open(e) for e in second[:7]] == [b"2-%d" % i for i in range(7)]


def test_skipped_keys_expire(alice, bob):
    clock = Clock()
    a, b = _pair(alice, bob, clock=clock)
    envelopes = [a.seal(b"%d" % i) for i in range(3)]
    assert b.open(envelopes[2]) == b"2"
    clock.now += ratchet.SKIPPED_KEY_TTL - 1
    assert b.open(envelopes[0]) == b"0"  # still within the time limit
    clock.now += 2
    with pytest.raises(errors.InvalidMessage):
        b.open(envelopes[1])  # its key was dropped (a rejection itself changes no state)
    assert b.open(a.seal(b"new")) == b"new"
    assert b._state.MKSKIPPED == {}  # the next good message committed the expiry


def test_replay_of_a_skipped_message_is_rejected(alice, bob):
    a, b = _pair(alice, bob)
    envelopes = [a.seal(b"%d" % i) for i in range(3)]
    b.open(envelopes[2])
    assert b.open(envelopes[0]) == b"0"
    for envelope in (envelopes[2], envelopes[0]):
        with pytest.raises(errors.InvalidMessage):
            b.open(envelope)


@pytest.mark.parametrize("sender", ["a", "b"])
def test_ten_thousand_message_burst(alice, bob, sender):
    a, b = _pair(alice, bob)
    one, two = (a, b) if sender == "a" else (b, a)
    for i in range(10_000):
        assert two.open(one.seal(i.to_bytes(4, "big"))) == i.to_bytes(4, "big")
    assert one.seal(b"last")["n"] == 10_000
    assert one.open(two.seal(b"and back")) == b"and back"


def test_state_round_trip_continues_the_conversation(alice, bob):
    a, b = _pair(alice, bob)
    pending = [a.seal(b"%d" % i) for i in range(3)]
    b.open(pending[2])  # two skipped keys in the saved state
    saved = json.loads(json.dumps(b.to_state()))
    me_b = _me(b, alice, bob)
    restored = Session.from_state(saved, me_b)
    assert restored.open(pending[0]) == b"0" and restored.open(pending[1]) == b"1"
    a.open(restored.seal(b"from the restored side"))
    assert restored.safety_number == a.safety_number
    other = _me(a, alice, bob)
    with pytest.raises(errors.ParleyError):
        Session.from_state(saved, other)  # someone else's state


@pytest.mark.parametrize(
    "change",
    [
        {"v": 1},
        {"type": "x"},
        {"role": "c"},
        {"th": "00"},
        {"hash": "md5"},
        {"deniable": 1},
        {"peer": {"v": 2}},
        {"ratchet": {}},
        {"ratchet.rk": "zz"},
        {"ratchet.ns": -1},
        {"ratchet.dhr": "1"},
        {"ratchet.dhs": "0"},
        {"ratchet.skipped": [["4", 0, "00", 0]]},
        {"ratchet.skipped": [["4", 0, "00" * 32, "now"]]},
        {"ratchet.skipped": "x"},
        {"peer": dict(identity.Identity.generate("carol", "ffdhe3072").public_payload())},
    ],
)
def test_corrupt_state_is_refused(alice, bob, change):
    a, _ = _pair(alice, bob)
    state = json.loads(json.dumps(a.to_state()))
    for key, value in change.items():
        if key.startswith("ratchet."):
            state["ratchet"][key.split(".")[1]] = value
        else:
            state[key] = value
    with pytest.raises(errors.ParleyError):
        Session.from_state(state, _me(a, alice, bob))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(st.tuples(st.sampled_from(["a", "b", "deliver"]), st.integers(0, 99)),
                    max_size=40))  # fmt: skip
def test_random_conversations_deliver_everything_once(alice, bob, ops):
    # Any interleaving of sends in both directions and out-of-order deliveries.
    a, b = _pair(alice, bob)
    sides = {"a": (a, b), "b": (b, a)}
    in_flight, count = [], 0
    for op, pick in ops + [("deliver", 0)] * 80:
        if op == "deliver":
            if in_flight:
                receiver, envelope, text = in_flight.pop(pick % len(in_flight))
                assert receiver.open(envelope) == text
                with pytest.raises(errors.InvalidMessage):
                    receiver.open(envelope)
        else:
            sender, receiver = sides[op]
            text = b"%d" % count
            count += 1
            in_flight.append((receiver, sender.seal(text), text))
    assert in_flight == []
