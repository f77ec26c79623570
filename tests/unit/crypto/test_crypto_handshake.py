"""Handshake v2 end to end: both orders, key confirmation, replay of old handshakes, leaked
ephemerals, version rewriting, reflection, MITM, hash policy, legacy and v1 peers."""

from __future__ import annotations

import copy

import pytest

from parley_crypto import dh, elgamal, errors, handshake, identity, kdf, safety
from parley_crypto.handshake import Offer
from tests.unit.crypto.conftest import connect, exchange


def _chat(x, y):
    assert y.open(x.seal(b"ping")) == b"ping"
    assert x.open(y.seal(b"pong")) == b"pong"


def test_both_orders_agree_and_work(alice, bob):
    sa, sb = connect(alice, bob)
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    hb.receive_identity(ha.identity_payload())
    ha.receive_identity(hb.identity_payload())
    pa, pb = ha.dh_payload(), hb.dh_payload()
    ca, cb = ha.receive_dh(pb), hb.receive_dh(pa)
    sb2 = hb.receive_confirm(ca)  # bob confirms first this time
    sa2 = ha.receive_confirm(cb)
    for x, y in ((sa, sb), (sa2, sb2)):
        assert x.transcript_hash == y.transcript_hash
        assert {x.role, y.role} == {"a", "b"}
        _chat(x, y)
    assert sa.transcript_hash != sa2.transcript_hash  # fresh nonces and DH values


def test_session_peer_and_safety_number(alice, bob, signed_pair):
    sa, sb = signed_pair
    assert sa.peer == bob.public and sb.peer == alice.public
    assert sa.safety_number == sb.safety_number
    assert sa.safety_number == safety.safety_number(alice.public, bob.public)
    assert sa.peer_hash_label == "SHA-256"


def test_payload_shapes(alice, bob):
    ha, hb, ca, _ = exchange(alice, bob)
    offer = ha.dh_payload()
    assert set(offer) == {"v", "dh", "nonce", "hash", "deniable"}
    assert offer["v"] == 2 and offer["hash"] == "sha256" and offer["deniable"] is False
    assert ha.identity_payload()["v"] == 2
    assert set(ca) == {"v", "sig", "mac"} and ca["v"] == 2 and len(ca["mac"]) == 64
    assert set(ca["sig"]) == {"r", "s"}
    assert ha.dh_payload() == offer  # stable
    ca["sig"]["r"] = "1"  # mutating the returned copy must not change the next one
    assert ha.confirm_payload()["sig"]["r"] != "1"


def test_no_session_before_peer_confirmation(alice, bob):
    ha, hb, ca, cb = exchange(alice, bob)
    assert ha.awaiting_confirm and hb.awaiting_confirm
    with pytest.raises(errors.HandshakeError):
        hb.receive_confirm(dict(ca, mac="00" * 32))
    with pytest.raises(errors.HandshakeError, match="before the peer's DH"):
        handshake.Handshake(alice, "r", peer=bob.public).receive_confirm(cb)
    hb.receive_confirm(ca)  # the failed attempt changed nothing


def test_replayed_old_dh_and_confirm_cannot_complete_a_handshake(alice, bob):
    # Round 1's break: the relay keeps alice's payloads from yesterday and plays them to bob.
    old_a, _, old_confirm_a, _ = exchange(alice, bob)
    old_identity, old_offer = old_a.identity_payload(), old_a.dh_payload()
    hb = handshake.Handshake(bob, "room-1")
    hb.receive_identity(old_identity)
    hb.receive_dh(old_offer)  # an unsigned offer is accepted, but proves nothing
    with pytest.raises(errors.HandshakeError):
        hb.receive_confirm(old_confirm_a)
    assert hb.awaiting_confirm  # bob is still not secure


def test_leaked_old_ephemeral_cannot_complete_a_new_handshake(alice, bob):
    # The attacker holds alice's old exponent (memory dump, debug key log), so it can compute
    # every key of the new handshake; it still lacks alice's signature on the new transcript.
    old_a, _, old_confirm_a, _ = exchange(alice, bob, "room-1")
    x_old = old_a._ephemeral
    hb = handshake.Handshake(bob, "room-1")
    hb.receive_identity(alice.public_payload())
    hb.receive_dh(old_a.dh_payload())
    secret = dh.shared_secret(x_old, int(hb.dh_payload()["dh"], 16))
    mine = Offer(alice.public, x_old.public, bytes.fromhex(old_a.dh_payload()["nonce"]),
                 "sha256", False)  # fmt: skip
    theirs = hb._my_offer()
    tx, a, _ = handshake.transcript("room-1", mine, theirs)
    th = handshake.hashlib.sha256(tx).digest()
    role = "a" if a is mine else "b"
    keys = handshake.key_schedule(secret, th)
    forged_mac = kdf.hmac_sha256(keys.confirm[role], handshake.mac_input(role, th)).hex()
    attempts = [
        dict(old_confirm_a, mac=forged_mac),  # old signature, correct new MAC
        {
            "v": 2,
            "sig": elgamal.sign(
                identity.Identity.generate("alice").signing_key, handshake.sig_input(role, tx)
            ).to_payload(),
            "mac": forged_mac,
        },  # fmt: skip
    ]
    for attempt in attempts:
        with pytest.raises(errors.HandshakeError, match="signature"):
            hb.receive_confirm(attempt)
    assert hb.awaiting_confirm


@pytest.mark.parametrize("version", [1, 3, "2", True, None])
@pytest.mark.parametrize("which", ["identity", "offer", "confirm"])
def test_relay_rewriting_v_fails(alice, bob, which, version):
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    payloads = {"identity": ha.identity_payload(), "offer": ha.dh_payload()}
    expected = errors.OlderPeer if version == 1 and version is not True else errors.HandshakeError
    if which == "identity":
        with pytest.raises(expected):
            hb.receive_identity(dict(payloads["identity"], v=version))
        return
    hb.receive_identity(payloads["identity"])
    ha.receive_identity(hb.identity_payload())
    if which == "offer":
        with pytest.raises(expected):
            hb.receive_dh(dict(payloads["offer"], v=version))
        return
    hb.receive_dh(payloads["offer"])
    confirm = ha.receive_dh(hb.dh_payload())
    with pytest.raises(expected):
        hb.receive_confirm(dict(confirm, v=version))


def test_v1_peer_gets_the_clear_line(alice, bob):
    v1 = {"v": 1, "name": "bob", "group": "ffdhe2048", "y": "5"}
    with pytest.raises(errors.OlderPeer) as info:
        handshake.Handshake(alice, "r").receive_identity(v1)
    assert str(info.value) == "bob runs an older Parley (protocol v1); both sides need v2"
    assert isinstance(info.value, errors.ParleyError)
    hs = handshake.Handshake(alice, "r", peer=bob.public)
    v1_offer = {"v": 1, "dh": "5", "nonce": "00" * 32, "hash": "sha256", "deniable": False,
                "sig": {"r": "1", "s": "1"}}  # fmt: skip
    with pytest.raises(errors.OlderPeer, match="^bob runs an older Parley"):
        hs.receive_dh(v1_offer)


def test_reflected_confirm_fails(alice, bob):
    ha, hb, ca, cb = exchange(alice, bob)
    with pytest.raises(errors.HandshakeError):
        ha.receive_confirm(ca)  # alice's own confirmation, reflected: wrong role and key
    ha.receive_confirm(cb)


def test_reflected_offer_and_identity_fail(alice):
    hs = handshake.Handshake(alice, "r")
    with pytest.raises(errors.HandshakeError, match="own identity"):
        hs.receive_identity(hs.identity_payload())
    other = identity.Identity.generate("alice2")
    hs2 = handshake.Handshake(alice, "r", peer=other.public)
    with pytest.raises(errors.HandshakeError, match="reflected"):
        hs2.receive_dh(hs2.dh_payload())


def test_mitm_swapping_dh_fails_confirmation(alice, bob, mallory):
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    hm = handshake.Handshake(mallory, "r")
    ha.receive_identity(hb.identity_payload())
    hb.receive_identity(ha.identity_payload())
    cb = hb.receive_dh(dict(hm.dh_payload(), hash="sha256"))  # mallory's DH as alice's
    ha.receive_dh(hb.dh_payload())
    with pytest.raises(errors.HandshakeError):
        ha.receive_confirm(cb)


def test_mitm_with_own_identity_changes_safety_number(alice, bob, mallory):
    sa, _ = connect(alice, mallory)
    _, sb = connect(mallory, bob)
    assert sa.safety_number != sb.safety_number


def test_other_room_fails(alice, bob):
    ha, hb = handshake.Handshake(alice, "room-1"), handshake.Handshake(bob, "room-2")
    ha.receive_identity(hb.identity_payload())
    hb.receive_identity(ha.identity_payload())
    cb = hb.receive_dh(ha.dh_payload())
    ca = ha.receive_dh(hb.dh_payload())
    for hs, confirm in ((ha, cb), (hb, ca)):
        with pytest.raises(errors.HandshakeError):
            hs.receive_confirm(confirm)


def test_peer_sha1_refused_unless_chosen_locally(alice, bob):
    ha = handshake.Handshake(alice, "r", hash="sha1")
    hb = handshake.Handshake(bob, "r")
    hb.receive_identity(ha.identity_payload())
    with pytest.raises(errors.HandshakeError, match="legacy SHA-1"):
        hb.receive_dh(ha.dh_payload())
    sa, sb = connect(alice, bob, a={"hash": "sha1"}, b={"hash": "sha1"})
    assert sb.peer_hash == "sha1" and sb.peer_hash_label == "legacy SHA-1"
    _chat(sa, sb)
    legacy = handshake.Handshake(bob, "r", hash="sha1", peer=alice.public)
    legacy.receive_dh(handshake.Handshake(alice, "r").dh_payload())  # SHA-256 peer is fine


def test_mixed_deniable_modes(alice, bob):
    sa, sb = connect(alice, bob, a={"deniable": True})
    assert sa.deniable and sb.peer_deniable and not sb.deniable
    assert sa.seal(b"x")["sig"] is None and sb.seal(b"y")["sig"] is not None
    _chat(sa, sb)


def test_order_and_single_use(alice, bob):
    hs = handshake.Handshake(alice, "r")
    with pytest.raises(errors.HandshakeError, match="before the peer's identity"):
        hs.receive_dh(handshake.Handshake(bob, "r").dh_payload())
    with pytest.raises(errors.HandshakeError):
        hs.confirm_payload()
    ha, hb, ca, cb = exchange(alice, bob)
    with pytest.raises(errors.HandshakeError):
        ha.receive_dh(hb.dh_payload())
    with pytest.raises(errors.HandshakeError):
        ha.receive_identity(hb.identity_payload())
    ha.receive_confirm(cb)
    with pytest.raises(errors.HandshakeError, match="complete"):
        ha.receive_confirm(cb)


def test_group_mismatch_is_rejected(alice):
    other = identity.Identity.generate("carol", "ffdhe3072")
    with pytest.raises(errors.HandshakeError, match="group"):
        handshake.Handshake(alice, "r").receive_identity(other.public_payload())


@pytest.mark.parametrize("payload", ["55", "123456789012345678901234567890", 55])
def test_legacy_identity_raises_legacy_peer(alice, payload):
    with pytest.raises(errors.LegacyPeer):
        handshake.Handshake(alice, "r").receive_identity(payload)


@pytest.mark.parametrize(
    "payload",
    ['{"diff_public_key": 5, "s1": 1, "s2": 2}', {"diff_public_key": 5, "s1": 1, "s2": 2},
     {"deff_public_key": 5}],
)  # fmt: skip
def test_legacy_dh_raises_legacy_peer(alice, bob, payload):
    with pytest.raises(errors.LegacyPeer):
        handshake.Handshake(alice, "r", peer=bob.public).receive_dh(payload)


@pytest.mark.parametrize("kwargs", [{"hash": "md5"}, {"hash": None}], ids=["md5", "none"])
def test_bad_handshake_options(alice, kwargs):
    with pytest.raises(ValueError):
        handshake.Handshake(alice, "r", **kwargs)


@pytest.mark.parametrize("room", ["", None, "x" * 300])
def test_bad_room(alice, room):
    with pytest.raises(ValueError):
        handshake.Handshake(alice, room)


@pytest.mark.parametrize("bad", ["0", "1", "p-1", "p", "nonresidue"])
def test_invalid_dh_value_is_rejected(alice, bob, bad):
    group = alice.signing_key.group
    value = {"0": 0, "1": 1, "p-1": group.p - 1, "p": group.p, "nonresidue": group.p - 2}[bad]
    hs = handshake.Handshake(alice, "r", peer=bob.public)
    offer = dict(handshake.Handshake(bob, "r").dh_payload(), dh=format(value, "x"))
    with pytest.raises(errors.HandshakeError):
        hs.receive_dh(offer)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"dh": "0" * 3}, "leading zeros"),
        ({"dh": "f" * 600}, "hex digits"),
        ({"nonce": "00"}, "nonce"),
        ({"hash": "md5"}, "hash"),
        ({"deniable": 0}, "deniable"),
        ({"extra": 1}, "unexpected"),
    ],
)
def test_malformed_offers(alice, bob, change, match):
    hs = handshake.Handshake(alice, "r", peer=bob.public)
    with pytest.raises(errors.HandshakeError, match=match):
        hs.receive_dh(dict(handshake.Handshake(bob, "r").dh_payload(), **change))


@pytest.mark.parametrize(
    "change",
    [{"mac": "zz"}, {"mac": "00"}, {"sig": {"r": "1"}}, {"sig": "x"}, {"extra": 1},
     {"sig": {"r": "0", "s": "1"}}],
)  # fmt: skip
def test_malformed_confirms(alice, bob, change):
    ha, hb, ca, cb = exchange(alice, bob)
    with pytest.raises(errors.HandshakeError):
        ha.receive_confirm(dict(cb, **change))
    ha.receive_confirm(cb)


def _base_offers(alice, bob):
    group = alice.signing_key.group
    return (
        Offer(alice.public, group.g**5 % group.p, b"\x01" * 32, "sha256", False),
        Offer(bob.public, group.g**7 % group.p, b"\x02" * 32, "sha256", False),
    )


def _variants(alice, bob, mallory):
    """Each transcript field changed in turn (one side's offer, or the room)."""
    a, b = _base_offers(alice, bob)
    renamed = identity.PeerIdentity("alicf", alice.public.group, alice.public.y)
    return {
        "room": ("room-2", a, b),
        "name": ("room-1", Offer(renamed, a.dh, a.nonce, a.hash, a.deniable), b),
        "key y": ("room-1", Offer(mallory.public, a.dh, a.nonce, a.hash, a.deniable), b),
        "dh a": ("room-1", Offer(a.who, a.dh * 4 % 0xFFFF_FFFF_FFFF, a.nonce, a.hash, False), b),
        "dh b": ("room-1", a, Offer(b.who, b.dh * 4, b.nonce, b.hash, b.deniable)),
        "nonce a": ("room-1", Offer(a.who, a.dh, b"\x03" * 32, a.hash, a.deniable), b),
        "nonce b": ("room-1", a, Offer(b.who, b.dh, b"\x04" * 32, b.hash, b.deniable)),
        "hash a": ("room-1", Offer(a.who, a.dh, a.nonce, "sha1", a.deniable), b),
        "hash b": ("room-1", a, Offer(b.who, b.dh, b.nonce, "sha1", b.deniable)),
        "deniable a": ("room-1", Offer(a.who, a.dh, a.nonce, a.hash, True), b),
        "deniable b": ("room-1", a, Offer(b.who, b.dh, b.nonce, b.hash, True)),
    }


@pytest.mark.parametrize(
    "field",
    ["room", "name", "key y", "dh a", "dh b", "nonce a", "nonce b", "hash a", "hash b",
     "deniable a", "deniable b"],
)  # fmt: skip
def test_every_transcript_field_changes_the_signature_input(alice, bob, mallory, field):
    a, b = _base_offers(alice, bob)
    base, _, _ = handshake.transcript("room-1", a, b)
    room, x, y = _variants(alice, bob, mallory)[field]
    changed, _, _ = handshake.transcript(room, x, y)
    for role in ("a", "b"):
        assert handshake.sig_input(role, changed) != handshake.sig_input(role, base)
    assert handshake.sig_input("a", base) != handshake.sig_input("b", base)  # role label
    # Order-independent: both sides build the same transcript.
    assert handshake.transcript("room-1", b, a)[0] == base


def test_transcript_version_is_bound(alice, bob, monkeypatch):
    a, b = _base_offers(alice, bob)
    base, _, _ = handshake.transcript("room-1", a, b)
    monkeypatch.setattr(handshake, "PROTOCOL_VERSION", 3)
    assert handshake.transcript("room-1", a, b)[0] != base


def test_failed_receive_dh_changes_nothing(alice, bob):
    ha, hb = handshake.Handshake(alice, "r"), handshake.Handshake(bob, "r")
    hb.receive_identity(ha.identity_payload())
    ha.receive_identity(hb.identity_payload())
    good = ha.dh_payload()
    bad = copy.deepcopy(good)
    bad["nonce"] = "zz" * 32
    with pytest.raises(errors.HandshakeError):
        hb.receive_dh(bad)
    ca, cb = ha.receive_dh(hb.dh_payload()), hb.receive_dh(good)
    _chat(ha.receive_confirm(cb), hb.receive_confirm(ca))
