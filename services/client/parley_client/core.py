"""The client core: connection state, handshakes, pinning, sealing, receipts, de-duplication.

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

from .events import (
    LEGACY_REFUSAL,
    Event,
    State,
    describe,
    key_changed_event,
    looks_legacy_message,
    relay_error_fields,
    same_identity_event,
    secure_event,
    short_reason,
)
from .keystore import MATCH, NEW, Keystore
from .messages import (
    MAX_BODY_BYTES,
    BadPlaintext,
    InOrder,
    Outbox,
    Pacer,
    Pending,
    Plaintext,
    SeenIds,
    new_receipt,
    new_text,
)

DH_EVENTS = ("DEFF_HELLMAN_PK_BC", "DIFF_HELLMAN_PK_BC")
MAX_EARLY_ENVELOPES = 64  # envelopes that arrive before our session exists (a rare race)


class ChatCore:
    """One conversation with one peer in one room; see the module docstring."""

    def __init__(
        self,
        me,
        keystore: Keystore,
        room: str,
        send: Callable[[str, Any], None],
        on_event: Callable[[Event], None],
        *,
        hash: str = "sha256",
        deniable: bool = False,
        rekey_after: int = 1000,
        resend_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_session: Callable[[Any], None] | None = None,
    ):
        self.me = me
        self.keystore = keystore
        self.room = room
        self._send = send
        self._emit = on_event
        # rekey_after is accepted for older callers; the v2 ratchet renews keys every turn.
        self._hs_options = {"hash": hash, "deniable": deniable}
        self.resend_after = resend_after
        self._clock = clock
        self._on_session = on_session
        self.state = State.CONNECTING
        self.outbox = Outbox()
        self.seen = SeenIds()
        self.in_order = InOrder()
        self.peer = None  # PeerIdentity of the current peer, once received
        self.blocked_by = None  # PeerIdentity whose changed key awaits /trust
        self._hs = None  # handshake in progress, if any
        self._hs_has_peer = False
        self._next_identity = None  # peer identity waiting for the DH payload after it
        self._hs_dh = None  # (our ephemeral, the peer's DH payload), for the debug key log
        self._sessions: deque = deque(maxlen=2)  # newest first; old one opens in-flight mail
        self._early: deque = deque(maxlen=MAX_EARLY_ENVELOPES)
        self._withheld_reported = False
        self._pacer = Pacer(clock())

    # ----- facts for the UI -------------------------------------------------------------
    @property
    def session(self):
        """The newest session, or None."""
        return self._sessions[0] if self._sessions else None

    @property
    def can_send(self) -> bool:
        """True when texts go out right away rather than waiting in the outbox."""
        ready = self._hs is None and self.session is not None and self.blocked_by is None
        return ready and self.state is State.SECURE

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
            "peer": self.peer.name if self.peer else None,
            "peer_fingerprint": self.peer.fingerprint if self.peer else None,
            "pending": len(self.outbox),
            "blocked": self.blocked_by is not None,
        }

    # ----- transport side ----------------------------------------------------------------
    def connected(self) -> None:
        """The relay accepted us; wait for KEY_EXCHANGE."""
        self._hs = self._next_identity = None
        self.outbox.mark_unsent()
        self._set_state(State.WAITING)

    def disconnected(self) -> None:
        """Lost the relay; everything unreceipted goes out again on the next session."""
        self._hs = self._next_identity = None
        self.outbox.mark_unsent()
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
        elif event == "peer_left":
            self._on_peer_left(payload)
        elif event == "error":
            self._on_relay_error(payload)
        else:
            self._error(f"ignored unknown event {event[:40]!r} from relay")

    # ----- user side ---------------------------------------------------------------------
    def submit(self, text: str) -> Pending | None:
        """Queue a text; it is sent now if the session is ready, else as soon as it is.
        Returns None (and reports why) for a text too long to ever be delivered."""
        message = new_text(text)
        size = len(message.encode())
        if size > MAX_BODY_BYTES:
            self._error(f"not sent: message is {size} bytes encoded, the limit is {MAX_BODY_BYTES}")
            return None
        item = self.outbox.add(message)
        self._emit(Event("queued", data={"id": item.message.id, "text": text}))
        self.flush()
        return item

    def trust(self) -> bool:
        """Accept a changed peer key (``/trust``): re-pin it and unblock sending."""
        peer = self.blocked_by
        if peer is None:
            return False
        self.keystore.pin(peer.name, peer.key_id, peer.fingerprint)
        self.blocked_by = None
        self._withheld_reported = False
        self._info(f"now trusting the new key of {peer.name} ({peer.fingerprint})")
        if self.session is not None and self._hs is None and self.state is State.VERIFYING:
            self._set_state(State.SECURE)
        self.flush()
        return True

    def tick(self) -> None:
        """Call about once a second: resends texts whose receipt is overdue."""
        self.flush()

    def flush(self) -> None:
        """Seal and send every outbox item that is due."""
        if not self.can_send:
            return
        now = self._clock()
        for item in self.outbox.due(now, self.resend_after):
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
        try:
            envelope = self.session.seal(message.encode())
        except errors.ParleyError as e:
            self._error(f"could not seal a message: {short_reason(e)}")
            return False
        self._send("message", envelope)
        return True

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
        """Pin checks run only once the peer's KEY_CONFIRM proved it holds this key (its
        signature over the whole transcript), so an injected identity can neither be pinned,
        nor lift a block, nor raise a false alarm."""
        result = self.keystore.check(peer.name, peer.key_id)
        if result.status == NEW:
            self.keystore.pin(peer.name, peer.key_id, peer.fingerprint)
            self._info(f"pinned the key of {peer.name} on first use")
        elif result.status == MATCH:
            self.blocked_by = None  # the pinned key is back
        else:
            self.blocked_by = peer
            number = safety.safety_number(self.me.public, peer)
            self._emit(key_changed_event(peer, result.pinned_key_id, number))

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
        self._sessions.appendleft(session)
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
        self._emit(secure_event(self.peer, self.safety_number(), blocked))
        if session.peer_hash != "sha256":
            label = session.peer_hash_label  # "legacy SHA-1", allowed by our --hash choice
            self._info(f"{self.peer.name} signs with {label} (your --hash choice)")
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
        if self.session is None:
            self._early.append(payload)  # retried once our session is ready
            return
        if self._hs is not None:
            # Mid-handshake it may be sealed under the session we are about to derive.
            if not self._try_open(payload, report=False):
                self._early.append(payload)
            return
        self._try_open(payload, report=True)

    def _try_open(self, envelope: dict, report: bool) -> bool:
        data = None
        last_error: Exception | None = None
        for session in list(self._sessions):
            try:
                data = session.open(envelope)
                break
            except errors.ParleyError as e:
                last_error = e
        if data is None:
            if report:
                reason = short_reason(last_error) if last_error else "no session"
                self._error(
                    f"rejected message from peer (replayed, reordered or tampered): {reason}"
                )
            return False
        try:
            message = Plaintext.decode(data)
        except BadPlaintext as e:
            self._error(f"rejected message from peer: {e}")
            return True
        if message.kind == "receipt":
            item = self.outbox.delivered(message.body)
            if item is not None:
                data = {"id": message.body, "text": item.message.body}
                self._emit(Event("delivered", data=data))
        else:
            self._on_text(message)
        return True

    def _on_text(self, message: Plaintext) -> None:
        if self.blocked_by is not None:
            # No receipt: the sender keeps it and resends after /trust.
            if not self._withheld_reported:
                self._withheld_reported = True
                self._error("withheld a message from a changed, untrusted key; see /verify")
            return
        ready = self.in_order.accept(message, self.seen)
        if ready is None:
            # Receipt even a duplicate: the first receipt may be what got lost.
            self._seal_and_send(new_receipt(message.id))
            return
        # [] = held back until the text it follows arrives; no receipt, so it is re-sent.
        sender = self.peer.name if self.peer else "peer"
        for text in ready:
            data = {"from": sender, "id": text.id, "text": text.body, "ts": text.ts}
            self._emit(Event("message", text.body, data))
            self._seal_and_send(new_receipt(text.id))

    # ----- relay notices -----------------------------------------------------------------
    def _on_peer_left(self, payload: Any) -> None:
        name = payload.get("name") if isinstance(payload, dict) else None
        self._hs = self._next_identity = None
        self.outbox.mark_unsent()
        if self.state is not State.REFUSED:
            self._set_state(State.PEER_LEFT)
        who = name if isinstance(name, str) else (self.peer.name if self.peer else "peer")
        self._info(f"{who[:64]} left the room")

    def _on_relay_error(self, payload: Any) -> None:
        code, message = relay_error_fields(payload)
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
