"""Long-term identities: our ElGamal key (with its 0600 key file) and peers' public keys."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from parley_crypto import _wire, elgamal, groups
from parley_crypto.errors import (
    HandshakeError,
    InvalidPublicKey,
    LegacyPeer,
    OlderPeer,
    ParleyError,
)

NAME_MAX = 64
PROTOCOL_VERSION = 2
_PAYLOAD_FIELDS = ("v", "name", "group", "y")
_FILE_FIELDS = ("v", "type", "name", "group", "x", "y")
_FILE_TYPE = "parley-identity"


class InvalidKeyFile(ParleyError):
    """The identity key file is unreadable, malformed, or its keys do not match."""


def check_name(name: object, error: type[Exception] = ValueError) -> str:
    """A display name: 1..64 printable characters without surrounding whitespace."""
    if not isinstance(name, str):
        raise error(f"name must be a string, not {type(name).__name__}")
    if not 0 < len(name) <= NAME_MAX or not name.isprintable() or name != name.strip():
        raise error(f"name must be 1..{NAME_MAX} printable characters: {name[:NAME_MAX]!r}")
    return name


def _shown_name(name: object) -> str:
    """A peer-sent name fit for one line of text, or "the peer"."""
    try:
        return check_name(name)
    except ValueError:
        return "the peer"


@dataclass(frozen=True)
class PeerIdentity:
    """Someone's public identity: display name, group name and ElGamal public key y."""

    name: str
    group: str
    y: int
    verify_key: elgamal.VerifyKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name, HandshakeError)
        try:
            group = groups.get(self.group)
        except KeyError as exc:
            raise HandshakeError(f"unknown group {str(self.group)[:40]!r}") from exc
        try:
            object.__setattr__(self, "verify_key", elgamal.VerifyKey(group, self.y))
        except InvalidPublicKey as exc:
            raise HandshakeError(f"invalid identity key: {exc}") from exc

    @property
    def key_bytes(self) -> bytes:
        """Canonical encoding of the key (group name and fixed-width y), used for ids."""
        group = self.verify_key.group
        return _wire.lp(
            b"parley/v1/identity-key",
            group.name.encode(),
            self.y.to_bytes(group.byte_length, "big"),
        )

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the key: stable, for pinning."""
        return hashlib.sha256(self.key_bytes).hexdigest()

    @property
    def fingerprint(self) -> str:
        """A short human-readable form of key_id, e.g. ``"3f2a 91c0 77de 0b41 5e6a"``."""
        head = self.key_id[:20]
        return " ".join(head[i : i + 4] for i in range(0, 20, 4))

    def to_payload(self) -> dict:
        """The identity payload ``{"v":2, "name", "group", "y"}`` (y as hex)."""
        return {
            "v": PROTOCOL_VERSION,
            "name": self.name,
            "group": self.group,
            "y": _wire.to_hex(self.y),
        }

    @classmethod
    def from_payload(cls, obj: object) -> PeerIdentity:
        """Parse and validate a peer's identity payload.

        Raises LegacyPeer for the original protocol's bare key (a decimal string such as
        ``"55"`` or a number), OlderPeer for a Parley v1 identity, and HandshakeError for
        anything else that is not valid.
        """
        if isinstance(obj, str | int | float) and not isinstance(obj, bool):
            raise LegacyPeer(
                f"peer sent a bare identity key ({str(obj)[:24]!r}): it runs the original, "
                "unauthenticated protocol, which Parley does not speak"
            )
        if _wire.is_v1(obj):
            raise OlderPeer(_shown_name(obj.get("name")))
        data = _wire.fields(obj, _PAYLOAD_FIELDS, HandshakeError, "identity payload")
        _wire.version(data, HandshakeError, "identity payload", PROTOCOL_VERSION)
        check_name(data["name"], HandshakeError)
        if not isinstance(data["group"], str):
            raise HandshakeError("identity group must be a string")
        try:
            group = groups.get(data["group"])
        except KeyError as exc:
            raise HandshakeError(f"unknown group {data['group'][:40]!r}") from exc
        y = _wire.hex_int(data["y"], group.hex_digits, HandshakeError, "identity key y")
        return cls(data["name"], data["group"], y)


@dataclass(frozen=True)
class Identity:
    """Our own long-term identity: a name and an ElGamal signing key."""

    name: str
    signing_key: elgamal.SigningKey = field(repr=False)
    public: PeerIdentity = field(init=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        key = self.signing_key
        object.__setattr__(
            self, "public", PeerIdentity(self.name, key.group.name, key.verify_key.y)
        )

    @classmethod
    def generate(cls, name: str, group: str = groups.DEFAULT) -> Identity:
        """A new identity with a fresh key in the named group."""
        return cls(check_name(name), elgamal.generate(groups.get(group)))

    def public_payload(self) -> dict:
        """What to send as ELGAMAL_PK."""
        return self.public.to_payload()

    def sign(self, message: bytes, hash: str = elgamal.DEFAULT_HASH) -> elgamal.Signature:
        """Sign with the long-term key."""
        return elgamal.sign(self.signing_key, message, hash)

    def save(self, path: str | Path) -> None:
        """Write the key file atomically with mode 0600 (directory created 0700 if missing)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self.signing_key
        doc = {
            "v": 1,
            "type": _FILE_TYPE,
            "name": self.name,
            "group": key.group.name,
            "x": _wire.to_hex(key.x),
            "y": _wire.to_hex(key.verify_key.y),
        }
        fd, tmp = tempfile.mkstemp(prefix=".identity-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Identity:
        """Read a key file written by :meth:`save`; raises InvalidKeyFile if it is not valid."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidKeyFile(f"cannot read identity file {path}: {exc}") from exc
        data = _wire.fields(doc, _FILE_FIELDS, InvalidKeyFile, "identity file")
        _wire.version(data, InvalidKeyFile, "identity file")
        if data["type"] != _FILE_TYPE:
            raise InvalidKeyFile("not a parley identity file")
        try:
            group = groups.get(data["group"])
            x = _wire.hex_int(data["x"], group.hex_digits, InvalidKeyFile, "x")
            y = _wire.hex_int(data["y"], group.hex_digits, InvalidKeyFile, "y")
            identity = cls(check_name(data["name"], InvalidKeyFile), elgamal.SigningKey(group, x))
        except (KeyError, ValueError, TypeError, InvalidPublicKey) as exc:
            raise InvalidKeyFile(f"identity file is invalid: {exc}") from exc
        if identity.public.y != y:
            raise InvalidKeyFile("identity file is corrupt: public key does not match private key")
        return identity
