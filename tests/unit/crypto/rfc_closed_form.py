"""An independent derivation of the RFC 3526 / RFC 7919 primes from their closed forms.

RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k)
RFC 7919: p = 2^n - 2^(n-64) + (floor(2^(n-130) * e) + X) * 2^64 - 1
pi and e are computed here with integer series, so a typo in the hex constants shows up.
"""

from __future__ import annotations

OFFSETS = {
    "modp2048": ("pi", 124476),
    "modp3072": ("pi", 1690314),
    "modp4096": ("pi", 240904),
    "ffdhe2048": ("e", 560316),
    "ffdhe3072": ("e", 2625351),
    "ffdhe4096": ("e", 5736041),
}
GUARD = 64


def _arctan_inverse(x: int, one: int) -> int:
    total = term = one // x
    n, sign = 1, -1
    while term:
        term //= x * x
        n += 2
        total += sign * (term // n)
        sign = -sign
    return total


def floor_pi_times_2_to(bits: int) -> int:
    """floor(2^bits * pi) via Machin's formula (64 guard bits)."""
    one = 1 << (bits + GUARD)
    return (16 * _arctan_inverse(5, one) - 4 * _arctan_inverse(239, one)) >> GUARD


def floor_e_times_2_to(bits: int) -> int:
    """floor(2^bits * e) via sum 1/k! (64 guard bits)."""
    one = 1 << (bits + GUARD)
    total, term, k = 0, one, 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> GUARD


def closed_form(name: str, bits: int | None = None, offset: int | None = None) -> int:
    """The prime named ``name`` (or, with bits/offset, another member of the same family)."""
    constant, default_offset = OFFSETS.get(name, ("pi", None))
    n = bits or int(name[-4:])
    k = default_offset if offset is None else offset
    if constant == "pi":
        return 2**n - 2 ** (n - 64) - 1 + 2**64 * (floor_pi_times_2_to(n - 130) + k)
    return 2**n - 2 ** (n - 64) + (floor_e_times_2_to(n - 130) + k) * 2**64 - 1
