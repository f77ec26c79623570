"""Ratchet rules the mutation run found unpinned (tests/support/mutate.py, docs/testing.md)."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from parley_crypto import dh, errors, groups, ratchet
from tests.unit.crypto.conftest import connect

DENIABLE = {"deniable": True}


def test_sending_stops_before_the_message_number_overflows(alice, bob):
    """n travels as an unsigned 32-bit field: the last number sealed is MAX_COUNTER - 1."""
    sender, _ = connect(alice, bob, a=DENIABLE, b=DENIABLE)
    assert ratchet.MAX_COUNTER == 2**32 - 1
    sender._state.Ns = int("4294967294")  # a fresh int, not the constant's object
    assert sender.seal(b"last")["n"] == 4294967294
    chain = sender._state.CKs
    with pytest.raises(errors.InvalidMessage, match="no sending chain"):
        sender.seal(b"one too many")
    assert sender._state.Ns == 4294967295 and sender._state.CKs == chain  # nothing advanced


def test_first_envelopes_have_no_previous_chain_and_skip_nothing(alice, bob):
    """PN starts at 0: nothing was sent on an earlier chain, so a receiver's DH step must not
    store skipped keys for messages that never existed."""
    x, y = connect(alice, bob, a=DENIABLE, b=DENIABLE)
    for side in (x, y):
        assert side._state.PN == 0 and side._state.Ns == 0 and side._state.Nr == 0
    one, two = x.seal(b"one"), y.seal(b"two")
    assert (one["pn"], one["n"], two["pn"], two["n"]) == (0, 0, 0, 0)
    assert y.open(one) == b"one" and x.open(two) == b"two"
    assert x._state.MKSKIPPED == {} and y._state.MKSKIPPED == {}


def test_skipped_keys_last_exactly_as_long_as_the_relay_mailbox(alice, bob):
    """A skipped key lives 7 days (PARLEY_MAILBOX_TTL's default, 604800 s): a message the relay
    still delivers still opens; an hour later its key is gone."""
    now = [1_000_000.0]
    opts = dict(DENIABLE, clock=lambda: now[0])
    x, y = connect(alice, bob, a=opts, b=opts)
    late, later, last = x.seal(b"late"), x.seal(b"later"), x.seal(b"last")
    assert y.open(last) == b"last"  # stores the keys of "late" and "later" at this time
    now[0] += 604800.0  # the boundary itself still opens
    assert y.open(late) == b"late"
    now[0] += 3600.0
    with pytest.raises(errors.InvalidMessage):
        y.open(later)


@pytest.mark.parametrize("bad", ["0", "1", "p-1", "p+1"])
def test_a_header_key_outside_the_group_is_an_invalid_message_and_changes_nothing(alice, bob, bad):
    """The envelope parser only reads hex; the ratchet's DH step must turn a bad header key
    into InvalidMessage (what callers catch for a hostile envelope), before any state moves."""
    x, y = connect(alice, bob, a=DENIABLE, b=DENIABLE)
    p = x._state.group.p
    value = {"0": 0, "1": 1, "p-1": p - 1, "p+1": p + 1}[bad]
    genuine = x.seal(b"genuine")
    before = json.dumps(y.to_state(), sort_keys=True)
    with pytest.raises(errors.InvalidMessage, match="bad ratchet key"):
        y.open(dict(genuine, dh=format(value, "x")))
    assert json.dumps(y.to_state(), sort_keys=True) == before
    assert y.open(genuine) == b"genuine"


def test_headers_are_immutable():
    header = ratchet.Header(5, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.n = 1


def test_a_valid_mac_does_not_excuse_a_bad_signature(alice, bob, mallory):
    """Whoever holds the chain keys (a stolen session state) can MAC; only the sender's
    identity key can sign. An envelope MACed correctly but signed by another key is refused
    and changes nothing."""
    x, y = connect(alice, bob)
    genuine_signer = x._me
    x._me = mallory  # seal signs with mallory's key; the MAC is still x's, over that signature
    forged = x.seal(b"forged")
    x._me = genuine_signer
    before = json.dumps(y.to_state(), sort_keys=True)
    with pytest.raises(errors.InvalidMessage, match="signature is invalid"):
        y.open(forged)
    assert json.dumps(y.to_state(), sort_keys=True) == before
    assert y.open(x.seal(b"genuine")) == b"genuine"


def test_the_verifier_sees_exactly_what_was_signed():
    group = groups.get()
    b_key = dh.generate(group)
    sk, th, ad = b"\x01" * 32, b"\x02" * 32, b"ad"
    a, b = ratchet.init_a(group, sk, th, b_key.public), ratchet.init_b(group, sk, th, b_key)
    signed = []
    header, ct, sig, mac = ratchet.RatchetEncrypt(
        a, b"hello", ad, sign=lambda data: signed.append(data) or b"SIG"
    )
    seen = []
    new, plain = ratchet.RatchetDecrypt(
        b, header, ct, sig, mac, ad, verify=lambda data, s: seen.append((data, s))
    )
    assert plain == b"hello" and seen == [(signed[0], b"SIG")]

    def refuse(data, s):
        raise errors.InvalidMessage("refused by the verifier")

    header, ct, sig, mac = ratchet.RatchetEncrypt(a, b"again", ad, sign=lambda data: b"SIG")
    with pytest.raises(errors.InvalidMessage, match="refused by the verifier"):
        ratchet.RatchetDecrypt(new, header, ct, sig, mac, ad, verify=refuse)


def test_a_replay_is_named_a_replay_and_changes_nothing(alice, bob):
    """Any number below Nr of the current chain is refused before its (long deleted) key is
    even looked for: the last message, and the first."""
    x, y = connect(alice, bob, a=DENIABLE, b=DENIABLE)
    first, last = x.seal(b"first"), x.seal(b"last")
    assert y.open(first) == b"first" and y.open(last) == b"last"
    before = json.dumps(y.to_state(), sort_keys=True)
    for replay in (last, first):
        with pytest.raises(errors.InvalidMessage, match="^replayed message"):
            y.open(replay)
        assert json.dumps(y.to_state(), sort_keys=True) == before


def test_at_most_2000_skipped_keys_are_kept_oldest_dropped_first(alice, bob):
    """libsignal's MAX_MESSAGE_KEYS-like bound with its real value (2000), not a patched one."""
    x, y = connect(alice, bob, a=DENIABLE, b=DENIABLE)
    envelopes = [x.seal(b"%d" % i) for i in range(3)]
    now = time.time()
    y._state.MKSKIPPED = {(i, 0): (bytes(32), now) for i in range(1999)}  # older entries
    assert y.open(envelopes[2]) == b"2"  # skips 2 keys: 2001 > 2000, the oldest goes
    assert len(y._state.MKSKIPPED) == 2000
    assert (0, 0) not in y._state.MKSKIPPED and (1, 0) in y._state.MKSKIPPED
    assert [y.open(e) for e in envelopes[:2]] == [b"0", b"1"]
