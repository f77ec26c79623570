"""Session rules the mutation run found unpinned (tests/support/mutate.py, docs/testing.md):
an envelope carrying another session's initial message is refused and changes nothing."""

from __future__ import annotations

import json

import pytest

from parley_crypto import padding, prekeys, ratchet
from parley_crypto.errors import InvalidMessage
from parley_crypto.prekey_store import PrekeyStore
from parley_crypto.session import Session
from tests.unit.crypto.conftest import connect

ROOM = "room-1"


def _first_contact(alice, bob):
    store = PrekeyStore(bob)
    bundle, one_time = store.bundle(ROOM), store.new_one_time(1)
    return prekeys.initiate(alice, ROOM, bundle, one_time[0]), store


def test_an_envelope_with_another_sessions_init_is_refused_and_changes_nothing(alice, bob):
    sa, store = _first_contact(alice, bob)
    sb, _ = prekeys.respond(bob, ROOM, store, sa.seal(b"first"))
    genuine = sa.seal(b"second")  # still carries sa's init: the peer has not answered
    other, _ = _first_contact(alice, bob)
    before = json.dumps(sb.to_state(), sort_keys=True)
    for init in (other.seal(b"x")["init"], {}, None, "init", 5):
        with pytest.raises(InvalidMessage, match="another session"):
            sb.open(dict(genuine, init=init))
        assert json.dumps(sb.to_state(), sort_keys=True) == before
    assert sb.open(genuine) == b"second"


def test_a_live_session_refuses_any_init(alice, bob):
    sa, sb = connect(alice, bob)
    assert sa.init is None and not sa.init_pending and "init" not in sa.seal(b"x")
    genuine = sa.seal(b"hello")
    first, _ = _first_contact(alice, bob)
    with pytest.raises(InvalidMessage, match="another session"):
        sb.open(dict(genuine, init=first.seal(b"x")["init"]))
    assert sb.open(genuine) == b"hello"


def test_needs_rekey_is_a_false_property(alice, bob):
    """Older callers ask `needs_rekey`; the ratchet renews keys itself, so it is always False
    (a method object in its place would read as True and trigger rekeys forever)."""
    sa, _ = connect(alice, bob)
    assert sa.needs_rekey is False


@pytest.mark.parametrize("field", ["r", "s"])
def test_a_signature_at_the_group_bound_is_refused_as_out_of_range(alice, bob, field):
    """r = p and s = q are refused when parsing, before any MAC or signature arithmetic."""
    sa, sb = connect(alice, bob)
    genuine = sa.seal(b"hello")
    group = sb.peer.verify_key.group
    bound = group.p if field == "r" else group.q
    forged = dict(genuine, sig=dict(genuine["sig"], **{field: format(bound, "x")}))
    with pytest.raises(InvalidMessage, match="out of range"):
        sb.open(forged)
    assert sb.open(genuine) == b"hello"


@pytest.mark.parametrize("sig", [("p+1", "1"), ("1", "q+1"), ("1", "p-1")])
def test_a_signature_beyond_the_group_bound_is_refused_as_out_of_range(alice, bob, sig):
    """Not only the bound itself: every r > p and s > q (that fit p's hex digits) is refused
    when parsing, not left to the MAC or the verifier."""
    sa, sb = connect(alice, bob)
    genuine = sa.seal(b"hello")
    group = sb.peer.verify_key.group
    names = {"p+1": group.p + 1, "q+1": group.q + 1, "p-1": group.p - 1, "1": 1}
    r, s = (format(names[v], "x") for v in sig)
    with pytest.raises(InvalidMessage, match="out of range"):
        sb.open(dict(genuine, sig={"r": r, "s": s}))
    assert sb.open(genuine) == b"hello"


@pytest.mark.parametrize("field", ["pn", "n"])
def test_a_negative_counter_is_refused_when_parsing(alice, bob, field):
    sa, sb = connect(alice, bob)
    genuine = sa.seal(b"hello")
    with pytest.raises(InvalidMessage, match=f"envelope {field} must be an integer 0"):
        sb.open(dict(genuine, **{field: -1}))
    assert sb.open(genuine) == b"hello"


def test_a_previous_chain_of_max_counter_messages_is_accepted(alice, bob):
    """pn = MAX_COUNTER is honest: a sender whose chain sealed its last number (MAX_COUNTER - 1)
    has sent MAX_COUNTER messages on it, and its next chain announces that count."""
    x, y = connect(alice, bob)
    assert y.open(x.seal(b"one")) == b"one"
    # both sides jump to the end of the chain (the chain keys stay in step: only the numbers move)
    x._state.Ns = y._state.Nr = ratchet.MAX_COUNTER - 1
    last = x.seal(b"last")
    assert last["n"] == ratchet.MAX_COUNTER - 1 and y.open(last) == b"last"
    assert x.open(y.seal(b"two")) == b"two"
    three = x.seal(b"three")
    assert (three["pn"], three["n"]) == (ratchet.MAX_COUNTER, 0)
    assert y.open(three) == b"three"


def test_a_session_restored_from_json_text_keeps_its_direction(alice, bob):
    """The client stores sessions as JSON text: restored roles are fresh str objects, and each
    side must still open the other's envelopes (the role decides which associated data is ours)."""
    sa, sb = connect(alice, bob)
    ra = Session.from_state(json.loads(json.dumps(sa.to_state())), alice)
    rb = Session.from_state(json.loads(json.dumps(sb.to_state())), bob)
    assert (ra.role, rb.role) == (sa.role, sb.role)
    assert rb.open(ra.seal(b"to b")) == b"to b" and ra.open(rb.seal(b"to a")) == b"to a"


def test_an_init_envelope_through_json_opens(alice, bob):
    """Envelopes arrive as parsed JSON: the ``init`` key is a fresh str, and it must still be
    taken off before the envelope's fields are checked."""
    sa, store = _first_contact(alice, bob)
    first = json.loads(json.dumps(sa.seal(b"first")))
    sb, plaintext = prekeys.respond(bob, ROOM, store, first)
    assert plaintext == b"first"
    assert sb.open(json.loads(json.dumps(sa.seal(b"second")))) == b"second"


def test_peer_deniable_is_a_property(alice, bob):
    signed, _ = connect(alice, bob)
    deniable, _ = connect(alice, bob, a={"deniable": True}, b={"deniable": True})
    assert signed.peer_deniable is False and deniable.peer_deniable is True


def test_debug_secrets_are_exactly_the_current_keys(alice, bob):
    """The debug key log (keylog.py) gets the root and chain keys that exist, in hex."""
    x, y = connect(alice, bob)
    a, b = (x, y) if x.role == "a" else (y, x)
    st = b._state
    assert st.CKr is None  # b sends on the handshake's chain at once; it has received nothing
    assert b.debug_secrets() == {"root_key": st.RK.hex(), "send_chain_key": st.CKs.hex()}
    assert b.open(a.seal(b"one")) == b"one" and a.open(b.seal(b"two")) == b"two"
    for side in (a, b):
        st = side._state
        assert side.debug_secrets() == {
            "root_key": st.RK.hex(),
            "send_chain_key": st.CKs.hex(),
            "receive_chain_key": st.CKr.hex(),
        }


def test_bad_padding_from_an_authenticated_peer_is_refused_and_changes_nothing(
    alice, bob, monkeypatch
):
    """A peer holding the session keys (buggy or hostile) seals a plaintext without the
    padding mark: the receiver refuses it with one line and its state does not move."""
    sa, sb = connect(alice, bob)
    with monkeypatch.context() as m:
        m.setattr(padding, "pad", lambda data: data)  # a bucket-sized body with no 0x80 mark
        bad = sa.seal(bytes(padding.BUCKETS[0]))
    before = json.dumps(sb.to_state(), sort_keys=True)
    with pytest.raises(InvalidMessage, match="bad padding"):
        sb.open(bad)
    assert json.dumps(sb.to_state(), sort_keys=True) == before
    assert sb.open(sa.seal(b"after")) == b"after"
