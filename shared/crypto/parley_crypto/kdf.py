"""HKDF-SHA256 (RFC 5869) and HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac

_HASH_LEN = 32


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key``."""
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf_extract(salt: bytes | None, ikm: bytes) -> bytes:
    """RFC 5869 section 2.2; an absent salt is HashLen zero bytes."""
    return hmac_sha256(salt or bytes(_HASH_LEN), ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 section 2.3."""
    if not 0 < length <= 255 * _HASH_LEN:
        raise ValueError(f"HKDF length must be 1..{255 * _HASH_LEN}")
    okm, block = b"", b""
    counter = 1
    while len(okm) < length:
        block = hmac_sha256(prk, block + info + bytes([counter]))
        okm += block
        counter += 1
    return okm[:length]


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """Derive ``length`` bytes from ``ikm`` (RFC 5869 extract-then-expand)."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)
