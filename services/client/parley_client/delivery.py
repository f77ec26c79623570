"""The message side of :class:`~parley_client.core.ChatCore`: what the user types, the
outbox bound to the contact's key, and the texts and receipts the peer's sessions open.

A mixin so core.py stays about connection state and handshakes; it uses the core's
``outbox``, ``seen``, ``in_order``, ``guard``, ``_sessions`` and output helpers.
"""

from __future__ import annotations

from typing import Any

from parley_crypto import errors
from parley_crypto.session import Session

from .events import Event, State, looks_legacy_message, short_reason
from .guard import held_text
from .messages import (
    MAX_BODY_BYTES,
    NOTICE_KEY_NOT_ACCEPTED,
    BadPlaintext,
    Pending,
    Plaintext,
    new_notice,
    new_receipt,
    new_text,
)


class Delivery:
    """Texts out and in; mixed into ChatCore."""

    # ----- the ratchet state on disk -----------------------------------------------------
    def save_session(self) -> None:
        """Keep the newest session (if it is the contact's) in the room state, so a restarted
        client can still open envelopes sealed for it before the restart."""
        session = self.session
        to_state = getattr(session, "to_state", None)
        if session is None or not callable(to_state) or not self._speaks_for_contact(session):
            return
        try:
            self.room_state.save_session(to_state())
        except (OSError, errors.ParleyError) as e:
            self._error(f"could not save the session state: {short_reason(e)}")

    def _restore_session(self) -> None:
        saved = self.room_state.session_state()
        if saved is None:
            return
        try:
            session = Session.from_state(saved, self.me)
        except errors.ParleyError as e:
            self._error(f"ignored the saved session state: {short_reason(e)}")
            return
        if self._speaks_for_contact(session):
            self._sessions.restore(session)  # opens only, for the grace period

    # ----- user side ---------------------------------------------------------------------
    def submit(self, text: str) -> Pending | None:
        """Queue a text; it is sent now if the session is ready, else as soon as it is.
        Returns None (and reports why) for a text too long to ever be delivered."""
        message = new_text(text)
        size = len(message.encode())
        if size > MAX_BODY_BYTES:
            self._error(f"not sent: message is {size} bytes encoded, the limit is {MAX_BODY_BYTES}")
            return None
        item = self.outbox.add(message, self._contact_key())  # durable before "queued"
        self._emit(Event("queued", data={"id": item.message.id, "text": text}))
        self.flush()
        return item

    def trust(self) -> bool:
        """Accept a changed peer key (``/trust``): re-pin it and unblock sending."""
        peer = self.blocked_by
        if peer is None:
            return False
        old = self._contact_key()
        contact = self.guard.trust(peer)
        self.blocked_by = None
        self._withheld_reported = False
        self._info(f"now trusting the new key of {contact.label} ({peer.fingerprint})")
        waiting = len(self.outbox.waiting_for_others(contact.key_id))
        if waiting:
            self._emit(Event("warning", held_text(waiting, contact, old), {"count": waiting}))
        if self.session is not None and self._hs is None and self.state is State.VERIFYING:
            self._set_state(State.SECURE)
        self._release_trusted()  # stored texts withheld from this key (kept.py)
        self.flush()
        return True

    def rename_contact(self, label: str) -> bool:
        """``/label NAME``: what this room's contact is called here (texts, warnings)."""
        contact = self.guard.relabel(label)
        if contact is None:
            return False
        self._info(f"the contact of this room ({contact.fingerprint}) is now {contact.label!r}")
        return True

    def forward(self) -> int:
        """``/forward``: send the texts queued for an earlier key to the contact's current key
        (the user's explicit choice, after ``/trust``). Returns how many."""
        contact = self.contact
        if contact is None:
            return 0
        count = 0
        for key in {i.to for i in self.outbox.waiting_for_others(contact.key_id)}:
            count += self.outbox.address(contact.key_id, only_from=key)
        if count:
            self._info(f"{count} message(s) now go to {contact.label} ({contact.fingerprint})")
        self.flush()
        return count

    def discard(self) -> int:
        """``/discard``: drop the texts queued for an earlier key, and the stored texts
        withheld from a key that is not the contact's (kept.py). Returns how many."""
        count = self.outbox.discard_for_others(self._contact_key())
        if count:
            self._info(f"dropped {count} message(s) queued for an earlier key")
        withheld = self._discard_kept()
        if withheld:
            self._info(f"dropped {withheld} stored message(s) withheld from an untrusted key")
            self.flush()
        return count + withheld

    def tick(self) -> None:
        """Call about once a second: resends texts whose receipt is overdue."""
        self.flush()

    def _send_receipt(self, message_id: str) -> None:
        """Receipts go out at once while the receipt pacer allows (live chat), else in order
        from :meth:`flush`: a drained backlog of hundreds must not trip the relay's rate limit."""
        self._receipts.append(message_id)
        self._flush_receipts()

    def _flush_receipts(self) -> None:
        session, now = self.session, self._clock()
        if session is None or not self._speaks_for_contact(session):
            return  # only for the contact's key; without a session the resend brings it back
        while self._receipts and self._receipt_pacer.take(now):
            self._seal_and_send(new_receipt(self._receipts.popleft()))

    @property
    def receipts_pending(self) -> int:
        """Receipts waiting for the pacer (batch mode waits for them before it exits)."""
        return len(self._receipts) if self.session is not None else 0

    def flush(self) -> None:
        """Seal and send every outbox item that is due (to the mailbox: once)."""
        self._flush_receipts()
        self._maybe_fetch()
        if self._acks and not self._in_backlog:
            self._flush_acks()
        if not self.can_send:
            return
        now = self._clock()
        key, live = self.session.peer.key_id, not self.via_mailbox
        for item in self.outbox.due(now, self.resend_after, key, stored=live):
            if not self._pacer.take(now):
                break  # the rest goes out on the next tick
            if not self._seal_and_send(self.outbox.stamped(item)):
                return
            item.sent_at = now
            item.attempts += 1
            data = {"id": item.message.id, "attempt": item.attempts, "text": item.message.body}
            self._emit(Event("sent", data=data))
        if self.session is not None and self.session.needs_rekey and self._hs is None:
            self._start_handshake()

    def _seal_and_send(self, message: Plaintext) -> bool:
        if self.session is None:
            return False  # only a restored session so far: the receipt follows the resend
        try:
            envelope = self.session.seal(message.encode())
        except errors.ParleyError as e:
            self._error(f"could not seal a message: {short_reason(e)}")
            return False
        self._send("message", envelope)
        return True

    # ----- messages ----------------------------------------------------------------------
    def _on_envelope(self, payload: Any) -> None:
        if isinstance(payload, str):
            if looks_legacy_message(payload):
                raise errors.LegacyPeer("legacy message")
            self._error("rejected message from peer: not a Parley envelope")
            return
        if not isinstance(payload, dict):
            self._error("rejected message from peer: not a Parley envelope")
            return
        if "init" in payload and self._hs is None:
            self._try_open(payload, report=True)  # may start a session from our prekeys
            return
        if self.session is None:
            if not (len(self._sessions) and self._try_open(payload, report=False)):
                self._early.append(payload)  # retried once our session is ready
            return
        if self._hs is not None:
            # Mid-handshake it may be sealed under the session we are about to derive.
            if not self._try_open(payload, report=False):
                self._early.append(payload)
            return
        self._try_open(payload, report=True)

    def _try_open(self, envelope: dict, report: bool) -> bool:
        return self._open_outcome(envelope, report) != "rejected"

    def _open_session(self, envelope: dict):
        """(session, plaintext): one of our sessions, or a session this envelope starts from
        our prekeys (its ``init``; see offline.py)."""
        try:
            return self._sessions.open(envelope)
        except errors.ParleyError:
            opened = self._open_withheld(envelope) if self._entry is not None else None
            if opened is not None:
                return opened
            if "init" not in envelope:
                raise
        return self._respond(envelope)

    def _open_outcome(self, envelope: dict, report: bool) -> str:
        """Open and handle one envelope: "rejected", "bad", "receipt", "notice", or what
        :meth:`_on_text` did with a text ("shown", "held", "duplicate", "withheld")."""
        try:
            session, data = self._open_session(envelope)
            self._opened_by = session
        except errors.ParleyError as e:
            self._last_reject = short_reason(e)
            if report:
                self._error(
                    f"rejected message from peer (replayed, reordered or tampered): "
                    f"{short_reason(e)}"
                )
            return "rejected"
        if session is self.session:
            # Opening may have made a DH ratchet key: durable now, not only at exit, or a
            # client that is killed could never open what the peer sealed after it.
            self.save_session()
        try:
            message = Plaintext.decode(data)
        except BadPlaintext as e:
            self._error(f"rejected message from peer: {e}")
            return "bad"
        if message.kind == "receipt":
            item = self.outbox.delivered(message.body, session.peer.key_id)  # its key only
            if item is not None:
                data = {"id": message.body, "text": item.message.body}
                self._emit(Event("delivered", data=data))
            return "receipt"
        if message.kind == "notice":
            self._on_notice(message, session)
            return "notice"
        return self._on_text(message, session.peer)

    def _on_notice(self, message: Plaintext, session) -> None:
        if message.body != NOTICE_KEY_NOT_ACCEPTED:
            return  # a notice from a later version: nothing to show
        who = self.guard.label(session.peer) or session.peer.name[:64]
        text = (
            f"{who} has not accepted your key yet: they must compare safety numbers "
            "(/verify) and /trust it; your messages are shown to them only once they do"
        )
        self._emit(Event("peer_notice", text, {"from": who, "notice": message.body}))

    def _on_text(self, message: Plaintext, peer) -> str:
        """Show, hold or withhold a text ``peer``'s session opened (or kept.py released); a
        stored entry's text not shown now is kept with its plaintext (kept.py)."""
        sender = self.guard.label(peer)  # the session that opened it names the sender
        if sender is None or self.blocked_by is not None:
            if self._entry is not None:
                self._keep(self._entry, "withheld", message, peer)  # shown after /trust
            # No receipt: the sender keeps it and resends after /trust.
            if not self._withheld_reported:
                self._withheld_reported = True
                self._error("withheld a message from a changed, untrusted key; see /verify")
                # Tell the sender why no receipt comes (once), so it does not look "secure".
                self._seal_and_send(new_notice(NOTICE_KEY_NOT_ACCEPTED))
            return "withheld"
        ready = self.in_order.accept(message, self.seen, sender)
        if ready is None:
            # Receipt even a duplicate: the first receipt may be what got lost.
            self._send_receipt(message.id)
            self._kept_done(message.id)
            return "duplicate"
        # [] = held back until the text it follows arrives; no receipt, so it is re-sent.
        if not ready and self._entry is not None:
            self._keep(self._entry, "held", message, peer)
        for text in ready:
            data = {"from": sender, "id": text.id, "text": text.body, "ts": text.ts}
            if self._in_backlog:
                data["backlog"] = True  # shown under the "while you were away" divider
            self._emit(Event("message", text.body, data))
            self.seen.showed(text.id)
            self._send_receipt(text.id)
            self._kept_done(text.id)
        return "shown" if ready else "held"

    def _show_recovered(self) -> None:
        """Texts a previous run recorded as about to be shown and then ended (killed) before
        it marked them shown: shown now, marked recovered (they may have reached the screen
        just before the end). Their receipts went out or come with the sender's resend."""
        for text in self.room_state.unshown():
            data = {"from": text["from"], "id": text["id"], "text": text["body"]}
            data.update(ts=text["ts"], recovered=True)
            try:
                self._emit(Event("message", text["body"], data))
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the rest
                self._error(f"could not show a recovered message: {short_reason(e)}")
            self.seen.showed(text["id"])  # shown or impossible to show: never again
