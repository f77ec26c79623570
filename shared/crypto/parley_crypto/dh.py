"""Ephemeral Diffie-Hellman over the named groups, with peer-value validation."""

from __future__ import annotations

from dataclasses import dataclass, field

from parley_crypto import groups
from parley_crypto._primitives import dh as _dh
from parley_crypto.errors import InvalidPublicKey
from parley_crypto.groups import Group


def _require_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def validate_public(group: Group, y: object) -> int:
    """Return ``y`` if it is a valid peer public value, else raise InvalidPublicKey.

    Rules: an int with 1 < y < p-1 (rejects 0, 1, p-1 and anything >= p) and y in the
    order-q subgroup (y^q = 1 mod p), so a peer cannot confine the secret to a small subgroup.
    """
    if not isinstance(y, int) or isinstance(y, bool):
        raise InvalidPublicKey(f"DH public value must be an integer, not {type(y).__name__}")
    if not _dh.valid_range(y, group.p):
        raise InvalidPublicKey("DH public value out of range (need 1 < Y < p-1)")
    if not group.in_subgroup(y):
        raise InvalidPublicKey("DH public value is not in the prime-order subgroup (Y^q != 1)")
    return y


@dataclass(frozen=True)
class DHPublicKey:
    """A validated peer DH value."""

    group: Group
    y: int

    def __post_init__(self) -> None:
        validate_public(self.group, self.y)


@dataclass(frozen=True)
class DHPrivateKey:
    """An ephemeral DH key; ``public`` (g^x mod p) is computed, never supplied."""

    group: Group
    x: int = field(repr=False)
    public: int = field(init=False)

    def __post_init__(self) -> None:
        _require_int(self.x, "DH private exponent")
        if not 2 <= self.x < self.group.q:
            raise ValueError("DH private exponent out of range (need 2 <= x < q)")
        object.__setattr__(self, "public", _dh.public_value(self.group.g, self.x, self.group.p))


def generate(group: Group | None = None) -> DHPrivateKey:
    """A fresh private key; the exponent has ``group.exponent_bits`` bits of entropy."""
    group = group or groups.get()
    return DHPrivateKey(group, _dh.private_exponent(group.q, group.exponent_bits))


def shared_secret(private_key: DHPrivateKey, peer_public: int) -> bytes:
    """Validate ``peer_public`` and return (peer^x mod p) as fixed-length big-endian bytes.

    Raises InvalidPublicKey for an invalid peer value or a shared secret of 1.
    """
    group = private_key.group
    y = validate_public(group, peer_public)
    z = _dh.shared_int(private_key.x, y, group.p)
    if z == 1:
        raise InvalidPublicKey("DH shared secret is 1")
    return z.to_bytes(group.byte_length, "big")
