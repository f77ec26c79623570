"""session_state.py rule by rule (tests/support/mutate.py found them unpinned, docs/testing.md):
what a stored session may hold, refused with a ParleyError (never a crash), and what it keeps."""

from __future__ import annotations

import json

import pytest

from parley_crypto import identity, prekeys
from parley_crypto.prekey_store import PrekeyStore
from parley_crypto.session import Session
from parley_crypto.session_state import InvalidState
from tests.unit.crypto.conftest import connect

ROOM = "room-1"


def _text(obj):
    """Through JSON text, as the client stores it."""
    return json.loads(json.dumps(obj))


@pytest.fixture
def skipped_state(alice, bob):
    """A receiver's state holding one skipped key, and the identity it belongs to."""
    a, b = connect(alice, bob)
    first, second = a.seal(b"one"), a.seal(b"two")
    assert b.open(second) == b"two"
    state = _text(b.to_state())
    assert len(state["ratchet"]["skipped"]) == 1
    return state, bob, first


@pytest.mark.parametrize("obj", [None, 5, "init", ["init"], [], b"init"])
def test_a_state_that_is_not_an_object_is_refused(alice, obj):
    with pytest.raises(InvalidState, match="must be a JSON object"):
        Session.from_state(obj, alice)


@pytest.mark.parametrize("stamp", [True, False, float("nan"), "0", None])
def test_a_skipped_key_time_must_be_a_number(skipped_state, stamp):
    state, me, _ = skipped_state
    state["ratchet"]["skipped"][0][3] = stamp
    with pytest.raises(InvalidState, match="skipped key time is invalid"):
        Session.from_state(state, me)


def test_a_skipped_key_survives_the_round_trip(skipped_state):
    state, me, first = skipped_state
    assert Session.from_state(state, me).open(first) == b"one"


@pytest.mark.parametrize("pending", [True, False])
def test_an_init_session_round_trips_with_its_pending_flag(alice, bob, pending):
    store = PrekeyStore(bob)
    sa = prekeys.initiate(alice, ROOM, store.bundle(ROOM), None)
    if not pending:
        sb, _ = prekeys.respond(bob, ROOM, store, sa.seal(b"first"))
        assert sa.open(sb.seal(b"answer")) == b"answer"
    restored = Session.from_state(_text(sa.to_state()), alice)
    assert restored.init == sa.init and restored.init_pending is pending
    assert ("init" in restored.seal(b"x")) is pending


@pytest.mark.parametrize(
    "init", [{"payload": {}, "pending": "yes"}, {"payload": {}, "pending": 1},
             {"payload": "x", "pending": True}, {"payload": {}}, "init", 5]
)  # fmt: skip
def test_a_malformed_stored_init_is_refused(alice, bob, init):
    sa, _ = connect(alice, bob)
    state = dict(_text(sa.to_state()), init=init)
    with pytest.raises(InvalidState):
        Session.from_state(state, alice)


@pytest.mark.parametrize("items", [None, 5, {}, "x"])
def test_skipped_keys_must_be_a_list(skipped_state, items):
    state, me, _ = skipped_state
    state["ratchet"]["skipped"] = items
    with pytest.raises(InvalidState, match="skipped key"):
        Session.from_state(state, me)


def test_at_most_max_skipped_total_keys_load(skipped_state):
    state, me, _ = skipped_state
    entry = state["ratchet"]["skipped"][0]
    state["ratchet"]["skipped"] = [[entry[0], n, entry[2], entry[3]] for n in range(2000)]
    assert len(Session.from_state(state, me)._state.MKSKIPPED) == 2000
    state["ratchet"]["skipped"].append([entry[0], 2000, entry[2], entry[3]])
    with pytest.raises(InvalidState, match="skipped keys are invalid"):
        Session.from_state(state, me)


def test_another_identitys_state_is_refused_whichever_sorts_first(alice, bob):
    a, b = connect(alice, bob)
    for state, other in ((a.to_state(), bob), (b.to_state(), alice)):
        with pytest.raises(InvalidState, match="another identity"):
            Session.from_state(_text(state), other)


@pytest.mark.parametrize("field", ["ns", "nr", "pn"])
def test_counters_load_up_to_max_counter_and_no_further(alice, bob, field):
    a, _ = connect(alice, bob)
    state = _text(a.to_state())
    state["ratchet"][field] = int("4294967295")  # MAX_COUNTER, as JSON gives it (a fresh int)
    loaded = Session.from_state(state, alice)._state
    assert getattr(loaded, {"ns": "Ns", "nr": "Nr", "pn": "PN"}[field]) == 2**32 - 1
    state["ratchet"][field] = 2**32
    with pytest.raises(InvalidState, match=f"{field} out of range"):
        Session.from_state(state, alice)


@pytest.mark.parametrize("entry", [None, 5, "abcd", "short", "long"])
def test_a_skipped_entry_must_be_a_list_of_four(skipped_state, entry):
    state, me, _ = skipped_state
    real = state["ratchet"]["skipped"][0]
    shapes = {"short": real[:3], "long": [*real, 0]}
    state["ratchet"]["skipped"] = [shapes.get(entry, entry)]
    with pytest.raises(InvalidState, match="skipped key entry is invalid"):
        Session.from_state(state, me)


def test_a_peer_in_another_group_is_refused_whichever_sorts_first(alice, bob):
    carol = identity.Identity.generate("carol", "ffdhe3072")
    a, _ = connect(alice, bob)
    c, _ = connect(carol, identity.Identity.generate("dave", "ffdhe3072"))
    for state, me in ((a.to_state(), alice), (c.to_state(), carol)):
        state = _text(state)
        other = carol.public_payload() if me is alice else bob.public_payload()
        with pytest.raises(InvalidState, match="another group"):
            Session.from_state(dict(state, peer=other), me)


@pytest.mark.parametrize("kind", ["a", "", "zzz", "parley-prekeys"])
def test_a_state_of_another_type_is_refused_whichever_sorts_first(alice, bob, kind):
    a, _ = connect(alice, bob)
    with pytest.raises(InvalidState, match="not a session"):
        Session.from_state(dict(_text(a.to_state()), type=kind), alice)


@pytest.mark.parametrize("where", ["th", "ratchet.rk", "skipped key"])
def test_a_required_key_may_not_be_null(skipped_state, where):
    """Only the chain keys may be absent; a null root key, transcript hash or skipped message
    key is refused (not loaded into a session that fails later)."""
    state, me, _ = skipped_state
    if where == "th":
        state["th"] = None
    elif where == "ratchet.rk":
        state["ratchet"]["rk"] = None
    else:
        state["ratchet"]["skipped"][0][2] = None
    with pytest.raises(InvalidState):
        Session.from_state(state, me)
