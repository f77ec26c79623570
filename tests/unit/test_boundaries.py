"""Boundaries that mutation testing (`make mutate`, docs/testing.md) found unpinned: each
test here kills mutants that every other test let survive."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from parley_crypto import aes_cfb, kdf

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
