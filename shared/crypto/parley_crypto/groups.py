"""Finite-field Diffie-Hellman groups: the RFC 7919 / RFC 3526 constants and file loading.

Every named group is a safe prime p = 2q + 1 with generator 2, which generates the subgroup
of prime order q (the quadratic residues). Groups loaded from a file must pass the same
rules unless the caller explicitly allows weak parameters (the original demo files only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from parley_crypto._primitives import modexp
from parley_crypto._primitives.constants import PRIMES_HEX
from parley_crypto.errors import WeakParameters

DEFAULT = "ffdhe2048"
MIN_BITS = 2048
MAX_BITS = 8192  # bounds the primality tests' cost on hostile files
_MAX_LINE = 2600  # enough for an 8192-bit value in decimal (2467 digits) or hex
_MAX_FILE = 64 * 1024

# (modulus bits, symmetric-equivalent strength per NIST SP 800-57 Part 1, short-exponent
# minimum from RFC 7919 Appendix A), used to size DH private exponents.
_STRENGTH = (
    (8192, 192, 400),
    (6144, 176, 375),
    (4096, 152, 325),
    (3072, 128, 275),
    (2048, 112, 225),
)


@dataclass(frozen=True)
class Group:
    """A prime-order-subgroup DH group. ``verified`` means p is a checked safe prime and g
    generates the order-q subgroup, so subgroup membership can use the Legendre symbol."""

    name: str
    p: int
    g: int
    verified: bool = False
    q: int = field(init=False)
    bits: int = field(init=False)
    _g_in_subgroup: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr in ("p", "g"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"group {attr} must be an int")
        if self.p < 5 or self.p % 2 == 0:
            raise WeakParameters("modulus", f"p must be an odd number >= 5, got {self.p}")
        if not 2 <= self.g <= self.p - 2:
            raise WeakParameters("generator", f"g must satisfy 2 <= g <= p-2, got {self.g}")
        object.__setattr__(self, "q", (self.p - 1) // 2)
        object.__setattr__(self, "bits", self.p.bit_length())
        in_sub = self.verified or modexp.powmod(self.g, self.q, self.p) == 1
        object.__setattr__(self, "_g_in_subgroup", in_sub)

    @property
    def byte_length(self) -> int:
        """Length of p in bytes: the fixed width of encoded group elements."""
        return (self.bits + 7) // 8

    @property
    def hex_digits(self) -> int:
        """Most hex digits a canonical element or exponent of this group can have."""
        return (self.bits + 3) // 4

    @property
    def strength(self) -> int:
        """Estimated symmetric security strength in bits (0 below 2048-bit p)."""
        return next((s for b, s, _ in _STRENGTH if self.bits >= b), 0)

    @property
    def exponent_bits(self) -> int:
        """DH private exponent size: at least twice the strength and at least RFC 7919's
        short-exponent figure (section 5.2, Appendix A), rounded up to a multiple of 64; the
        full subgroup order for groups under 2048 bits."""
        row = next((row for row in _STRENGTH if self.bits >= row[0]), None)
        if row is None:
            return self.q.bit_length()
        wanted = max(2 * row[1], row[2])
        return min(-(-wanted // 64) * 64, self.q.bit_length())

    def in_subgroup(self, value: int) -> bool:
        """True when ``value`` lies in the order-q subgroup (value^q = 1 mod p).

        For verified safe-prime groups this is Euler's criterion evaluated as a Legendre
        symbol; for unverified groups whose g lies outside the subgroup there is no subgroup
        to check, so only the caller's range checks apply.
        """
        if self.verified:
            return modexp.jacobi(value, self.p) == 1
        if self._g_in_subgroup:
            return modexp.powmod(value, self.q, self.p) == 1
        return True


def _named(name: str) -> Group:
    p = int(PRIMES_HEX[name].replace(" ", ""), 16)
    return Group(name, p, 2, verified=True)


_NAMED: dict[str, Group] = {name: _named(name) for name in PRIMES_HEX}
_registered: dict[str, Group] = {}

NAMES = tuple(_NAMED)


def get(name: str = DEFAULT) -> Group:
    """A named group: ffdhe2048/3072/4096 (RFC 7919), modp2048/3072/4096 (RFC 3526), or one
    added with :func:`register`. Raises KeyError for an unknown name."""
    if not isinstance(name, str):
        raise KeyError(name)
    group = _NAMED.get(name) or _registered.get(name)
    if group is None:
        raise KeyError(f"unknown group {name!r}; known: {', '.join(NAMES + tuple(_registered))}")
    return group


def register(group: Group) -> Group:
    """Make a loaded group reachable through :func:`get` (for the legacy demo files)."""
    if group.name in _NAMED:
        raise ValueError(f"cannot replace the named group {group.name!r}")
    _registered[group.name] = group
    return group


_LINE = re.compile(r"^\s*(?:([A-Za-z]\w*)\s*[:=]?\s*)?(0[xX][0-9a-fA-F]+|\d+)\s*$")


def parse(text: str) -> tuple[int, int]:
    """Parse a parameter file: two values, modulus then generator.

    Accepts the original design's two-line format (``q`` = prime, ``a`` = generator), with or
    without the labels (``q = 353``, ``q: 353`` or ``353``), decimal or ``0x`` hex; blank
    lines and ``#`` comments are ignored.
    """
    values: list[int] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line) if len(line) <= _MAX_LINE else None
        if match is None or len(values) == 2:
            raise WeakParameters(
                "format", f"expected two lines 'q = <prime>' and 'a = <g>': {line[:60]!r}"
            )
        label, number = match.groups()
        if label is not None and label.lower() not in ("q", "a", "p", "g", "prime", "generator"):
            raise WeakParameters("format", f"unknown label {label!r}")
        values.append(int(number, 0))
    if len(values) != 2:
        raise WeakParameters("format", f"expected 2 values (q then a), found {len(values)}")
    if values[0].bit_length() > MAX_BITS:
        raise WeakParameters("size", f"p has more than {MAX_BITS} bits")
    return values[0], values[1]


def check(p: int, g: int) -> None:
    """Raise WeakParameters naming the first rule (size, prime, safe-prime, generator) that
    ``p``, ``g`` fail."""
    if p.bit_length() < MIN_BITS:
        raise WeakParameters("size", f"p has {p.bit_length()} bits; at least {MIN_BITS} required")
    if not modexp.is_probable_prime(p):
        raise WeakParameters("prime", "p is not prime")
    q = (p - 1) // 2
    if not modexp.is_probable_prime(q):
        raise WeakParameters(
            "safe-prime", "p is prime but (p-1)/2 is not, so p is not a safe prime"
        )
    if not (2 <= g <= p - 2 and modexp.powmod(g, q, p) == 1):
        raise WeakParameters(
            "generator",
            "g does not generate the order-q subgroup (need g^q = 1 mod p, 1 < g < p-1)",
        )


def load(path: str | Path, allow_weak: bool = False) -> Group:
    """Load and validate a parameter file. With ``allow_weak=True`` a group that fails the
    rules is still returned (unverified) — for the original demo files only."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_FILE + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeakParameters("unreadable", f"{path}: {exc}") from exc
    if len(raw) > _MAX_FILE:
        raise WeakParameters("format", f"{path} is larger than {_MAX_FILE} bytes")
    p, g = parse(text)
    try:
        check(p, g)
    except WeakParameters:
        if not allow_weak:
            raise
        return Group(f"file:{path.name}", p, g, verified=False)
    return Group(f"file:{path.name}", p, g, verified=True)
