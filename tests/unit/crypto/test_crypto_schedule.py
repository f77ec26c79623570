"""Key schedule v2: known answers for each KDF step (checked against the `cryptography`
package), and the whole schedule recomputed independently from the raw DH secret."""

from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from parley_crypto import handshake, ratchet
from tests.unit.crypto.conftest import exchange


def c_hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def c_hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = c_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def lp(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


# Our own fixed vectors (computed once, then checked against the independent derivations).
CK = bytes(range(32))
KDF_CK_OUT = (
    "4304c22c84a53755ab08ead8d97a8d429be5efa480682d7ad1da27f73e1fbe1d",
    "9b4c8120a4823a95f47cde17a244f4507244ee6e3957d1fab9fa29b44d3829b7",
)
RK, DH_OUT = bytes(range(32, 64)), bytes(range(256))
KDF_RK_OUT = (
    "7b65a9177fe6491420c27656f44e52384459d7ee9ed3ff4d5a2f8ac3b9d42d21",
    "0f43fafc66f00888e56d2e7b04b7ad6c106c3f9fa36f465b2153268772e7e387",
)
MK = bytes(range(64, 96))
MESSAGE_KEYS = (
    "c30110503a285225566f428806c3f00c4d8c24441a78cbfd49d0aa51bd788a2c",
    "3c359e4fe07e211e7c3049c4fe0673440f2494615df26ff1411daac7973c5254",
    "9aacb3815ffcbda9dcc143af3348b132",
)
INITIAL = (
    "98b820524eeada1ae14b0501aaeef7c7bb8bea167b7470a26e1f8092707c1a2c",
    "cb0c4581648638df8f5edae7ad13400229934322dae828663b11db84549bb1ea",
)
SCHEDULE = (
    "0b700f372b8e883ffe38a5d6c0dbc9543596f0279f1f5d664701826ad81f2642",
    "dcbbedf47695d6c9174789a205b0de124c1f5a3c46e942388ba500f23b392770",
    "e66d8030393ef5d10a4cf6694ff82c97385aee4804f65d94885ceb62d0e26d82",
)


def test_kdf_ck_known_answer():
    ck, mk = ratchet.KDF_CK(CK)
    assert (ck.hex(), mk.hex()) == KDF_CK_OUT
    assert ck == c_hmac_sha256(CK, b"\x02") and mk == c_hmac_sha256(CK, b"\x01")


def test_kdf_rk_known_answer():
    rk, ck = ratchet.KDF_RK(RK, DH_OUT)
    assert (rk.hex(), ck.hex()) == KDF_RK_OUT
    assert rk + ck == c_hkdf(DH_OUT, RK, b"parley/v2/ratchet", 64)


def test_message_keys_known_answer():
    assert tuple(k.hex() for k in ratchet.message_keys(MK)) == MESSAGE_KEYS
    out = c_hkdf(MK, bytes(32), b"parley/v2/message-keys", 80)
    assert ratchet.message_keys(MK) == (out[:32], out[32:64], out[64:])


def test_initial_chain_known_answer():
    sk, th = b"\x11" * 32, b"\x22" * 32
    assert tuple(k.hex() for k in ratchet.initial_keys(sk, th)) == INITIAL
    assert ratchet.initial_keys(sk, th) == (
        c_hkdf(sk, th, b"parley/v2/root", 32),
        c_hkdf(sk, th, b"parley/v2/b->a/chain", 32),
    )


def test_handshake_schedule_known_answer_and_secret_dependence():
    th = b"\x33" * 32
    keys = handshake.key_schedule(DH_OUT, th)
    assert (keys.sk.hex(), keys.confirm["a"].hex(), keys.confirm["b"].hex()) == SCHEDULE
    assert keys.sk == c_hkdf(DH_OUT, th, b"parley/v2/sk", 32)
    assert keys.confirm["a"] == c_hkdf(DH_OUT, th, b"parley/v2/a->b/confirm", 32)
    assert keys.confirm["b"] == c_hkdf(DH_OUT, th, b"parley/v2/b->a/confirm", 32)
    other = handshake.key_schedule(bytes(255) + b"\x01", th)  # another secret, same transcript
    assert other.sk != keys.sk and other.confirm["a"] != keys.confirm["a"]
    assert other.confirm["b"] != keys.confirm["b"]


def _offer_entry(payload_identity, offer_payload, width):
    y = int(payload_identity["y"], 16).to_bytes(width, "big")
    dh = int(offer_payload["dh"], 16).to_bytes(width, "big")
    deniable = b"\x01" if offer_payload["deniable"] else b"\x00"
    return lp(
        b"parley/v2/offer",
        payload_identity["name"].encode(),
        payload_identity["group"].encode(),
        y,
        dh,
        bytes.fromhex(offer_payload["nonce"]),
        offer_payload["hash"].encode(),
        deniable,
    )


@pytest.mark.parametrize("room", ["room-1", "another room"])
def test_whole_schedule_recomputed_from_the_raw_secret(alice, bob, room):
    ha, hb, ca, cb = exchange(alice, bob, room)
    group = alice.signing_key.group
    p, width = group.p, group.byte_length
    x_a = ha._ephemeral.x  # the raw exponents, read before they are handed over or deleted
    y_a, y_b = ha._ephemeral.public, hb._ephemeral.public
    z = pow(y_b, x_a, p).to_bytes(width, "big")
    assert z == pow(y_a, hb._ephemeral.x, p).to_bytes(width, "big")
    entries = sorted(
        [
            (_offer_entry(ha.identity_payload(), ha.dh_payload(), width), "alice"),
            (_offer_entry(hb.identity_payload(), hb.dh_payload(), width), "bob"),
        ]
    )
    tx = lp(b"parley/v2/transcript", b"2", room.encode(), entries[0][0], entries[1][0])
    th = hashlib.sha256(tx).digest()
    a_is_alice = entries[0][1] == "alice"
    sk = c_hkdf(z, th, b"parley/v2/sk", 32)
    confirm = {r: c_hkdf(z, th, f"parley/v2/{d}/confirm".encode(), 32)
               for r, d in (("a", "a->b"), ("b", "b->a"))}  # fmt: skip
    # The confirmation MACs on the wire are the independent HMACs of the transcript hash.
    for payload, role in ((ca, "a" if a_is_alice else "b"), (cb, "b" if a_is_alice else "a")):
        expected = c_hmac_sha256(confirm[role], lp(b"parley/v2/key-confirm/mac", role.encode(), th))
        assert std_hmac.compare_digest(bytes.fromhex(payload["mac"]), expected)
    sa, sb = ha.receive_confirm(cb), hb.receive_confirm(ca)
    side_a, side_b = (sa, sb) if a_is_alice else (sb, sa)
    assert side_a.transcript_hash == side_b.transcript_hash == th
    rk0 = c_hkdf(sk, th, b"parley/v2/root", 32)
    ck_ba = c_hkdf(sk, th, b"parley/v2/b->a/chain", 32)
    state_b = side_b._state
    assert (state_b.RK, state_b.CKs, state_b.CKr) == (rk0, ck_ba, None)
    assert side_a._state.CKr == ck_ba
    a_dhs = side_a._state.DHs
    step = c_hkdf(pow(side_b._state.DHs.public, a_dhs.x, p).to_bytes(width, "big"), rk0,
                  b"parley/v2/ratchet", 64)  # fmt: skip
    assert (side_a._state.RK, side_a._state.CKs) == (step[:32], step[32:])
    # The first envelope of each side decrypts with keys computed here alone.
    for sender, chain, role in ((side_b, ck_ba, "b"), (side_a, step[32:], "a")):
        envelope = sender.seal(b"independent")
        mk = c_hmac_sha256(chain, b"\x01")
        keys = c_hkdf(mk, bytes(32), b"parley/v2/message-keys", 80)
        ct = base64.b64decode(envelope["ct"])
        header = lp(b"parley/v2/header", int(envelope["dh"], 16).to_bytes(width, "big"))
        header += struct.pack(">II", envelope["pn"], envelope["n"])
        ad = lp(b"parley/v2/ad", th, role.encode())
        sig = b""  # the signature bytes (r, s at fixed width) are under the MAC too
        if envelope["sig"] is not None:
            sig = b"".join(int(envelope["sig"][k], 16).to_bytes(width, "big") for k in "rs")
        mac = c_hmac_sha256(keys[32:64], lp(b"parley/v2/envelope/mac", ad, header, ct, sig))
        assert base64.b64decode(envelope["mac"]) == mac
        decryptor = Cipher(algorithms.AES(keys[:32]), modes.CFB(keys[64:])).decryptor()
        padded = decryptor.update(ct) + decryptor.finalize()
        assert padded.rstrip(b"\x00") == b"independent\x80" and len(padded) == 256
