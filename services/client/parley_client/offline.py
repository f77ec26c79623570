"""Offline delivery (issue 15) on :class:`~parley_client.core.ChatCore`: a mixin.

- On every join with a seat secret: publish our signed prekey bundle and top the relay's
  one-time keys up to :data:`ONE_TIME_TARGET` (privates saved in the room folder first).
- The contact away (connected, no KEY_EXCHANGE within :data:`AWAY_PROBE_SECONDS`, texts
  waiting, no usable session): ``fetch_prekeys``, start a session from the bundle
  (``parley_crypto.prekeys.initiate``), pin its key exactly as a live first contact, and seal the
  outbox; the relay acks ``stored`` (✓, noted durably so a restart does not store it again),
  the encrypted receipt later gives ✓✓.
- Back from away: ``stored_message`` entries arrive before any live traffic; each opens (an
  initial message through ``prekeys.respond``), shows under a "while you were away" divider
  with the sender's timestamps, and is acknowledged (``mailbox_ack``) once processed; seen ids
  make a re-sent entry show nothing twice. ``mailbox_done`` ends the backlog.
- ``mailbox_expired`` and ``mailbox_full`` become plain lines for the sender.
"""

from __future__ import annotations

from typing import Any

from parley_crypto import errors, prekeys
from parley_crypto.prekey_store import ONE_TIME_TARGET, PrekeyStore

from .events import Event, State, short_reason
from .kept import LocalFailure
from .store import HomeError

# How long after joining we wait for the relay's KEY_EXCHANGE before treating the contact as
# away: the relay sends it at once when both seats are live, so a second is plenty on a
# loaded machine, and waiting costs a queued text only this delay.
AWAY_PROBE_SECONDS = 1.5
# The relay takes at most 100 one-time keys per `prekeys` event and 500 ids per mailbox_ack
# (DECISIONS.md); batching up to these keeps the event count low during a backlog drain.
ONE_TIME_PER_EVENT = 100
ACK_BATCH = 500
# Until mailbox_done (or this long after joining, for a relay without mailboxes) the backlog
# is not known to be complete; batch mode waits for it before it exits.
BACKLOG_WAIT_SECONDS = 5.0
MAX_ENTRY_ID = 64
# Relay `error` codes that come with a reply this module turns into its own plain line.
QUIET_CODES = ("no_peer", "mailbox_full")
DIVIDER = "── while you were away ──"


class Offline:
    """Mixed into ChatCore; uses its ``_request``, ``_send``, ``_sessions``, ``outbox``,
    ``room_state``, ``guard`` and output helpers."""

    def _init_offline(self, request) -> None:
        self._request = request  # (event, payload, on_reply) or None: no seat, no mailbox
        self._prekeys: PrekeyStore | None = None
        self._away_at: float | None = None  # when to decide the contact is away
        self._fetching = False
        self._fetched = False  # one fetch per connection (and again after peer_left)
        self._mailbox_full = False
        self._in_backlog = False
        self._backlog_shown = 0
        self._backlog_rejected = 0
        self._backlog_until: float | None = None
        self._acks: list[str] = []
        self._backlog_local = 0  # entries not processed because of a local failure
        self._local_reason = ""
        self._last_reject = ""  # why the last stored entry could not be opened
        self._ack_replies = 0  # mailbox_acks without the relay's reply yet
        self._entry: str | None = None  # the stored entry being processed, if any
        self._asking = 0  # requests without a reply yet

    @property
    def backlog_pending(self) -> bool:
        """True from joining until the relay said the backlog is complete (or a while), and
        while the relay has not confirmed an acknowledgement of kept entries (kept.py)."""
        if self._ack_replies and self.state is not State.CONNECTING:
            return True
        return self._backlog_until is not None and self._clock() < self._backlog_until

    @property
    def via_mailbox(self) -> bool:
        """True while texts go to the away contact's mailbox (not a live peer)."""
        return self.state is State.AWAY

    # ----- joining and leaving -----------------------------------------------------------
    def _offline_connected(self) -> None:
        self._fetched = self._fetching = self._mailbox_full = False
        self._in_backlog, self._acks, self._asking, self._ack_replies = False, [], 0, 0
        if self._request is None:
            return
        now = self._clock()
        self._away_at, self._backlog_until = now + AWAY_PROBE_SECONDS, now + BACKLOG_WAIT_SECONDS
        self._ask("prekeys", {}, self._on_prekey_count)

    def _offline_disconnected(self) -> None:
        self._away_at = self._backlog_until = None
        # Unacked entries come again next join; kept.py keeps the opened, unshown ones.
        self._in_backlog, self._acks, self._ack_replies = False, [], 0

    def _offline_peer_left(self) -> None:
        if self._request is not None:
            self._fetched = False
            self._away_at = self._clock() + AWAY_PROBE_SECONDS

    def _ask(self, event: str, payload: dict, handler) -> None:
        """Send a request whose reply goes to ``handler``; a hostile reply never raises."""

        def on_reply(reply: Any) -> None:
            self._asking = max(0, self._asking - 1)
            try:
                handler(reply)
            except Exception as e:  # noqa: BLE001 - a relay's reply must never crash us
                self._error(f"rejected the relay's reply to {event}: {short_reason(e)}")

        self._asking += 1
        self._request(event, payload, on_reply)

    def _offline_quiet(self, code: str, message: str) -> bool:
        """True for a relay `error` this module reports itself: no_peer and mailbox_full
        (plain lines from the replies), and an older relay's "unknown event" for our own
        requests (it has no mailboxes; nothing to say)."""
        if self._request is None:
            return False
        older = code == "bad_request" and message == "unknown event" and self._asking > 0
        return code in QUIET_CODES or older

    # ----- publishing our prekeys --------------------------------------------------------
    def _prekey_store(self) -> PrekeyStore:
        if self._prekeys is None:
            try:
                saved = self.room_state.prekeys()
            except (OSError, HomeError) as e:  # unreadable or corrupt: start again, say so
                self._error(f"ignored the saved prekeys (new ones follow): {short_reason(e)}")
                saved = None
            if saved is not None:
                try:
                    self._prekeys = PrekeyStore.from_state(saved, self.me)
                except errors.ParleyError as e:
                    self._error(f"ignored the saved prekeys (new ones follow): {short_reason(e)}")
            if self._prekeys is None:
                self._prekeys = PrekeyStore(self.me)
        return self._prekeys

    def _save_prekeys(self) -> bool:
        try:
            self.room_state.save_prekeys(self._prekey_store().to_state())
            return True
        except (OSError, HomeError, errors.ParleyError) as e:
            self._error(f"could not save the prekeys: {short_reason(e)}")
            return False

    def _on_prekey_count(self, reply: Any) -> None:
        if not (isinstance(reply, dict) and reply.get("ok") is True):
            return  # a relay without mailboxes: nothing to publish to
        left = reply.get("one_time_left")
        left = left if _count(left) else 0
        store = self._prekey_store()
        keys = store.new_one_time(min(ONE_TIME_PER_EVENT, max(0, ONE_TIME_TARGET - left)))
        bundle = store.bundle(self.room, **self._hs_options)
        if self._save_prekeys():  # the private keys are durable before anyone can use them
            self._ask("prekeys", {"bundle": bundle, "one_time": keys}, self._on_published)

    def _on_published(self, reply: Any) -> None:
        if isinstance(reply, dict) and reply.get("ok") is False:
            code = str(reply.get("code", "error"))[:40]
            self._error(f"the relay did not take our prekeys ({code}); first contact waits")
        elif isinstance(reply, dict) and reply.get("ok") is True:
            left = reply.get("one_time_left")  # a quiet event (batch --json shows it)
            self._emit(Event("prekeys", data={"one_time_left": left if _count(left) else None}))

    # ----- sending to an away contact ----------------------------------------------------
    def _maybe_fetch(self) -> None:
        """Start a session from the contact's prekeys when it is away and texts wait."""
        if self._request is None or self._fetching or self._fetched or self._mailbox_full:
            return
        if self.state not in (State.WAITING, State.PEER_LEFT) or self._hs is not None:
            return
        if self._away_at is None or self._clock() < self._away_at:
            return
        if not self.outbox.due(self._clock(), 0.0, self._contact_key(), stored=False):
            return
        self._fetching = self._fetched = True
        self._ask("fetch_prekeys", {}, self._on_fetched)

    def _on_fetched(self, reply: Any) -> None:
        self._fetching = False
        if self.state not in (State.WAITING, State.PEER_LEFT) or self._hs is not None:
            return  # the contact came back meanwhile: the live handshake wins
        if not (isinstance(reply, dict) and reply.get("ok") is True):
            if isinstance(reply, dict) and reply.get("code") == "no_peer":
                self._info("nobody else holds a seat in this room yet: your messages wait here")
            return
        one_time = reply.get("one_time")
        if isinstance(one_time, dict) and one_time.get("id") in self._our_one_time_ids():
            # The relay hands one asker the same key within its fetch window (10 s): a run
            # right after ours gets the key our last start used; the peer would refuse it.
            one_time = None
        try:
            session = prekeys.initiate(
                self.me, self.room, reply.get("bundle"), one_time, **self._hs_options
            )
        except (errors.ParleyError, ValueError) as e:
            self._error(f"rejected the away contact's prekeys: {short_reason(e)}")
            return
        self._adopt_async(session, "is away: your messages are sealed for them and wait in "
                                   "the relay's mailbox")  # fmt: skip

    def _our_one_time_ids(self) -> set:
        """Ids of the peer's one-time keys our session starts used (this run's session, and
        the one the last run saved)."""
        inits = [getattr(self.session, "init", None)]
        try:
            saved = self.room_state.session_state() or {}
        except (OSError, HomeError):
            saved = {}
        init = saved.get("init")
        inits.append(init.get("payload") if isinstance(init, dict) else None)
        return {i.get("otk") for i in inits if isinstance(i, dict) and i.get("otk")}

    def _adopt_async(self, session, doing: str) -> None:
        """A session from prekeys (either side): checked against the room's contact exactly
        as a live first contact, then texts go out on it while the contact is away."""
        self._sessions.add(session)
        self.peer = session.peer
        self._check_pin(session.peer)
        self.save_session()
        blocked = self.blocked_by is not None
        shown = self._shown(session.peer)
        if not blocked and self.state in (State.WAITING, State.PEER_LEFT, State.CONNECTING):
            self._set_state(State.AWAY)
        text = f"{shown.name} ({shown.fingerprint}) {doing}"
        if blocked:
            text = f"{shown.name} ({shown.fingerprint}): its key CHANGED: blocked"
        data = {
            "peer": shown.name,
            "fingerprint": shown.fingerprint,
            "safety_number": self.safety_number(),
            "blocked": blocked,
            "away": True,
        }
        self._emit(Event("secure", text, data))
        self.flush()

    def message_acked(self, message_id: str, reply: Any) -> None:
        """The relay's ack for a text we sent (called by the transport)."""
        if not isinstance(reply, dict):
            return
        if reply.get("ok") is True and reply.get("stored") is True:
            entry = reply.get("id")
            if isinstance(entry, str) and 0 < len(entry) <= MAX_ENTRY_ID:
                item = self.outbox.stored(message_id, entry)
                if item is not None:
                    data = {"id": message_id, "entry": entry, "text": item.message.body}
                    self._emit(Event("stored", data=data))
        elif reply.get("ok") is False and reply.get("code") == "mailbox_full":
            if self._mailbox_full:
                return  # said once per connection
            self._mailbox_full = True
            who = self.contact.label if self.contact else "the contact"
            waiting = len(self.outbox) - sum(1 for i in self.outbox if i.stored)
            text = f"{who}'s mailbox at the relay is full: {waiting} message(s) wait here until "
            self._emit(Event("warning", text + f"{who} is back", {"code": "mailbox_full"}))

    def _on_mailbox_expired(self, payload: Any) -> None:
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list):
            self._error("rejected a malformed mailbox_expired notice from the relay")
            return
        who = self.contact.label if self.contact else "the contact"
        for entry in ids[:ACK_BATCH]:
            item = self.outbox.by_entry(entry) if isinstance(entry, str) else None
            if item is None:
                continue
            self.outbox.stored(item.message.id, None)  # it goes out again when it can
            body = item.message.body
            body = body if len(body) <= 60 else body[:57] + "..."
            text = f"expired in the relay's mailbox before {who} came back (kept here, sent "
            data = {"id": item.message.id, "expired": True}
            self._emit(Event("warning", text + f"again when possible): {body}", data))

    # ----- receiving the backlog ---------------------------------------------------------
    def _on_stored_message(self, payload: Any) -> None:
        data = payload if isinstance(payload, dict) else {}
        # ("at", the relay's store time, is not shown: the sender's own timestamp is.)
        entry, envelope = data.get("id"), data.get("payload")
        if not (isinstance(entry, str) and 0 < len(entry) <= MAX_ENTRY_ID) or not isinstance(
            envelope, dict
        ):
            self._error("rejected a malformed stored message from the relay")
            return
        if not self._in_backlog:
            self._in_backlog, self._backlog_shown, self._backlog_rejected = True, 0, 0
            self._backlog_local = 0
            self._emit(Event("info", DIVIDER, {"divider": "away"}))
        if self._kept_again(entry):
            return  # opened before and kept (kept.py): never opened twice
        self._entry = entry
        try:
            outcome = self._open_outcome(envelope, report=False)
        except (LocalFailure, OSError, HomeError) as e:  # ours, not the entry's: it comes again
            self._backlog_local += 1
            self._local_reason = short_reason(e)
            return
        except Exception as e:  # noqa: BLE001 - hostile input: counted, acked, never a crash
            self._last_reject, outcome = short_reason(e), "rejected"
        finally:
            self._entry = None
        if outcome == "rejected":
            self._backlog_rejected += 1
        if outcome == "shown":
            self._backlog_shown += 1
        if outcome not in ("held", "withheld"):  # those are kept (kept.py), acked once shown
            self._ack_entry(entry)

    def _ack_entry(self, entry: str) -> None:
        self._acks.append(entry)
        if len(self._acks) >= ACK_BATCH:
            self._flush_acks()

    def _flush_acks(self) -> None:
        while self._acks:
            ids, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
            if self._request is None:
                self._send("mailbox_ack", {"ids": ids})
            else:  # the relay's reply lets kept.py forget the entries it confirmed
                self._ack_replies += 1
                self._ask("mailbox_ack", {"ids": ids}, lambda r, i=ids: self._on_acked(i, r))

    def _on_acked(self, ids: list[str], reply: Any) -> None:
        self._ack_replies = max(0, self._ack_replies - 1)
        self._kept_acked(ids, reply)

    def _on_mailbox_done(self, payload: Any) -> None:
        was_in_backlog, self._in_backlog = self._in_backlog, False
        self._kept_backlog_done()
        self._flush_acks()
        self._backlog_until = None
        if was_in_backlog:
            if self._backlog_rejected:
                self._error(
                    f"{self._backlog_rejected} stored message(s) could not be opened "
                    "(replayed, tampered, or sealed for a session this client no longer has; "
                    f"the last: {self._last_reject})"
                )
            if self._backlog_local:
                self._error(
                    f"{self._backlog_local} stored message(s) could not be processed here "
                    f"({self._local_reason}); they stay at the relay for the next join"
                )
            text = f"── end of what arrived while you were away ({self._backlog_shown}) ──"
            self._emit(Event("info", text, {"divider": "end"}))

    def _respond(self, envelope: dict):
        """Open an envelope that starts a session from our prekeys; (session, plaintext)."""
        if self._request is None:
            raise errors.InvalidMessage("no session")
        store = self._prekey_store()
        session, data = prekeys.respond(self.me, self.room, store, envelope)
        if not self._save_prekeys():  # the one-time key must be gone for good first
            self._prekeys = None  # back to the saved state: the entry is opened next join
            raise LocalFailure("could not save the prekeys")
        if self.state is State.SECURE and self.session is not None:
            return session, data  # a live session runs: this start is answered on it
        self._adopt_async(session, "reached you while you were away")
        return session, data


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
