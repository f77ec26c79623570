"""The client core: connection state, handshakes, sealing, receipts, de-duplication.

Who a session speaks for is the room's contact's business (:mod:`.guard`); which sessions may
open an envelope is :mod:`.sessions`'; the outbox and seen ids persist through a RoomState.

``ChatCore`` knows nothing about terminals or sockets. The transport feeds it relay events
(:meth:`ChatCore.handle`, :meth:`connected`, :meth:`disconnected`) and gives it a ``send``
callable; the UI feeds it typed text (:meth:`submit`) and receives :class:`Event` objects.
Nothing a peer or relay sends can make it raise: every bad payload becomes one ``error`` event.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from parley_crypto import errors, handshake, identity, safety

from .contacts import ContactStore
from .delivery import Delivery
from .events import (
    LEGACY_REFUSAL,
    Event,
    State,
    describe,
    relay_error_fields,
    same_identity_event,
    secure_event,
    short_reason,
)
from .guard import ContactGuard, Named, short
from .kept import Kept
from .messages import (
    InOrder,
    Outbox,
    Pacer,
    SeenIds,
)
from .offline import Offline
from .roomstate import MemoryRoomState, RoomState
from .sessions import SessionSet

DH_EVENTS = ("DEFF_HELLMAN_PK_BC", "DIFF_HELLMAN_PK_BC")
MAX_EARLY_ENVELOPES = 64  # envelopes that arrive before our session exists (a rare race)
# Receipts per second / burst: with texts' 30/s (messages.SEND_RATE) this stays under the
# relay's default 50 events/s, also while a backlog of hundreds is receipted at once.
RECEIPT_RATE, RECEIPT_BURST = 15.0, 60.0
MAX_QUEUED_RECEIPTS = 10_000  # beyond a mailbox's 1,000: the oldest are dropped (resends fix it)


class ChatCore(Delivery, Offline, Kept):
    """One conversation with one peer in one room; see the module docstring."""

    def __init__(
        self,
        me,
        contacts: ContactStore,
        room: str,
        send: Callable[[str, Any], None],
        on_event: Callable[[Event], None],
        *,
        hash: str = "sha256",
        deniable: bool = False,
        resend_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_session: Callable[[Any], None] | None = None,
        state: RoomState | None = None,
        request: Callable[[str, Any, Callable[[Any], None]], None] | None = None,
    ):
        self.me = me
        self.contacts = contacts
        self.room = room
        self._send = send
        self._emit = on_event
        self._hs_options = {"hash": hash, "deniable": deniable}
        self.resend_after = resend_after
        self._clock = clock
        self._on_session = on_session
        self.state = State.CONNECTING
        self.room_state = state if state is not None else MemoryRoomState()
        self.outbox = Outbox(self.room_state)
        self.seen = SeenIds(state=self.room_state)
        self.guard = ContactGuard(contacts, room, me, on_event)
        self.in_order = InOrder()
        self.peer = None  # PeerIdentity of the current peer, once received
        self.blocked_by = None  # PeerIdentity whose changed key awaits /trust
        self._hs = None  # handshake in progress, if any
        self._hs_has_peer = False
        self._next_identity = None  # peer identity waiting for the DH payload after it
        self._hs_dh = None  # (our ephemeral, the peer's DH payload), for the debug key log
        self._sessions = SessionSet(clock)  # newest first; see sessions.py
        self._early: deque = deque(maxlen=MAX_EARLY_ENVELOPES)
        self._withheld_reported = False
        self._pacer = Pacer(clock())
        self._receipts: deque[str] = deque(maxlen=MAX_QUEUED_RECEIPTS)
        self._receipt_pacer = Pacer(clock(), RECEIPT_RATE, RECEIPT_BURST)
        # ``request(event, payload, on_reply)``: only with a seat secret (offline delivery).
        self._init_offline(request)
        self._init_kept()
        self._restore_session()
        self._recovered_due = True  # shown at the first connect, when the UI is up

    # ----- facts for the UI -------------------------------------------------------------
    @property
    def session(self):
        """The newest session, or None."""
        return self._sessions.newest

    @property
    def can_send(self) -> bool:
        """True when texts go out right away rather than waiting in the outbox."""
        ready = self._hs is None and self.session is not None and self.blocked_by is None
        live = self.state in (State.SECURE, State.AWAY)  # AWAY: sealed for the mailbox
        return ready and live and self._speaks_for_contact(self.session)

    @property
    def contact(self):
        """The room's contact (pinned on first use), or None."""
        return self.guard.contact

    def _speaks_for_contact(self, session) -> bool:
        return self.guard.label(session.peer) is not None

    def safety_number(self) -> str | None:
        """60-digit safety number with the current peer (same on both sides), or None."""
        if self.peer is None:
            return None
        return safety.safety_number(self.me.public, self.peer)

    def status(self) -> dict[str, Any]:
        """A snapshot for ``/status`` and the status line."""
        return {
            "state": self.state.value,
            "room": self.room,
            "me": self.me.name,
            "my_fingerprint": self.me.public.fingerprint,
            "peer": self.contact.label if self.contact else None,
            "peer_fingerprint": self.contact.fingerprint if self.contact else None,
            "pending": len(self.outbox),
            "blocked": self.blocked_by is not None,
            "for_other_keys": len(self.outbox.waiting_for_others(self._contact_key())),
        }

    def _contact_key(self) -> str | None:
        return self.contact.key_id if self.contact else None

    # ----- transport side ----------------------------------------------------------------
    def connected(self) -> None:
        """The relay accepted us; wait for KEY_EXCHANGE."""
        self._hs = self._next_identity = None
        self.outbox.mark_unsent()
        self._set_state(State.WAITING)
        self._sessions.rearm()
        if self._recovered_due:
            self._recovered_due = False
            self._show_recovered()
        self._offline_connected()

    def disconnected(self) -> None:
        """Lost the relay; everything unreceipted goes out again on the next session."""
        self._hs = self._next_identity = None
        self.outbox.mark_unsent()
        self._offline_disconnected()
        if self.state is not State.REFUSED:
            self._set_state(State.CONNECTING)

    def handle(self, event: str, payload: Any) -> None:
        """Feed one relay event. Never raises; bad input is reported as one line."""
        try:
            self._dispatch(event, payload)
        except errors.LegacyPeer as e:
            if self.session is None:
                self._refuse_legacy()
            else:  # an authenticated peer does not turn legacy: injected junk, keep going
                self._error(f"rejected {describe(event)} in the legacy format: {short_reason(e)}")
        except errors.OlderPeer as e:
            if self.session is None:
                self._refuse(short_reason(e))  # "<name> runs an older Parley (protocol v1)..."
            else:  # our v2 peer does not turn v1: injected junk, keep going
                self._error(f"rejected {describe(event)}: {short_reason(e)}")
        except errors.ParleyError as e:
            self._error(f"rejected {describe(event)} from peer: {short_reason(e)}")
        except Exception as e:  # noqa: BLE001 - hostile input must never crash the client
            self._error(
                f"rejected malformed {describe(event)}: {type(e).__name__}: {short_reason(e)}"
            )

    def _dispatch(self, event: str, payload: Any) -> None:
        if event == "KEY_EXCHANGE":
            self._start_handshake()
        elif event == "ELGAMAL_PK_BC":
            self._on_identity(payload)
        elif event in DH_EVENTS:
            self._on_dh(event, payload)
        elif event == "KEY_CONFIRM_BC":
            self._on_confirm(payload)
        elif event == "received_message":
            self._on_envelope(payload)
        elif event == "stored_message":
            self._on_stored_message(payload)
        elif event == "mailbox_done":
            self._on_mailbox_done(payload)
        elif event == "mailbox_expired":
            self._on_mailbox_expired(payload)
        elif event == "peer_left":
            self._on_peer_left(payload)
        elif event == "error":
            self._on_relay_error(payload)
        else:
            self._error(f"ignored unknown event {event[:40]!r} from relay")

    # ----- handshake ---------------------------------------------------------------------
    def _start_handshake(self, respond: bool = False) -> None:
        """A fresh round: new ephemeral DH key, identity then DH payload to the peer.

        An answer to the peer's round goes out as DIFF_HELLMAN_PK (as the original client's
        reply did), an opening as DEFF_HELLMAN_PK. An answer never triggers another answer,
        so extra rounds in flight cannot make the two sides chase each other forever."""
        self._hs = handshake.Handshake(self.me, self.room, **self._hs_options)
        self._hs_has_peer = False
        self._set_state(State.VERIFYING)
        self._send("ELGAMAL_PK", self._hs.identity_payload())
        self._send("DIFF_HELLMAN_PK" if respond else "DEFF_HELLMAN_PK", self._hs.dh_payload())

    def _on_identity(self, payload: Any) -> None:
        if self._is_own_key(payload):
            return
        if self._hs is not None and not self._hs_has_peer:
            self._accept_identity(payload)  # the peer's side of our open round
            return
        # Otherwise the DH payload that follows tells whether the peer opens a round or
        # answers one; validate now so junk is reported here and changes nothing.
        identity.PeerIdentity.from_payload(payload)
        self._next_identity = payload

    def _is_own_key(self, payload: Any) -> bool:
        """The peer shows our own key: a second terminal with this identity (a relay without
        seats lets both in). Say so once and stop, instead of failing every round."""
        peer = identity.PeerIdentity.from_payload(payload)
        if peer.key_id != self.me.public.key_id:
            return False
        if self.state is not State.REFUSED:
            self._hs = self._next_identity = None
            self._set_state(State.REFUSED)
            self._emit(same_identity_event(self.me.name))
        return True

    def _accept_identity(self, payload: Any) -> None:
        self._hs.receive_identity(payload)
        self._hs_has_peer = True

    def _check_pin(self, peer) -> None:
        """Contact checks run only once the peer's KEY_CONFIRM proved it holds this key (its
        signature over the whole transcript), so an injected identity can neither be pinned,
        nor lift a block, nor raise a false alarm. The room decides, not the name the peer
        sends (see guard.py)."""
        if self.guard.admit(peer):
            self.blocked_by = None  # the contact's key (back)
            # Texts typed before the room had a contact are the contact's (also when a crash
            # came between pinning it and recording that, so this runs on every admission).
            self.outbox.address(peer.key_id)
        else:
            self.blocked_by = peer
            self._report_waiting()

    def _shown(self, peer):
        """The peer as the UI may name it: the contact's label for the contact's key; for any
        other key the name it claims, marked, so it is never shown as the contact."""
        label = self.guard.label(peer)
        if label is None:
            label = f"unknown key {short(peer.key_id)} (calls itself {peer.name!r})"
        return Named(label, peer.fingerprint)

    def _report_waiting(self) -> None:
        count, contact = len(self.outbox), self.contact
        if count and contact is not None:
            self._info(f"{count} message(s) wait for {contact.label} ({contact.fingerprint})")

    def _on_dh(self, event: str, payload: Any) -> None:
        hs = self._hs
        if hs is None or not self._hs_has_peer or hs.awaiting_confirm:
            pending, self._next_identity = self._next_identity, None
            if pending is None:
                self._on_stray_dh(payload)
            elif event == "DEFF_HELLMAN_PK_BC":  # the peer opens a round: answer it
                identity.PeerIdentity.from_payload(pending)
                self._start_handshake(respond=True)
                self._accept_identity(pending)
                self._answer_dh(payload)
            else:  # an answer to a round we already closed: open a fresh one instead
                self._on_stray_dh(payload, identity.PeerIdentity.from_payload(pending))
            return
        self._answer_dh(payload)

    def _answer_dh(self, payload: Any) -> None:
        """The peer's offer: derive the keys and send our KEY_CONFIRM. Not secure yet: that
        waits for the peer's KEY_CONFIRM (:meth:`_on_confirm`)."""
        ephemeral = getattr(self._hs, "_ephemeral", None)  # only for the debug key log
        confirm = self._hs.receive_dh(payload)
        self._hs_dh = (ephemeral, payload)
        self._send("KEY_CONFIRM", confirm)

    def _on_confirm(self, payload: Any) -> None:
        if self._hs is None or not self._hs.awaiting_confirm:
            # Junk, or a confirmation for a round since replaced: it can complete nothing
            # (the round in progress has its own), so it is reported and dropped.
            self._error("ignored a key confirmation outside a handshake in progress")
            return
        session = self._hs.receive_confirm(payload)  # raises (reported) unless it verifies
        self._hs = None
        self._sessions.add(session)
        self.save_session()
        if self._on_session is not None:
            ephemeral, peer_payload = self._hs_dh or (None, None)
            self._on_session(session, ephemeral, peer_payload)
        self._hs_dh = None
        self.outbox.mark_unsent()
        self.peer = session.peer
        self._check_pin(self.peer)
        if self.blocked_by is None:
            self._set_state(State.SECURE)
        blocked = self.blocked_by is not None
        self._emit(secure_event(self._shown(self.peer), self.safety_number(), blocked))
        if session.peer_hash != "sha256":
            label = session.peer_hash_label  # "legacy SHA-1", allowed by our --hash choice
            self._info(f"{self._shown(self.peer).name} signs with {label} (your --hash choice)")
        early = list(self._early)
        self._early.clear()
        for envelope in early:
            self.handle("received_message", envelope)
        self.flush()

    def _on_stray_dh(self, payload: Any, peer=None) -> None:
        """A DH payload outside a round we can complete. If it is a well-formed offer, open a
        fresh round; pairing it with keys the peer may no longer hold would desynchronise.
        (Offers are unsigned in v2: the fresh round's KEY_CONFIRM is what authenticates.)"""
        peer = peer or self.peer
        if peer is None or (self._hs is not None and not self._hs.awaiting_confirm):
            self._error("rejected handshake payload that arrived before the peer's identity")
            return
        probe = handshake.Handshake(self.me, self.room, peer=peer, **self._hs_options)
        probe.receive_dh(payload)  # raises (and is reported) unless it is a valid offer
        self._info("peer sent a new handshake payload; starting a fresh handshake")
        self._start_handshake()

    def _refuse_legacy(self) -> None:
        self._refuse(LEGACY_REFUSAL)

    def _refuse(self, text: str) -> None:
        self._hs = None
        self._set_state(State.REFUSED)
        self._emit(Event("refused", text))

    # ----- relay notices -----------------------------------------------------------------
    def _on_peer_left(self, payload: Any) -> None:
        name = payload.get("name") if isinstance(payload, dict) else None
        self._hs = self._next_identity = None
        self.outbox.mark_unsent()
        if self.state is not State.REFUSED:
            self._set_state(State.PEER_LEFT)
        self._offline_peer_left()
        contact = self.contact
        claimed = name if isinstance(name, str) else "peer"
        who = contact.label if contact and self.blocked_by is None else claimed
        self._info(f"{who[:64]} left the room")
        self._report_waiting()

    def _on_relay_error(self, payload: Any) -> None:
        code, message = relay_error_fields(payload)
        if self._offline_quiet(code, message):
            return  # offline.py says it in plain words (once), or an older relay
        self._emit(Event("relay_error", f"relay error {code}: {message}", {"code": code}))

    # ----- output helpers ----------------------------------------------------------------
    def _set_state(self, state: State) -> None:
        if state is not self.state:
            self.state = state
            self._emit(Event("state", state.value, {"state": state.value}))

    def _info(self, text: str) -> None:
        self._emit(Event("info", text))

    def _error(self, text: str) -> None:
        self._emit(Event("error", text))
