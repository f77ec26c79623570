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


# Fixed-base exponentiation for the group generator. Window tables hold
# base^(d * 2^(W*i)) for every window position i and digit d, so base^e costs one modular
# multiplication per non-zero W-bit digit of e and no squarings: about 3x faster than a
# generic powmod for 2048-bit exponents. A table costs (2^W - 1) * ceil(bits / W) products
# to build (about 3 MB and a few tens of ms for a 2048-bit modulus with W = 5), so it is
# built only once a (base, modulus) pair has been used a few times (the generator, and a
# peer's long-term key during a session), and the few most recently used are kept.
_WINDOW = 5
_BUILD_AFTER_USES = 4
_MAX_TABLES = 4
_tables: dict[tuple[str, int, int], tuple[list[list], object]] = {}
_uses: dict[tuple[str, int, int], int] = {}


def _convert(value: int):
    return _gmpy2.mpz(value) if _backend == "gmpy2" else value


def _build_table(base: int, modulus: int) -> tuple[list[list], object]:
    m = _convert(modulus)
    current = _convert(base) % m
    table = []
    for _ in range(-(-modulus.bit_length() // _WINDOW)):
        row = [None, current]
        for _digit in range(2, 1 << _WINDOW):
            row.append(row[-1] * current % m)
        table.append(row)
        current = row[-1] * current % m  # base^(2^(W*(i+1)))
    return table, m


def precompute(base: int, modulus: int) -> None:
    """Build (or keep) the fixed-base table for ``base`` mod ``modulus`` now."""
    key = (_backend, base, modulus)
    if key not in _tables:
        while len(_tables) >= _MAX_TABLES:
            _tables.pop(next(iter(_tables)))
        _tables[key] = _build_table(base, modulus)


def powmod_fixed(base: int, exponent: int, modulus: int) -> int:
    """``base ** exponent mod modulus`` for a base that repeats (generator, a peer's key).

    Same result as :func:`powmod`; uses a precomputed window table once the pair has been
    seen :data:`_BUILD_AFTER_USES` times.
    """
    key = (_backend, base, modulus)
    entry = _tables.pop(key, None)
    if entry is not None:
        _tables[key] = entry  # most recently used last: eviction takes the oldest
    else:
        uses = _uses.get(key, 0) + 1
        if len(_uses) > 64:
            _uses.clear()
        _uses[key] = uses
        if uses < _BUILD_AFTER_USES or not 0 < base < modulus:
            return powmod(base, exponent, modulus)
        precompute(base, modulus)
        entry = _tables[key]
    table, m = entry
    if exponent < 0 or exponent.bit_length() > len(table) * _WINDOW:
        return powmod(base, exponent, modulus)
    acc = _convert(1)
    mask = (1 << _WINDOW) - 1
    position = 0
    while exponent:
        digit = exponent & mask
        if digit:
            acc = acc * table[position][digit] % m
        exponent >>= _WINDOW
        position += 1
    return int(acc % m)
