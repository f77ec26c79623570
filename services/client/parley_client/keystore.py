"""The client's home: this user's long-term identity, the contacts, and each room's state.

Layout under ``PARLEY_HOME`` (a 0700 folder; every file 0600, refused otherwise, like ssh):

- ``identity.json``: the long-term ElGamal key (written by parley_crypto);
- ``contacts.json``: one contact per room, pinned to a key id (:mod:`.contacts`);
- ``rooms/<hash>/``: that room's outbox, seen ids and session (:mod:`.roomstate`);
- ``seats.json``: the relay seats' resume secrets (written by the transport).

The home no longer depends on the display name: the name is a label sent to peers, the key is
who you are. A home of the old layout (``<home>/<name>/identity.json``) is moved up once, with
a line saying so; its name-keyed ``pins.json`` is left where it is (contacts are per room).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from parley_crypto import errors, identity

from . import store
from .contacts import FileContacts
from .roomstate import DiskRoomState, room_folder
from .store import HomeError

KeystoreError = HomeError  # the old name, kept for callers that catch it


class Home:
    """One user's home folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.identity_path = self.path / "identity.json"
        self.notes: list[str] = []  # one-time lines for the user (migration)
        self._contacts: FileContacts | None = None

    def _ensure(self) -> None:
        store.ensure_dir(self.path)

    def load_or_create_identity(self, name: str, group: str = "ffdhe2048") -> identity.Identity:
        """This home's identity, shown to peers as ``name``; generated (0600) on first use."""
        self._ensure()
        self._migrate(name)
        if not self.identity_path.exists():
            return self._create(name, group)
        store.check_private(self.identity_path)
        try:
            ident = identity.Identity.load(self.identity_path)
        except (errors.ParleyError, OSError, ValueError, KeyError, TypeError) as e:
            raise HomeError(f"cannot read identity {self.identity_path}: {e}") from None
        if ident.public.group != group:
            raise HomeError(
                f"identity {self.identity_path} uses group {ident.public.group}, "
                f"not {group}; pass --group {ident.public.group} or use another --home"
            )
        if ident.name != name:
            ident = dataclasses.replace(ident, name=name)  # the key is who we are, not the name
        return ident

    def _create(self, name: str, group: str) -> identity.Identity:
        ident = identity.Identity.generate(name, group=group)
        try:
            ident.save(self.identity_path)
            os.chmod(self.identity_path, store.FILE_MODE)
        except OSError as e:
            raise HomeError(f"cannot write identity {self.identity_path}: {e}") from None
        return ident

    def _migrate(self, name: str) -> None:
        """Move ``<home>/<name>/identity.json`` (the old layout) up to ``<home>``, once."""
        old_dir = self.path / name
        old = old_dir / "identity.json"
        if self.identity_path.exists() or not old.is_file() or old.is_symlink():
            return
        store.check_private(old_dir)
        store.check_private(old)
        try:
            os.replace(old, self.identity_path)
        except OSError as e:
            raise HomeError(f"cannot move {old} to {self.identity_path}: {e.strerror}") from None
        self.notes.append(
            f"moved your identity from {old} to {self.identity_path} (the home no longer "
            "depends on your name); each room pins its peer again on first use, so compare "
            "safety numbers with /verify"
        )

    def contacts(self) -> FileContacts:
        """The contact store (``contacts.json``)."""
        if self._contacts is None:
            self._ensure()
            self._contacts = FileContacts(self.path / "contacts.json")
        return self._contacts

    def room(self, room: str) -> DiskRoomState:
        """The room's durable state; refuses a room another process is using from this home."""
        self._ensure()
        return DiskRoomState(room_folder(self.path, room), room)
