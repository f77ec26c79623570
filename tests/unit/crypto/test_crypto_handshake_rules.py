"""One negative test per handshake validation rule the mutation run found unpinned, and the
state a handshake reports between its steps (tests/support/mutate.py, docs/testing.md)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from parley_crypto import errors, handshake, identity


def test_room_length_bound_is_inclusive(alice):
    handshake.Handshake(alice, "r" * handshake.ROOM_MAX)  # exactly the bound: accepted
    with pytest.raises(ValueError, match=f"at most {handshake.ROOM_MAX}"):
        handshake.Handshake(alice, "r" * (handshake.ROOM_MAX + 1))
    assert handshake.ROOM_MAX == 256  # the relay's room-name limit (documented)


def test_group_mismatch_is_rejected_whichever_name_sorts_first(alice):
    carol = identity.Identity.generate("carol", "ffdhe3072")
    # "ffdhe2048" < "ffdhe3072": a check that only refused one ordering would pass one of these
    for me, peer in ((alice, carol), (carol, alice)):
        hs = handshake.Handshake(me, "r")
        with pytest.raises(errors.HandshakeError, match="group"):
            hs.receive_identity(peer.public_payload())
        assert hs.peer is None  # nothing remembered from the refused identity


def test_peer_and_awaiting_confirm_follow_the_steps(alice, bob):
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    assert ha.peer is None and ha.awaiting_confirm is False
    assert ha.receive_identity(hb.identity_payload()) == bob.public
    assert ha.peer == bob.public and ha.awaiting_confirm is False
    hb.receive_identity(ha.identity_payload())
    cb = hb.receive_dh(ha.dh_payload())
    ca = ha.receive_dh(hb.dh_payload())
    assert ha.awaiting_confirm is True and hb.awaiting_confirm is True
    ha.receive_confirm(cb)
    assert ha.awaiting_confirm is False and hb.awaiting_confirm is True
    hb.receive_confirm(ca)
    assert hb.awaiting_confirm is False


def test_offer_carrying_our_nonce_is_refused(alice, bob):
    """A reflected nonce is refused even when the DH value was replaced."""
    hs = handshake.Handshake(alice, "r", peer=bob.public)
    forged = dict(handshake.Handshake(bob, "r").dh_payload(), nonce=hs.dh_payload()["nonce"])
    with pytest.raises(errors.HandshakeError, match="reflected"):
        hs.receive_dh(forged)
    assert hs.awaiting_confirm is False  # nothing derived from the refused offer
    hs.receive_dh(handshake.Handshake(bob, "r").dh_payload())  # a genuine offer still works


def test_roles_are_opposite_and_match_the_transcript_order(alice, bob):
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    ha.receive_identity(hb.identity_payload())
    hb.receive_identity(ha.identity_payload())
    pa, pb = ha.dh_payload(), hb.dh_payload()
    cb, ca = hb.receive_dh(pa), ha.receive_dh(pb)
    sa, sb = ha.receive_confirm(cb), hb.receive_confirm(ca)
    assert {sa.role, sb.role} == {"a", "b"}

    def entry(who, payload):
        offer = handshake.Offer(
            who.public, int(payload["dh"], 16), bytes.fromhex(payload["nonce"]), "sha256", False
        )
        return offer.entry()

    # recomputed: the side whose offer entry sorts first is "a"
    assert (sa.role == "a") == (entry(alice, pa) < entry(bob, pb))


def test_offer_carrying_our_dh_value_is_refused(alice, bob):
    """A reflected DH value is refused even under a fresh nonce."""
    hs = handshake.Handshake(alice, "r", peer=bob.public)
    forged = dict(handshake.Handshake(bob, "r").dh_payload(), dh=hs.dh_payload()["dh"])
    with pytest.raises(errors.HandshakeError, match="reflected"):
        hs.receive_dh(forged)
    assert hs.awaiting_confirm is False


def test_payloads_as_they_arrive_off_the_wire(alice, bob):
    """Every payload through JSON, as the relay delivers it: fresh strings and ints, so a
    check that compared objects instead of values would refuse an honest peer."""

    def wire(payload):
        return json.loads(json.dumps(payload))

    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    assert ha.receive_identity(wire(hb.identity_payload())) == bob.public
    hb.receive_identity(wire(ha.identity_payload()))
    cb = hb.receive_dh(wire(ha.dh_payload()))
    ca = ha.receive_dh(wire(hb.dh_payload()))
    sa, sb = ha.receive_confirm(wire(cb)), hb.receive_confirm(wire(ca))
    assert sb.open(wire(sa.seal(b"hello"))) == b"hello"
    assert sa.open(wire(sb.seal(b"back"))) == b"back"


def test_nonce_is_32_bytes_on_the_wire_and_other_lengths_are_refused(alice, bob):
    """Interoperability: every v2 peer sends and expects a 32-byte nonce (64 hex digits)."""
    hs = handshake.Handshake(alice, "r", peer=bob.public)
    assert len(bytes.fromhex(hs.dh_payload()["nonce"])) == 32
    genuine = handshake.Handshake(bob, "r").dh_payload()
    for size in (31, 33):
        with pytest.raises(errors.HandshakeError, match="nonce"):
            hs.receive_dh(dict(genuine, nonce="ab" * size))
    hs.receive_dh(genuine)


def test_offers_and_key_schedules_are_immutable(alice):
    offer = handshake.Offer(alice.public, 5, bytes(32), "sha256", False)
    keys = handshake.key_schedule(bytes(32), bytes(32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        offer.dh = 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        keys.sk = bytes(32)
