"""Session rules the mutation run found unpinned (tests/support/mutate.py, docs/testing.md):
an envelope carrying another session's initial message is refused and changes nothing."""

from __future__ import annotations

import json

import pytest

from parley_crypto import prekeys
from parley_crypto.errors import InvalidMessage
from parley_crypto.prekey_store import PrekeyStore
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
