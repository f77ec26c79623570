"""ElGamal signature arithmetic, HAC Algorithm 11.64 (no input parsing here).

Signing: r = g^k mod p, s = k^-1 (h - x r) mod (p-1), with k uniform in [1, p-2] and
gcd(k, p-1) = 1. Verification: y^r r^s = g^h (mod p).
"""

from __future__ import annotations

import secrets

from parley_crypto._primitives import modexp


def sign(p: int, g: int, x: int, h: int) -> tuple[int, int]:
    """Sign the message representative ``h`` with private key ``x``.

    A fresh k per signature (never reused: reuse reveals x). s = 0 is skipped because a
    verifier rejects it (HAC Note 11.65).
    """
    order = p - 1
    h %= order
    while True:
        k = 1 + secrets.randbelow(p - 2)
        if modexp.gcd(k, order) != 1:
            continue
        r = modexp.powmod_fixed(g, k, p)
        s = modexp.invert(k, order) * (h - x * r) % order
        if s:
            return r, s


def verify(p: int, g: int, y: int, h: int, r: int, s: int) -> bool:
    """Check y^r r^s = g^h (mod p). Range checks are the caller's job and come first.

    y is the signer's long-term key, the same for every message of a session, so it goes
    through the fixed-base path too (a table is built once it has been seen a few times).
    """
    left = modexp.powmod_fixed(y, r, p) * modexp.powmod(r, s, p) % p
    return left == modexp.powmod_fixed(g, h % (p - 1), p)
