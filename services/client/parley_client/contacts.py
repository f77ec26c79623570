"""Contacts: who a room's conversation is with, decided by the local user, never by a peer's name.

A room's first peer that authenticates becomes the room's contact (trust on first use): the
contact is pinned to that peer's key id and labelled by the user (default: the name the peer
chose, NFC-normalised). From then on trust is decided by (room, key id) alone: any other key in
that room, under any name, is a key change. A peer whose name looks like a contact's (same
UTS #39 skeleton) but whose key differs is flagged.

Two stores share one small interface (:class:`ContactStore`): :class:`MemoryContacts` for tests
and :class:`FileContacts` (``contacts.json`` in the home) for the app; one contract test suite
runs against both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import unicodedata
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from . import store

NEW, MATCH, CHANGED = "new", "match", "changed"
MAX_LABEL = 64  # same bound as a display name

# A small confusables table in the spirit of UTS #39 (confusables.txt): the letters of other
# scripts that render like Latin letters in common fonts, plus the digits that pass for
# letters. Enough to catch the name spoofs a relay can try ("bоb" with a Cyrillic о).
_CONFUSABLES = {
    **dict(zip("аеорсухіјѕԁԛԝһӏвкмнтгпьщ", "aeopcyxijsdqwhlbkmhtrnbw", strict=True)),
    **dict(zip("АВЕЅІЈКМНОРСТХУԌ", "abesijkmhopctxyg", strict=True)),
    **dict(zip("αβεικνορτυχωΑΒΕΗΙΚΜΝΟΡΤΥΧΖ", "abeiknoptuxwabehikmnoptyxz", strict=True)),
    "0": "o",
    "1": "l",
    "|": "l",
    "ı": "i",
    "ℓ": "l",
    "ɡ": "g",
    "ꞵ": "b",
}
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def normalise(name: str) -> str:
    """The NFC form of a name, as labels are stored."""
    return unicodedata.normalize("NFC", name)


def skeleton(name: str) -> str:
    """A UTS #39-style skeleton: names that look alike get the same skeleton.

    NFKD, drop invisible and combining marks, map look-alike letters, fold case; ``l``/``i``
    and ``I`` collapse too (they are one glyph in many fonts)."""
    text = unicodedata.normalize("NFKD", name)
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Mn", "Me", "Cf") or ch.isspace():
            continue
        out.append(_CONFUSABLES.get(ch, ch))
    folded = "".join(out).casefold()
    for many, one in _MULTI:
        folded = folded.replace(many, one)
    return folded.replace("i", "l")


@dataclass(frozen=True)
class Contact:
    """A room's peer as the local user knows it."""

    room: str
    key_id: str
    fingerprint: str
    label: str  # what the user calls this contact (default: the peer's own name at first use)
    peer_name: str  # the name the peer chose when it was pinned (shown, never trusted)
    pinned_at: float
    identity: dict | None = None  # the peer's public identity payload, to pass to rekeys

    @classmethod
    def first_use(cls, room: str, peer) -> Contact:
        """The contact made from a room's first authenticated peer."""
        name = normalise(peer.name)[:MAX_LABEL]
        return cls(room, peer.key_id, peer.fingerprint, name, name, time.time(), _payload(peer))

    def rekeyed(self, peer) -> Contact:
        """The same contact (same label) pinned to a new key after the user's ``/trust``."""
        return replace(
            self,
            key_id=peer.key_id,
            fingerprint=peer.fingerprint,
            peer_name=normalise(peer.name)[:MAX_LABEL],
            pinned_at=time.time(),
            identity=_payload(peer),
        )


def _payload(peer) -> dict | None:
    with contextlib.suppress(Exception):
        return peer.to_payload()
    return None


@dataclass(frozen=True)
class Check:
    """How a peer's key relates to the room's contact.

    ``status``: NEW (the room has no contact yet), MATCH, or CHANGED (another key: blocked).
    ``lookalike``: a contact whose name or label looks like the peer's name but whose key differs.
    """

    status: str
    contact: Contact | None
    lookalike: Contact | None = None


class ContactStore(Protocol):
    """Where contacts live: one per room."""

    def get(self, room: str) -> Contact | None:
        """The room's contact, or None before first use."""

    def put(self, contact: Contact) -> None:
        """Create or replace the contact of ``contact.room``."""

    def all(self) -> list[Contact]:
        """Every contact (for look-alike checks and ``/who``)."""


def check(contacts: ContactStore, room: str, peer) -> Check:
    """Compare an authenticated peer with the room's contact; changes nothing."""
    contact = contacts.get(room)
    if contact is not None and contact.key_id == peer.key_id:
        return Check(MATCH, contact)
    shape = skeleton(peer.name)
    lookalike = next(
        (
            c
            for c in contacts.all()
            if c.key_id != peer.key_id and shape in (skeleton(c.label), skeleton(c.peer_name))
        ),
        None,
    )
    return Check(NEW if contact is None else CHANGED, contact, lookalike)


class MemoryContacts:
    """Contacts in a dict (unit tests)."""

    def __init__(self) -> None:
        self._rooms: dict[str, Contact] = {}

    def get(self, room: str) -> Contact | None:
        return self._rooms.get(room)

    def put(self, contact: Contact) -> None:
        self._rooms[contact.room] = contact

    def all(self) -> list[Contact]:
        return list(self._rooms.values())


class FileContacts:
    """Contacts in ``<home>/contacts.json`` (0600, atomic writes). Several clients may share
    a home (one per room), so each write re-reads the file under a short ``flock``."""

    def __init__(self, path: Path):
        self.path = path
        self._lock_path = path.with_name(".contacts.lock")
        self._rooms = self._read()

    def _read(self) -> dict[str, Contact]:
        data = store.read_json(self.path, {"v": 1, "rooms": {}})
        rooms = data.get("rooms") if isinstance(data, dict) else None
        if not isinstance(rooms, dict):
            raise store.HomeError(f"{self.path} is not a Parley contacts file")
        out = {}
        for room, obj in rooms.items():
            try:
                out[room] = Contact(**{**obj, "room": room})
            except TypeError:
                raise store.HomeError(f"{self.path}: bad entry for room {room[:40]!r}") from None
        return out

    def get(self, room: str) -> Contact | None:
        return self._rooms.get(room)

    def put(self, contact: Contact) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._lock_path, flags, store.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._rooms = self._read()
            self._rooms[contact.room] = contact
            rooms = {room: _entry(c) for room, c in sorted(self._rooms.items())}
            store.write_json(self.path, {"v": 1, "rooms": rooms})
        finally:
            os.close(fd)

    def all(self) -> list[Contact]:
        return list(self._rooms.values())


def _entry(contact: Contact) -> dict:
    entry = asdict(contact)
    del entry["room"]
    return entry
