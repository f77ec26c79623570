"""Safety numbers: 60 decimal digits both users compare out of band to rule out a MITM."""

from __future__ import annotations

import hashlib

from parley_crypto import _wire
from parley_crypto.identity import PeerIdentity

DIGITS = 60
_CHUNKS = DIGITS // 5


def safety_number(a: PeerIdentity, b: PeerIdentity) -> str:
    """60 digits from both identity keys, independent of argument order.

    SHA-512 over the two canonical key encodings in sorted order; each of 12 five-byte
    chunks gives 5 digits (40 bits mod 100000, bias < 2^-20), about 199 bits in all, so
    substituting either key changes the number except with negligible probability.
    """
    first, second = sorted((a.key_bytes, b.key_bytes))
    digest = hashlib.sha512(_wire.lp(b"parley/v1/safety-number", first, second)).digest()
    chunks = (int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100000 for i in range(_CHUNKS))
    return "".join(f"{chunk:05d}" for chunk in chunks)


def format_safety_number(number: str) -> str:
    """``"12345 67890 ..."``: 12 groups of 5 digits for reading aloud."""
    if (
        not isinstance(number, str)
        or len(number) != DIGITS
        or not (number.isascii() and number.isdigit())
    ):
        raise ValueError(f"a safety number is {DIGITS} digits")
    return " ".join(number[i : i + 5] for i in range(0, DIGITS, 5))
