"""ElGamal signature arithmetic in the order-q subgroup of a safe-prime group (no parsing).

HAC Algorithm 11.64 works modulo p-1: s = k^-1 (h - x r) mod (p-1) with gcd(k, p-1) = 1.
For a safe prime p = 2q + 1 that form has two flaws: (r, s + q) verifies whenever (r, s)
does (r has order q, so r^q = 1), and because k must be odd, s mod 2 = (h - x r) mod 2
publishes x mod 2 for every signature with odd r. Parley v2 signs in the subgroup instead
(as DSA does): k uniform in [1, q-1], r = g^k mod p, s = k^-1 (h - x r) mod q, and a
verifier demands 0 < s < q, so each (message, k) has exactly one valid signature.
Verification is unchanged: y^r r^s = g^h (mod p).
"""

from __future__ import annotations

import secrets

from parley_crypto._primitives import modexp


def sign(p: int, g: int, x: int, h: int, k: int | None = None) -> tuple[int, int]:
    """Sign the message representative ``h`` with private key ``x``.

    ``k`` is drawn fresh (uniform in [1, q-1]) unless given; a given k is only for
    known-answer tests, since reusing k reveals x. s = 0 is skipped because a verifier
    rejects it (HAC Note 11.65).
    """
    q = (p - 1) // 2
    h %= q
    while True:
        nonce = k if k is not None else 1 + secrets.randbelow(q - 1)
        r = modexp.powmod_fixed(g, nonce, p)
        s = modexp.invert(nonce, q) * (h - x * r) % q
        if s:
            return r, s
        if k is not None:
            raise ValueError("this k gives s = 0; choose another")


def verify(p: int, g: int, y: int, h: int, r: int, s: int) -> bool:
    """Check y^r r^s = g^h (mod p). Range and subgroup checks are the caller's job and come
    first (0 < s < q, r in the order-q subgroup).

    y is the signer's long-term key, the same for every message of a session, so it goes
    through the fixed-base path too (a table is built once it has been seen a few times).
    Exponents are reduced mod q: y, r and g all have order q.
    """
    q = (p - 1) // 2
    left = modexp.powmod_fixed(y, r % q, p) * modexp.powmod(r, s, p) % p
    return left == modexp.powmod_fixed(g, h % q, p)
