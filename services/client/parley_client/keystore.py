"""On-disk keys: this user's long-term identity and the peers pinned on first use.

Layout under ``PARLEY_HOME``: ``<name>/identity.json`` (written by parley_crypto, mode 0600)
and ``<name>/pins.json`` (peer name -> key id, mode 0600). Each local name has its own pins,
because two local users may well know different people under the same name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from parley_crypto import errors, identity

from .config import ConfigError

NEW, MATCH, CHANGED = "new", "match", "changed"


class KeystoreError(ConfigError):
    """The key folder is unusable (permissions, corrupt file); shown as one line, exit 2."""


@dataclass(frozen=True)
class PinResult:
    """Outcome of checking a peer's key against the pins: ``new``, ``match`` or ``changed``."""

    status: str
    pinned_key_id: str | None = None


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 so a crash never leaves a half-written pin file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Keystore:
    """Identity and pins of one local name under one home folder."""

    def __init__(self, home: Path, name: str):
        self.dir = Path(home) / name
        self.name = name
        self.identity_path = self.dir / "identity.json"
        self.pins_path = self.dir / "pins.json"

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise KeystoreError(f"cannot create key folder {self.dir}: {e.strerror}") from None

    def load_or_create_identity(self, group: str = "ffdhe2048") -> identity.Identity:
        """Return this name's identity, generating and saving it (0600) on first use."""
        self._ensure_dir()
        if self.identity_path.exists():
            try:
                ident = identity.Identity.load(self.identity_path)
            except (errors.ParleyError, OSError, ValueError, KeyError, TypeError) as e:
                raise KeystoreError(f"cannot read identity {self.identity_path}: {e}") from None
            if ident.public.group != group:
                raise KeystoreError(
                    f"identity {self.identity_path} uses group {ident.public.group}, "
                    f"not {group}; pass --group {ident.public.group} or use another --home"
                )
            return ident
        ident = identity.Identity.generate(self.name, group=group)
        try:
            ident.save(self.identity_path)
            os.chmod(self.identity_path, 0o600)
        except OSError as e:
            raise KeystoreError(f"cannot write identity {self.identity_path}: {e}") from None
        return ident

    def pins(self) -> dict[str, dict]:
        """All pinned peers: name -> {"key_id", "fingerprint", "pinned_at"}."""
        try:
            data = json.loads(self.pins_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise KeystoreError(f"cannot read pinned keys {self.pins_path}: {e}") from None
        if not isinstance(data, dict):
            raise KeystoreError(f"pinned keys file {self.pins_path} is not a JSON object")
        return {k: v for k, v in data.items() if isinstance(v, dict) and "key_id" in v}

    def check(self, peer_name: str, key_id: str) -> PinResult:
        """Compare a peer's key id with its pin; does not change anything."""
        pinned = self.pins().get(peer_name)
        if pinned is None:
            return PinResult(NEW)
        if pinned["key_id"] == key_id:
            return PinResult(MATCH, pinned["key_id"])
        return PinResult(CHANGED, pinned["key_id"])

    def pin(self, peer_name: str, key_id: str, fingerprint: str = "") -> None:
        """Pin (or re-pin after ``/trust``) a peer's key."""
        self._ensure_dir()
        pins = self.pins()
        pins[peer_name] = {"key_id": key_id, "fingerprint": fingerprint, "pinned_at": time.time()}
        _write_private(self.pins_path, json.dumps(pins, indent=2, sort_keys=True) + "\n")
