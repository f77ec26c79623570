"""AES-256 in CFB mode with 128-bit segments (CFB128), via pycryptodome.

pycryptodome's MODE_CFB defaults to 8-bit segments (CFB8); we always pass 128.
"""

from __future__ import annotations

import secrets

from Crypto.Cipher import AES

KEY_BYTES = 32
IV_BYTES = 16


def new_iv() -> bytes:
    """A fresh random 16-byte IV (one per message, never reused under a key)."""
    return secrets.token_bytes(IV_BYTES)


def _cipher(key: bytes, iv: bytes):
    if len(key) != KEY_BYTES:
        raise ValueError(f"AES-256 key must be {KEY_BYTES} bytes, got {len(key)}")
    if len(iv) != IV_BYTES:
        raise ValueError(f"IV must be {IV_BYTES} bytes, got {len(iv)}")
    return AES.new(bytes(key), AES.MODE_CFB, iv=bytes(iv), segment_size=128)


def encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """Encrypt with AES-256-CFB128."""
    return _cipher(key, iv).encrypt(bytes(plaintext))


def decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Decrypt with AES-256-CFB128."""
    return _cipher(key, iv).decrypt(bytes(ciphertext))
