"""Boundaries that mutation testing (`make mutate`, docs/testing.md) found unpinned: each
test here kills mutants that every other test let survive."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest

from parley_crypto import aes_cfb, dh, groups, kdf

MAX_HKDF = 255 * 32  # RFC 5869: at most 255 blocks of HashLen (32) bytes


def test_hkdf_expand_accepts_exactly_255_blocks_and_recomputes_the_last_one():
    prk = bytes(range(32))
    okm = kdf.hkdf_expand(prk, b"info", MAX_HKDF)
    assert len(okm) == MAX_HKDF
    # The last block recomputed by hand: T(255) = HMAC(PRK, T(254) | info | 0xff).
    t254 = okm[-64:-32]
    assert okm[-32:] == hmac.new(prk, t254 + b"info" + b"\xff", hashlib.sha256).digest()


@pytest.mark.parametrize("length", [MAX_HKDF + 1, MAX_HKDF + 32, 0, -1, -32])
def test_hkdf_expand_refuses_lengths_outside_1_to_8160(length):
    with pytest.raises(ValueError, match=r"HKDF length must be 1\.\.8160$"):
        kdf.hkdf_expand(bytes(32), b"", length)


def test_hkdf_absent_salt_is_32_zero_bytes():
    ikm = b"input keying material"
    assert kdf.hkdf_extract(None, ikm) == hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    assert kdf.hkdf_extract(b"", ikm) == kdf.hkdf_extract(None, ikm)


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33, 64])
def test_aes_refuses_every_key_that_is_not_256_bits(size):
    # 16 and 24 bytes are valid AES-128/192 keys: only our check stops a downgrade.
    for fn in (aes_cfb.encrypt, aes_cfb.decrypt):
        with pytest.raises(ValueError, match=f"AES-256 key must be 32 bytes, got {size}$"):
            fn(bytes(size), bytes(16), b"x")


@pytest.mark.parametrize("size", [0, 8, 15, 17, 32])
def test_aes_refuses_every_iv_that_is_not_16_bytes(size):
    for fn in (aes_cfb.encrypt, aes_cfb.decrypt):
        with pytest.raises(ValueError, match=f"IV must be 16 bytes, got {size}$"):
            fn(bytes(32), bytes(size), b"x")


def test_dh_private_exponent_range_is_2_to_q_minus_1_inclusive():
    group = groups.get()
    for x in (2, 3, group.q - 1):
        assert dh.DHPrivateKey(group, x).public == pow(group.g, x, group.p)
    for x in (-1, 0, 1, group.q, group.q + 1):
        with pytest.raises(ValueError, match=r"need 2 <= x < q"):
            dh.DHPrivateKey(group, x)


def test_validated_dh_keys_cannot_be_changed_after_validation():
    group = groups.get()
    private = dh.DHPrivateKey(group, 12345)
    public = dh.DHPublicKey(group, private.public)
    with pytest.raises(dataclasses.FrozenInstanceError):
        private.x = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        public.y = 1  # type: ignore[misc]  # 1 would never pass validation


def test_hkdf_expand_of_one_byte_is_the_first_byte_of_a_longer_output():
    prk = bytes(range(32))
    assert kdf.hkdf_expand(prk, b"i", 1) == kdf.hkdf_expand(prk, b"i", 64)[:1]


# ----- relay decisions (parley_relay.core) ---------------------------------------------------
def test_names_of_1_and_64_characters_are_accepted_65_refused():
    from parley_relay.core import MAX_NAME_CHARS, Rejection, parse_auth

    assert MAX_NAME_CHARS == 64
    for name in ("a", "é" * 64):
        assert parse_auth({"room": "r", "name": name}, None).name == name
    for name in ("", "b" * 65):
        with pytest.raises(Rejection) as err:
            parse_auth({"room": "r", "name": name}, None)
        assert err.value.code == "bad_request"


def test_a_rejection_without_text_carries_the_codes_human_message():
    from parley_relay.core import ERROR_TEXT, Rejection

    for code, text in ERROR_TEXT.items():
        assert Rejection(code).payload() == {"code": code, "message": text}
    assert Rejection("room_full", "custom").message == "custom"


@pytest.mark.parametrize(
    "payload",
    [{"blob": b"\x00"}, "\ud800", {"k": ["\udfff"]}, "nested"],
)
def test_payload_json_cannot_carry_is_bad_request(payload):
    from parley_relay.core import Rejection, payload_size

    if payload == "nested":  # deeper than the encoder recurses: RecursionError inside
        payload = current = {}
        for _ in range(100_000):
            current["k"] = current = {}
    with pytest.raises(Rejection) as err:
        payload_size(payload)
    assert err.value.code == "bad_request"


def test_a_clock_stepping_back_takes_no_tokens_away():
    from parley_relay.config import RateLimit
    from parley_relay.core import TokenBucket

    times = iter([10.0, 4.0, 4.0])
    bucket = TokenBucket(RateLimit(rate=100.0, burst=2), lambda: next(times))
    assert bucket.allow() and bucket.allow()  # the burst, although the clock went back 6 s


def test_validated_identities_and_decisions_are_immutable():
    from parley_relay.core import Forward, Identity

    for obj, field in ((Identity(room="r", name="n"), "room"), (Forward("e", "r"), "room")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, "other")
