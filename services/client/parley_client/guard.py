"""The room's contact decides who a session speaks for (see :mod:`.contacts`).

:class:`ContactGuard` is asked once per authenticated session (first handshake, rekey,
reconnect): the room's first peer is pinned, the contact's key passes, any other key is a key
change (blocked, warned, never shown as the contact). It never looks a pin up by a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from parley_crypto import safety

from .contacts import CHANGED, MAX_LABEL, NEW, Contact, ContactStore, check, normalise
from .events import Event


def short(key_id: str | None) -> str:
    """A key id as shown in warnings (enough hex to compare by eye)."""
    return (key_id or "?")[:16]


class ContactGuard:
    """Pins, checks and re-pins the contact of one room."""

    def __init__(self, contacts: ContactStore, room: str, me, emit: Callable[[Event], None]):
        self.contacts = contacts
        self.room = room
        self.me = me
        self._emit = emit

    @property
    def contact(self) -> Contact | None:
        """The room's contact, or None before first use."""
        return self.contacts.get(self.room)

    def label(self, peer) -> str | None:
        """The contact's label if ``peer`` is the contact's key, else None."""
        contact = self.contact
        return contact.label if contact is not None and contact.key_id == peer.key_id else None

    def admit(self, peer) -> bool:
        """Decide on a freshly authenticated peer; True if it speaks for the contact."""
        result = check(self.contacts, self.room, peer)
        number = safety.safety_number(self.me.public, peer)
        if result.status == NEW:
            contact = Contact.first_use(self.room, peer)
            self.contacts.put(contact)
            self._emit(Event("info", f"pinned the key of {contact.label} on first use"))
            if result.lookalike is not None:
                self._emit(lookalike_event(peer, result.lookalike))
            return True
        if result.status == CHANGED:
            self._emit(key_changed_event(result.contact, peer, number, result.lookalike))
            return False
        return True

    def relabel(self, label: str) -> Contact | None:
        """The user's own name for the room's contact (NFC, 1..MAX_LABEL printable)."""
        contact, label = self.contact, normalise(label.strip())
        if contact is None or not 0 < len(label) <= MAX_LABEL or not label.isprintable():
            return None
        new = replace(contact, label=label)
        self.contacts.put(new)
        return new

    def trust(self, peer) -> Contact:
        """The user's ``/trust``: the contact (same label) is now pinned to ``peer``'s key."""
        contact = self.contact
        new = contact.rekeyed(peer) if contact is not None else Contact.first_use(self.room, peer)
        self.contacts.put(new)
        return new


def key_changed_event(contact: Contact, peer, number: str, lookalike: Contact | None) -> Event:
    """The loud warning for a key that is not the room's contact's."""
    claims = "" if peer.name == contact.label else f", calling itself {peer.name!r}"
    text = (
        f"WARNING: the key of {contact.label} has CHANGED (pinned {short(contact.key_id)}, "
        f"now {short(peer.key_id)}{claims}). Someone may be intercepting this chat. "
        "Sending is blocked and its messages are withheld: compare safety numbers with "
        "/verify, then /trust if they match."
    )
    if lookalike is not None:
        text += f" Its name looks like your contact {lookalike.label!r} but it is another key."
    data = {
        "peer": contact.label,
        "claimed_name": peer.name,
        "pinned": contact.key_id,
        "now": peer.key_id,
        "safety_number": number,
        "lookalike": lookalike.label if lookalike is not None else None,
    }
    return Event("key_changed", text, data)


def lookalike_event(peer, lookalike: Contact) -> Event:
    """A new contact whose name is confusable with an existing contact's."""
    text = (
        f"WARNING: {peer.name!r} looks like your contact {lookalike.label!r} (room "
        f"{lookalike.room!r}) but has another key ({short(peer.key_id)}, not "
        f"{short(lookalike.key_id)}): it is not the same person unless /verify says so"
    )
    data = {"peer": peer.name, "lookalike": lookalike.label, "now": peer.key_id}
    return Event("warning", text, data)


class Named:
    """A peer as the UI may name it (what secure_event needs): name and fingerprint."""

    def __init__(self, name: str, fingerprint: str):
        self.name, self.fingerprint = name, fingerprint


def held_text(count: int, contact, old_key: str | None) -> str:
    return (
        f"{count} message(s) were queued for the earlier key {short(old_key)}, not for "
        f"{contact.label}'s new key {short(contact.key_id)}: /forward sends them to the new "
        "key, /discard drops them"
    )
