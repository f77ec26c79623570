"""Diffie-Hellman arithmetic over a safe-prime group (no input parsing here)."""

from __future__ import annotations

import secrets

from parley_crypto._primitives import modexp


def private_exponent(q: int, bits: int) -> int:
    """A uniform exponent in [2, min(2^bits, q) - 1] drawn from ``secrets``."""
    bound = min(1 << bits, q)
    return 2 + secrets.randbelow(bound - 2)


def public_value(g: int, x: int, p: int) -> int:
    """g^x mod p."""
    return modexp.powmod_fixed(g, x, p)


def valid_range(y: int, p: int) -> bool:
    """1 < y < p-1: excludes 0, 1 and p-1 (the order-1 and order-2 elements) and beyond."""
    return 1 < y < p - 1


def shared_int(x: int, peer: int, p: int) -> int:
    """peer^x mod p."""
    return modexp.powmod(peer, x, p)
