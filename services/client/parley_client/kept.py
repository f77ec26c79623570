"""Stored messages opened but not shown yet, kept with their plaintext until they are (a mixin).

A mailbox entry can be opened only once: its ratchet message key is used up and its session
start (``init``) recorded as used the first time. So an entry that is opened but not shown (a
text *withheld* because it comes from a changed, untrusted key, or *held* until the text it
follows arrives) must not be left to "come again next join": it would then fail as replayed.
Instead its decrypted plaintext is kept in the room state (``kept.json``, 0600, written
atomically, see roomstate.py) under its entry id, and the entry is acknowledged to the relay
only once the text was shown (or was a duplicate), or the user dropped it (``/discard``).

Record: ``{"entry", "why": "withheld"|"held"|"done", "text": {"id", "ts", "body", "after"},
"key": sender key id, "peer": sender identity payload}``; "done" = shown or discarded, the
acknowledgement not yet confirmed by the relay (sent again at every join until it is).
"""

from __future__ import annotations

from typing import Any

from parley_crypto import errors
from parley_crypto.identity import PeerIdentity
from parley_crypto.session import Session

from .events import Event, short_reason
from .messages import MAX_BODY_BYTES, MAX_ID_LEN, Plaintext
from .store import HomeError

# As many as a full mailbox holds (the relay's PARLEY_MAILBOX_MAX_MESSAGES default, 1000) and
# as many bytes (PARLEY_MAILBOX_MAX_BYTES, 10 MiB): one backlog's worth can always be kept.
MAX_KEPT = 1000
MAX_KEPT_BYTES = 10 * 1024 * 1024
WHY = ("withheld", "held", "done")


class LocalFailure(Exception):
    """Processing a stored entry failed here (a file could not be saved), not because of the
    entry: it is not acknowledged and comes again at the next join."""


class Kept:
    """Mixed into ChatCore (with Delivery and Offline); see the module docstring."""

    def _init_kept(self) -> None:
        self._kept: dict[str, dict] = {}  # entry id -> record, oldest first
        try:
            saved = self.room_state.kept()
        except (OSError, HomeError) as e:  # their entries stay unacked: opened (or not) again
            self._error(f"ignored the unreadable unshown stored messages: {short_reason(e)}")
            saved = []
        for record in saved[-MAX_KEPT:]:
            if _valid(record):
                self._kept[record["entry"]] = record
        for record in self._kept.values():
            if record["why"] == "held":
                self.in_order.hold(_text(record))  # released when its predecessor shows
        self._opened_by = None  # the session that opened the envelope being handled
        self._withheld_session = None
        try:
            state = self.room_state.withheld_session()
            if state is not None:
                self._withheld_session = Session.from_state(state, self.me)
        except (OSError, HomeError, errors.ParleyError) as e:
            self._error(f"ignored the saved session of a withheld key: {short_reason(e)}")

    # ----- keeping ----------------------------------------------------------------------
    def _keep(self, entry: str, why: str, message: Plaintext, peer) -> None:
        """Keep an opened stored text that is not shown now (durably, before anything else)."""
        record = self._kept.get(entry)
        if record is None:
            size = sum(len(r["text"]["body"]) for r in self._kept.values())
            if len(self._kept) >= MAX_KEPT or size + len(message.body) > MAX_KEPT_BYTES:
                raise LocalFailure(f"more than {MAX_KEPT} stored messages wait unshown here")
            text = {"id": message.id, "ts": message.ts, "body": message.body}
            text["after"] = message.after
            record = {"entry": entry, "text": text, "key": peer.key_id}
            record["peer"] = peer.to_payload()
            self._kept[entry] = record
        record["why"] = why
        session = self._opened_by
        if why == "withheld" and session is not None and session.peer.key_id == peer.key_id:
            self._save_withheld_session(session)  # its later entries open after a restart
        self._save_kept()

    def _save_withheld_session(self, session) -> None:
        self._withheld_session = session
        try:
            self.room_state.save_withheld_session(None if session is None else session.to_state())
        except (OSError, HomeError, errors.ParleyError) as e:
            self._error(f"could not save the withheld key's session: {short_reason(e)}")

    def _open_withheld(self, envelope: dict):
        """(session, plaintext) if the saved session of a withheld key opens this stored
        envelope (a restart came between its entries), else None."""
        session = self._withheld_session
        if session is None:
            return None
        try:
            data = session.open(envelope)
        except errors.ParleyError:
            return None
        self._save_withheld_session(session)
        return session, data

    def _save_kept(self) -> None:
        try:
            self.room_state.save_kept(list(self._kept.values()))
        except (OSError, HomeError) as e:  # kept in memory for this run anyway
            self._error(f"could not save the unshown stored messages: {short_reason(e)}")

    def _kept_done(self, text_id: str) -> None:
        """The text of a kept entry was shown (or was a duplicate): acknowledge the entry."""
        for record in self._kept.values():
            if record["text"]["id"] == text_id and record["why"] != "done":
                self._finish(record)

    def _finish(self, record: dict) -> None:
        record["why"] = "done"
        self._save_kept()
        self._ack_entry(record["entry"])

    def _kept_acked(self, ids: list[str], reply: Any) -> None:
        """The relay confirmed a mailbox_ack: the done records of those entries can go."""
        if not (isinstance(reply, dict) and reply.get("ok") is True):
            return  # acknowledged again at the next join
        gone = [e for e in ids if self._kept.get(e, {}).get("why") == "done"]
        for entry in gone:
            del self._kept[entry]
        if gone:
            self._save_kept()
        if self._withheld_session is not None and not any(
            r["why"] == "withheld" for r in self._kept.values()
        ):
            self._save_withheld_session(None)  # nothing of that key waits any more

    # ----- a kept entry comes again -----------------------------------------------------
    def _kept_again(self, entry: str) -> bool:
        """A stored entry we kept arrives again: True (never opened twice). A done one is
        acknowledged again, a withheld one shown if its key is trusted now."""
        record = self._kept.get(entry)
        if record is None:
            return False
        if record["why"] == "done":
            self._ack_entry(entry)
        elif record["why"] == "withheld" and self._trusted(record):
            self._release(record)
        return True

    def _trusted(self, record: dict) -> bool:
        contact = self.contact
        return self.blocked_by is None and contact is not None and contact.key_id == record["key"]

    def _release(self, record: dict) -> None:
        """A withheld text whose key is trusted now: shown (or held for order) as it arrives."""
        peer = PeerIdentity.from_payload(record["peer"])
        self._entry = record["entry"]
        try:
            self._on_text(_text(record), peer)
        finally:
            self._entry = None

    def _release_trusted(self) -> int:
        """After /trust (or at the end of a backlog): show what the contact's key sent."""
        ready = [r for r in self._kept.values() if r["why"] == "withheld" and self._trusted(r)]
        for record in ready:
            self._release(record)
        return len(ready)

    def _kept_backlog_done(self) -> None:
        """End of a backlog: acknowledge the done records again (the relay may not have had
        them), show what is trusted now, and raise the key change again for the rest: a
        restart forgot it, and /trust needs it."""
        for record in self._kept.values():
            if record["why"] == "done":
                self._ack_entry(record["entry"])
        self._release_trusted()
        withheld = [r for r in self._kept.values() if r["why"] == "withheld"]
        if not withheld:
            return
        live = self.session is not None and self._speaks_for_contact(self.session)
        if self.blocked_by is None and not live:
            # /verify and /trust work on self.peer and blocked_by: both name this key.
            self.peer = PeerIdentity.from_payload(withheld[-1]["peer"])
            self._check_pin(self.peer)  # the key change warning again (blocked until /trust)
            if self.blocked_by is None:  # it is the contact's key after all
                self._release_trusted()
                return
        text = kept_text(len(withheld), trustable=self.blocked_by is not None)
        self._emit(Event("warning", text, {"kept": len(withheld)}))

    def _discard_kept(self) -> int:
        """``/discard``: drop the stored texts withheld from keys that are not the contact's."""
        drop = [r for r in self._kept.values() if r["why"] == "withheld" and not self._trusted(r)]
        for record in drop:
            self._finish(record)
        return len(drop)


def kept_text(count: int, trustable: bool = True) -> str:
    """The line for stored texts withheld from a key that is not the contact's. While the
    contact's own key has a session, there is nothing to /trust (it would re-pin the contact
    to a key the safety number shown is not about): they can only be dropped."""
    if not trustable:
        return (
            f"{count} stored message(s) from another key than your contact's are kept here "
            "unshown; /discard drops them"
        )
    return (
        f"{count} stored message(s) from a changed key are kept here unshown: /verify, then "
        "/trust shows them, /discard drops them"
    )


def _text(record: dict) -> Plaintext:
    t = record["text"]
    return Plaintext(t["id"], float(t["ts"]), "text", t["body"], t.get("after"))


def _valid(record: object) -> bool:
    """A record as :meth:`Kept._keep` writes it (the file is ours, but it may be torn or old)."""
    if not isinstance(record, dict) or record.get("why") not in WHY:
        return False
    text, entry = record.get("text"), record.get("entry")
    if not (isinstance(entry, str) and 0 < len(entry) <= 64 and isinstance(text, dict)):
        return False
    ids = (text.get("id"), text.get("after") or "x")
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_LEN for i in ids):
        return False
    ts, body = text.get("ts"), text.get("body")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return False
    if not isinstance(body, str) or len(body) > MAX_BODY_BYTES:
        return False
    if not isinstance(record.get("key"), str):
        return False
    try:
        PeerIdentity.from_payload(record.get("peer"))
    except errors.ParleyError:
        return False
    return True
