"""Safety numbers: 60 decimal digits both users compare out of band to rule out a MITM.

Signal's shape (per party, not per pair): each party's half is 30 digits computed from that
party's key alone, so a man in the middle who substitutes a key must match the honest
party's half (a second preimage of about 2^112 work with the iterations below), not find
a claw between two halves of his choice (about 2^100 for round 1's joint hash).

    half(P) = digits30(H^ITERATIONS) where H_0 = SHA-512(VERSION || key(P) || id(P)),
              H_i = SHA-512(H_(i-1) || key(P))
    key(P)  = the canonical key encoding (group name, y at the group's fixed width)
    id(P)   = the key id (hex SHA-256 of key(P)): stable, unlike the display name
    digits30(H) = for each of the first six 5-byte chunks c of H: c mod 100000 as 5 digits

The number shown is both halves in sorted order, so both sides show the same 60 digits.
"""

from __future__ import annotations

import functools
import hashlib

from parley_crypto.identity import PeerIdentity

DIGITS = 60
HALF_DIGITS = DIGITS // 2
# Signal's iteration count: each guess of a second-preimage search costs 5200 SHA-512
# calls (about 2^12.3), on top of the 10^30 (about 2^99.7) values a half can take.
ITERATIONS = 5200
VERSION = b"\x00\x02"  # safety-number format version (protocol v2)
_CHUNKS = HALF_DIGITS // 5


def _digits(digest: bytes) -> str:
    chunks = (int.from_bytes(digest[5 * i : 5 * i + 5], "big") for i in range(_CHUNKS))
    return "".join(f"{chunk % 100000:05d}" for chunk in chunks)


@functools.lru_cache(maxsize=64)
def _half(key_bytes: bytes, key_id: str) -> str:
    digest = hashlib.sha512(VERSION + key_bytes + key_id.encode("ascii")).digest()
    for _ in range(ITERATIONS):
        digest = hashlib.sha512(digest + key_bytes).digest()
    return _digits(digest)


def half(party: PeerIdentity) -> str:
    """The 30 digits that depend only on ``party``'s key (cached: it costs a few ms)."""
    return _half(party.key_bytes, party.key_id)


def halves(a: PeerIdentity, b: PeerIdentity) -> tuple[str, str]:
    """Both halves in display order (sorted), whichever side is asking."""
    first, second = sorted((half(a), half(b)))
    return first, second


def safety_number(a: PeerIdentity, b: PeerIdentity) -> str:
    """60 digits: the two per-party halves in sorted order (independent of argument order)."""
    return "".join(halves(a, b))


def format_safety_number(number: str) -> str:
    """``"12345 67890 ..."``: 12 groups of 5 digits for reading aloud."""
    if (
        not isinstance(number, str)
        or len(number) != DIGITS
        or not (number.isascii() and number.isdigit())
    ):
        raise ValueError(f"a safety number is {DIGITS} digits")
    return " ".join(number[i : i + 5] for i in range(0, DIGITS, 5))
