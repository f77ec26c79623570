"""ElGamal signatures over the named groups, in the order-q subgroup, hash-then-sign.

The HAC 11.64 equation y^r r^s = g^h (mod p), with s computed mod q instead of mod p-1
(see ``_primitives/elgamal.py`` for why: no malleability, no parity leak). Messages are
hashed first: SHA-256 by default, SHA-1 only as a legacy option the local user chooses
(:func:`peer_hash_allowed`). Verification checks 1 < r < p, 0 < s < q and that r lies in
the order-q subgroup before any exponentiation. The subgroup check on r matters: with
g = 2 dividing p-1, the pair r = (p-1)/2, s = (-h mod q, made even) satisfies
y^r r^s = g^h for any key (Bleichenbacher 1996); that r is a quadratic non-residue, so
the check rejects it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from parley_crypto import _wire, groups
from parley_crypto._primitives import elgamal as _elgamal
from parley_crypto._primitives import modexp
from parley_crypto.errors import InvalidPublicKey
from parley_crypto.groups import Group

HASHES = ("sha256", "sha1")
DEFAULT_HASH = "sha256"
LEGACY_HASH = "sha1"
_DISPLAY = {"sha256": "SHA-256", "sha1": "legacy SHA-1"}


def display_name(hash: str) -> str:
    """How the UI names a signature hash: ``"SHA-256"`` or ``"legacy SHA-1"``."""
    if hash not in _DISPLAY:
        raise ValueError(f"unsupported hash {hash!r}; choose one of {HASHES}")
    return _DISPLAY[hash]


def peer_hash_allowed(local: str, peer: str) -> bool:
    """The local hash policy: a peer may sign with SHA-256 always, with SHA-1 only when the
    local user chose the legacy ``sha1`` option themselves (never silently)."""
    return peer == DEFAULT_HASH or (peer == LEGACY_HASH and local == LEGACY_HASH)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def digest(message: bytes, hash: str = DEFAULT_HASH) -> bytes:
    """The digest that signing uses for ``message`` (SHA-256, or SHA-1 for legacy peers)."""
    if hash not in HASHES:
        raise ValueError(f"unsupported hash {hash!r}; choose one of {HASHES}")
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError("message must be bytes")
    return hashlib.new(hash, bytes(message)).digest()


@dataclass(frozen=True)
class VerifyKey:
    """A public signing key y = g^x mod p; validated on construction."""

    group: Group
    y: int

    def __post_init__(self) -> None:
        if not _is_int(self.y):
            raise InvalidPublicKey("signing public key must be an integer")
        if not 1 < self.y < self.group.p - 1:
            raise InvalidPublicKey("signing public key out of range (need 1 < y < p-1)")
        if not self.group.in_subgroup(self.y):
            raise InvalidPublicKey("signing public key is not in the prime-order subgroup")


@dataclass(frozen=True)
class SigningKey:
    """A long-term private signing key; ``verify_key`` is derived, never supplied."""

    group: Group
    x: int = field(repr=False)
    verify_key: VerifyKey = field(init=False)

    def __post_init__(self) -> None:
        if not _is_int(self.x):
            raise TypeError("signing key exponent must be an int")
        if not 1 <= self.x < self.group.q:
            raise ValueError("signing key exponent out of range (need 1 <= x < q)")
        y = modexp.powmod_fixed(self.group.g, self.x, self.group.p)
        object.__setattr__(self, "verify_key", VerifyKey(self.group, y))


@dataclass(frozen=True)
class Signature:
    """An ElGamal signature (r, s). Ranges depend on the group and are checked by verify()."""

    r: int
    s: int

    def __post_init__(self) -> None:
        if not (_is_int(self.r) and _is_int(self.s)):
            raise TypeError("signature r and s must be ints")
        if self.r <= 0 or self.s <= 0:
            raise ValueError("signature r and s must be positive")

    def to_payload(self) -> dict:
        """``{"r": hex, "s": hex}`` as carried in handshake payloads and envelopes."""
        return {"r": _wire.to_hex(self.r), "s": _wire.to_hex(self.s)}

    @classmethod
    def from_payload(
        cls, obj: object, group: Group, error: type[Exception], what: str
    ) -> Signature:
        """Parse ``{"r", "s"}`` strictly (canonical hex, at most p's digits, non-zero), raising
        ``error``. Ranges against p are left to :func:`verify`."""
        data = _wire.fields(obj, ("r", "s"), error, what)
        r = _wire.hex_int(data["r"], group.hex_digits, error, f"{what} r")
        s = _wire.hex_int(data["s"], group.hex_digits, error, f"{what} s")
        if r == 0 or s == 0:
            raise error(f"{what} is invalid (zero component)")
        return cls(r, s)


def generate(group: Group | None = None) -> SigningKey:
    """A fresh long-term key with x uniform in [1, q-1]."""
    group = group or groups.get()
    return SigningKey(group, 1 + secrets.randbelow(group.q - 1))


def sign(signing_key: SigningKey, message: bytes, hash: str = DEFAULT_HASH) -> Signature:
    """Sign ``message`` with a fresh k (uniform in [1, q-1])."""
    h = int.from_bytes(digest(message, hash), "big")
    group = signing_key.group
    r, s = _elgamal.sign(group.p, group.g, signing_key.x, h)
    return Signature(r, s)


def verify(
    verify_key: VerifyKey, message: bytes, signature: object, hash: str = DEFAULT_HASH
) -> bool:
    """True only for a valid signature; False (never an exception) for any bad signature."""
    h = int.from_bytes(digest(message, hash), "big")
    r, s = getattr(signature, "r", None), getattr(signature, "s", None)
    if not (_is_int(r) and _is_int(s)):
        return False
    group = verify_key.group
    if not (1 < r < group.p and 0 < s < group.q):
        return False
    if not group.in_subgroup(r):
        return False
    return _elgamal.verify(group.p, group.g, verify_key.y, h, r, s)
