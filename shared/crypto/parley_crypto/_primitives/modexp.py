"""Modular arithmetic with two interchangeable backends: gmpy2 (GMP) and pure Python.

Both backends return plain ``int`` so results compare equal across them. gmpy2 is used when
importable; tests and the benchmark switch backends with :func:`use_backend`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

try:  # gmpy2 is a declared dependency, but the package must still work without it
    import gmpy2 as _gmpy2
except ImportError:  # pragma: no cover - exercised only where gmpy2 is missing
    _gmpy2 = None

BACKENDS = ("gmpy2", "python") if _gmpy2 is not None else ("python",)
_backend = BACKENDS[0]


def backend() -> str:
    """Name of the backend in use: ``"gmpy2"`` or ``"python"``."""
    return _backend


def set_backend(name: str) -> None:
    """Select the arithmetic backend for the whole process."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown or unavailable modexp backend {name!r}; have {BACKENDS}")
    _backend = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily select a backend (for tests and benchmarks)."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def powmod(base: int, exponent: int, modulus: int) -> int:
    """``base ** exponent mod modulus`` for exponent >= 0."""
    if _backend == "gmpy2":
        return int(_gmpy2.powmod(base, exponent, modulus))
    return pow(base, exponent, modulus)


def invert(value: int, modulus: int) -> int:
    """Inverse of ``value`` modulo ``modulus``; ValueError when none exists."""
    if _backend == "gmpy2":
        try:
            return int(_gmpy2.invert(value, modulus))
        except ZeroDivisionError as exc:
            raise ValueError("not invertible") from exc
    return pow(value, -1, modulus)


def gcd(a: int, b: int) -> int:
    """Greatest common divisor."""
    if _backend == "gmpy2":
        return int(_gmpy2.gcd(a, b))
    return math.gcd(a, b)


def jacobi(a: int, n: int) -> int:
    """Jacobi symbol (a/n) for odd n > 0; equals the Legendre symbol when n is prime.

    Used as Euler's criterion: for a safe prime p = 2q + 1, Y^q = 1 (mod p) exactly when
    (Y/p) = 1, and the symbol costs microseconds instead of a full exponentiation.
    """
    if n <= 0 or n % 2 == 0:
        raise ValueError("jacobi needs an odd positive modulus")
    if _backend == "gmpy2":
        return int(_gmpy2.jacobi(a, n))
    a %= n
    result = 1
    while a:
        # Pull out factors of two; (2/n) = -1 exactly when n = 3 or 5 (mod 8).
        twos = (a & -a).bit_length() - 1
        a >>= twos
        if twos & 1 and n % 8 in (3, 5):
            result = -result
        # Quadratic reciprocity for odd a, n.
        if a % 4 == 3 and n % 4 == 3:
            result = -result
        a, n = n % a, a
    return result if n == 1 else 0


_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def is_probable_prime(n: int, rounds: int = 40) -> bool:
    """Miller-Rabin with random bases (error below 4^-rounds), after trial division."""
    import secrets  # local: only parameter checks need it

    if n < 2:
        return False
    for small in _SMALL_PRIMES:
        if n % small == 0:
            return n == small
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        a = 2 + secrets.randbelow(n - 3)
        x = powmod(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def powmod_fixed(base: int, exponent: int, modulus: int) -> int:
    """``base ** exponent mod modulus`` for a base that repeats (the group generator).

    Same result as :func:`powmod`; kept separate so a precomputed-table method can serve the
    generator without touching variable-base call sites.
    """
    return powmod(base, exponent, modulus)
