"""The handshake end to end: both message orders, MITM detection, legacy peers, safety numbers."""

from __future__ import annotations

import pytest

from parley_crypto import errors, handshake, identity, safety
from tests.unit.crypto.conftest import connect


def _keys(session):
    return (
        session._send.enc_key,
        session._send.mac_key,
        session._receive.enc_key,
        session._receive.mac_key,
    )


def test_both_orders_agree_and_work(alice, bob):
    # Order 1: alice's DH arrives at bob before bob has produced his own.
    sa, sb = connect(alice, bob)
    # Order 2: both send DH first, then both receive.
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    hb.receive_identity(ha.identity_payload())
    ha.receive_identity(hb.identity_payload())
    pa, pb = ha.dh_payload(), hb.dh_payload()
    sa2 = ha.receive_dh(pb)
    sb2 = hb.receive_dh(pa)
    for x, y in ((sa, sb), (sa2, sb2)):
        enc_out, mac_out, enc_in, mac_in = _keys(x)
        assert (enc_out, mac_out) == _keys(y)[2:]
        assert (enc_in, mac_in) == _keys(y)[:2]
        assert enc_out != enc_in and enc_out != mac_out
        assert x.transcript_hash == y.transcript_hash
        assert y.open(x.seal(b"ping")) == b"ping"
        assert x.open(y.seal(b"pong")) == b"pong"
    assert _keys(sa) != _keys(sa2)  # fresh ephemeral keys per handshake


def test_session_peer_and_safety_number(alice, bob, signed_pair):
    sa, sb = signed_pair
    assert sa.peer == bob.public and sb.peer == alice.public
    assert sa.safety_number == sb.safety_number
    assert sa.safety_number == safety.safety_number(alice.public, bob.public)
    assert len(sa.safety_number) == 60 and sa.safety_number.isdigit()


def test_dh_payload_is_stable_and_has_documented_shape(alice, bob):
    hs = handshake.Handshake(alice, "r")
    first = hs.dh_payload()
    assert set(first) == {"v", "dh", "nonce", "hash", "deniable", "sig"}
    assert first["v"] == 1 and first["hash"] == "sha256" and first["deniable"] is False
    assert set(first["sig"]) == {"r", "s"} and len(first["nonce"]) == 64
    first["sig"]["r"] = "1"  # mutating the returned copy must not change the next one
    assert hs.dh_payload()["sig"]["r"] != "1"


def _bob_side(alice, bob, room="r"):
    ha, hb = handshake.Handshake(alice, room), handshake.Handshake(bob, room)
    hb.receive_identity(ha.identity_payload())
    return ha, hb


def test_mitm_swapping_dh_is_detected(alice, bob, mallory):
    ha, hb = _bob_side(alice, bob)
    forged = dict(ha.dh_payload(), dh=handshake.Handshake(mallory, "r").dh_payload()["dh"])
    with pytest.raises(errors.HandshakeError, match="signature"):
        hb.receive_dh(forged)


def test_mitm_swapping_whole_dh_payload_is_detected(alice, bob, mallory):
    # Mallory signs her own DH with her key but bob expects alice's key.
    ha, hb = _bob_side(alice, bob)
    with pytest.raises(errors.HandshakeError, match="signature"):
        hb.receive_dh(handshake.Handshake(mallory, "r").dh_payload())


def test_mitm_swapping_identity_changes_safety_number(alice, bob, mallory):
    # Mallory replaces alice's identity and DH with her own: the handshake succeeds (that is
    # what a MITM looks like) but the safety numbers on the two ends differ.
    ha = handshake.Handshake(alice, "r")
    hm_to_bob = handshake.Handshake(mallory, "r")
    hb = handshake.Handshake(bob, "r")
    hb.receive_identity(hm_to_bob.identity_payload())
    hm_to_bob.receive_identity(hb.identity_payload())
    bob_session = hb.receive_dh(hm_to_bob.dh_payload())
    hm_to_alice = handshake.Handshake(mallory, "r")
    ha.receive_identity(hm_to_alice.identity_payload())
    hm_to_alice.receive_identity(ha.identity_payload())
    alice_session = ha.receive_dh(hm_to_alice.dh_payload())
    assert bob_session.safety_number != alice_session.safety_number
    assert bob_session.safety_number != safety.safety_number(alice.public, bob.public)


def test_identity_swap_after_dh_signed_is_detected(alice, bob, mallory):
    # Identity payload says mallory, DH is alice's (signed by alice): signature fails.
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    hb.receive_identity(mallory.public_payload())
    with pytest.raises(errors.HandshakeError, match="signature"):
        hb.receive_dh(ha.dh_payload())


def test_dh_payload_from_other_room_is_rejected(alice, bob):
    other_room = handshake.Handshake(alice, "elsewhere")
    hb = handshake.Handshake(bob, "r")
    hb.receive_identity(alice.public_payload())
    with pytest.raises(errors.HandshakeError, match="signature"):
        hb.receive_dh(other_room.dh_payload())


def test_reflection_is_rejected(alice):
    hs = handshake.Handshake(alice, "r")
    with pytest.raises(errors.HandshakeError, match="our own"):
        hs.receive_identity(hs.identity_payload())


def test_dh_before_identity_is_rejected(alice, bob):
    hb = handshake.Handshake(bob, "r")
    with pytest.raises(errors.HandshakeError, match="before"):
        hb.receive_dh(handshake.Handshake(alice, "r").dh_payload())


def test_handshake_is_single_use(alice, bob):
    ha, hb = _bob_side(alice, bob)
    hb.receive_dh(ha.dh_payload())
    with pytest.raises(errors.HandshakeError, match="complete"):
        hb.receive_dh(ha.dh_payload())
    with pytest.raises(errors.HandshakeError, match="complete"):
        hb.receive_identity(alice.public_payload())


def test_group_mismatch_is_rejected(alice):
    other = identity.Identity.generate("carol", group="modp2048")
    with pytest.raises(errors.HandshakeError, match="group"):
        handshake.Handshake(alice, "r").receive_identity(other.public_payload())


@pytest.mark.parametrize("payload", ["55", "123456789012345678901234567890", 55])
def test_legacy_identity_raises_legacy_peer(alice, payload):
    with pytest.raises(errors.LegacyPeer, match="original"):
        handshake.Handshake(alice, "r").receive_identity(payload)


@pytest.mark.parametrize(
    "payload",
    [
        '{"diff_public_key": 5, "s1": 3, "s2": 4}',
        {"diff_public_key": 5, "s1": 3, "s2": 4},
        {"deff_public_key": 5, "s1": 3, "s2": 4},
    ],
)
def test_legacy_dh_raises_legacy_peer(alice, bob, payload):
    hb = handshake.Handshake(bob, "r")
    hb.receive_identity(alice.public_payload())
    with pytest.raises(errors.LegacyPeer):
        hb.receive_dh(payload)


def test_legacy_peer_is_a_handshake_error():
    assert issubclass(errors.LegacyPeer, errors.HandshakeError)
    for cls in (
        errors.InvalidMessage,
        errors.InvalidPublicKey,
        errors.WeakParameters,
        errors.HandshakeError,
    ):
        assert issubclass(cls, errors.ParleyError)


def test_sha1_legacy_peer_interoperates(alice, bob):
    sa, sb = connect(alice, bob, a={"hash": "sha1"})
    assert sb.open(sa.seal(b"old hash")) == b"old hash"
    assert sa.open(sb.seal(b"new hash")) == b"new hash"


def test_mixed_deniable_modes(alice, bob):
    sa, sb = connect(alice, bob, a={"deniable": True})
    sealed = sa.seal(b"deniable")
    assert sealed["sig"] is None
    assert sb.open(sealed) == b"deniable"
    signed = sb.seal(b"signed")
    assert signed["sig"] is not None
    assert sa.open(signed) == b"signed"


def test_needs_rekey_after_limit_and_rekey_with_known_peer(alice, bob):
    sa, sb = connect(alice, bob, a={"rekey_after": 2, "deniable": True})
    assert not sa.needs_rekey
    sa.seal(b"1")
    assert not sa.needs_rekey
    sa.seal(b"2")
    assert sa.needs_rekey
    # Rekey: new Handshake objects with the already-verified peer; fresh keys.
    ha = handshake.Handshake(alice, "room-1", peer=sa.peer)
    hb = handshake.Handshake(bob, "room-1", peer=sb.peer)
    new_b = hb.receive_dh(ha.dh_payload())
    new_a = ha.receive_dh(hb.dh_payload())
    assert new_b.open(new_a.seal(b"after rekey")) == b"after rekey"
    assert new_a.transcript_hash != sa.transcript_hash and not new_a.needs_rekey


@pytest.mark.parametrize(
    "kwargs",
    [{"hash": "md5"}, {"rekey_after": 0}, {"rekey_after": True}],
)
def test_bad_handshake_options(alice, kwargs):
    with pytest.raises(ValueError):
        handshake.Handshake(alice, "r", **kwargs)


@pytest.mark.parametrize("room", ["", None, "x" * 300])
def test_bad_room(alice, room):
    with pytest.raises(ValueError):
        handshake.Handshake(alice, room)


def test_reflected_dh_payload_is_rejected(alice, bob):
    ha = handshake.Handshake(alice, "r")
    ha.receive_identity(bob.public_payload())
    with pytest.raises(errors.HandshakeError, match="signature"):
        ha.receive_dh(ha.dh_payload())


_P = handshake.dh.groups.get("ffdhe2048").p
_NON_RESIDUE = next(v for v in range(3, 1000) if pow(v, (_P - 1) // 2, _P) != 1)


def _signed_dh_payload(signer, dh_value: int) -> dict:
    """A handshake payload built by hand and correctly signed by ``signer`` for room "r"."""
    nonce = bytes(32)
    entry = handshake._entry("r", signer.public, dh_value, nonce, "sha256", False)
    return {
        "v": 1,
        "dh": format(dh_value, "x"),
        "nonce": nonce.hex(),
        "hash": "sha256",
        "deniable": False,
        "sig": signer.sign(entry).to_payload(),
    }


@pytest.mark.parametrize(
    "bad", [1, _P - 1, _P - 2, _NON_RESIDUE], ids=["1", "p-1", "-2", "small-non-residue"]
)
def test_signed_but_invalid_dh_value_is_rejected(alice, bob, bad):
    # Even a correctly signed payload (a buggy or malicious peer) must carry a valid Y.
    hb = handshake.Handshake(bob, "r", peer=alice.public)
    with pytest.raises(errors.HandshakeError, match="DH value"):
        hb.receive_dh(_signed_dh_payload(alice, bad))


def test_handcrafted_valid_payload_is_accepted(alice, bob):
    # The same construction with a real DH value succeeds, so the test above is meaningful.
    payload = _signed_dh_payload(alice, handshake.dh.generate().public)
    session = handshake.Handshake(bob, "r", peer=alice.public).receive_dh(payload)
    assert session.peer == alice.public


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": 2}, "version"),
        ({"v": True}, "version"),
        ({"dh": 12345}, "hex"),
        ({"dh": "not hex"}, "hex"),
        ({"dh": "f" * 100_000}, "hex digits"),
        ({"dh": "0"}, "DH value"),
        ({"nonce": "00"}, "nonce"),
        ({"nonce": "AB" * 32}, "nonce"),
        ({"hash": "md5"}, "hash"),
        ({"hash": ["sha256"]}, "hash"),
        ({"deniable": 0}, "deniable"),
        ({"deniable": "false"}, "deniable"),
        ({"sig": None}, "sig"),
        ({"sig": {"r": "1"}}, "missing"),
        ({"sig": {"r": "0", "s": "1"}}, "signature"),
        ({"sig": {"r": "1", "s": "f" * 100_000}}, "hex digits"),
        ({"extra": 1}, "unexpected"),
    ],
)
def test_malformed_handshake_payloads(alice, bob, change, match):
    payload = {**handshake.Handshake(alice, "r").dh_payload(), **change}
    hb = handshake.Handshake(bob, "r", peer=alice.public)
    with pytest.raises(errors.HandshakeError, match=match) as info:
        hb.receive_dh(payload)
    assert not isinstance(info.value, errors.LegacyPeer)


@pytest.mark.parametrize("missing", ["v", "dh", "nonce", "hash", "deniable", "sig"])
def test_handshake_payload_missing_field(alice, bob, missing):
    payload = handshake.Handshake(alice, "r").dh_payload()
    del payload[missing]
    with pytest.raises(errors.HandshakeError, match="missing"):
        handshake.Handshake(bob, "r", peer=alice.public).receive_dh(payload)
