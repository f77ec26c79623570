"""An established conversation: seal and open envelopes over the Double Ratchet (sans-IO).

Envelope ``{"v":2, "dh", "pn", "n", "ct", "mac", "sig"}``: the ratchet header (sender's
ratchet key, previous chain length, message number), the AES-256-CFB128 ciphertext of the
padded plaintext, and an HMAC-SHA256 over associated data || header || ct || sig. The
associated data is the handshake transcript hash and the sender's role, so an envelope
belongs to one session and one direction. ``sig`` (null in deniable mode) is the sender's
ElGamal signature over associated data || header || ct; the MAC covers it, so a rewritten
signature fails the MAC before the signature is even checked. ``open`` verifies the MAC,
then the signature, then decrypts, and only then commits the new ratchet state.

A session started from prekeys (``prekeys.py``) also carries ``"init"``, the initial message,
on the initiator's envelopes until the peer answers; an envelope with an ``init`` opens only
in the session that init started.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from parley_crypto import _wire, elgamal, padding, ratchet, safety, session_state
from parley_crypto.errors import InvalidMessage, OlderPeer
from parley_crypto.identity import PROTOCOL_VERSION, Identity, PeerIdentity

MAX_PLAINTEXT = padding.MAX_PLAINTEXT
_FIELDS = ("v", "dh", "pn", "n", "ct", "mac", "sig")


class Session:
    """One ratcheting conversation. Built by ``Handshake.receive_confirm`` or
    :meth:`from_state`."""

    def __init__(
        self,
        *,
        me: Identity,
        peer: PeerIdentity,
        role: str,
        state: ratchet.State,
        transcript_hash: bytes,
        hash: str,
        peer_hash: str,
        deniable: bool,
        peer_deniable: bool,
        clock: Callable[[], float] = time.time,
        init: dict | None = None,
        init_pending: bool = False,
    ) -> None:
        self._me = me
        self._peer = peer
        self._role = role
        self._peer_role = "b" if role == "a" else "a"
        self._state = state
        self._transcript_hash = transcript_hash
        self._hash = hash
        self._peer_hash = peer_hash
        self._deniable = deniable
        self._peer_deniable = peer_deniable
        self._clock = clock
        self._width = state.group.byte_length
        # An asynchronous session (prekeys.py) remembers the initial message that started it;
        # the initiator attaches it to every envelope until the peer's first one opens.
        self._init = init
        self._init_pending = bool(init_pending and init is not None)

    @property
    def peer(self) -> PeerIdentity:
        """The peer identity that authenticated this session."""
        return self._peer

    @property
    def role(self) -> str:
        """ "a" or "b": our place in the transcript order."""
        return self._role

    @property
    def safety_number(self) -> str:
        """60 digits: both per-party halves in sorted order (same on both sides)."""
        return safety.safety_number(self._me.public, self._peer)

    @property
    def transcript_hash(self) -> bytes:
        """SHA-256 of the handshake transcript (same on both sides)."""
        return self._transcript_hash

    @property
    def peer_hash(self) -> str:
        """The hash the peer signs with ("sha256", or "sha1" if we allowed legacy)."""
        return self._peer_hash

    @property
    def peer_hash_label(self) -> str:
        """How the UI names the peer's signature hash: "SHA-256" or "legacy SHA-1"."""
        return elgamal.display_name(self._peer_hash)

    @property
    def deniable(self) -> bool:
        """True when our envelopes carry no signature."""
        return self._deniable

    @property
    def peer_deniable(self) -> bool:
        """True when the peer announced deniable mode (its envelopes must carry no signature)."""
        return self._peer_deniable

    @property
    def init(self) -> dict | None:
        """The initial message of an asynchronous session (prekeys.py), else None."""
        return self._init

    @property
    def init_pending(self) -> bool:
        """True while our envelopes carry the initial message (the peer has not answered)."""
        return self._init_pending

    @property
    def needs_rekey(self) -> bool:
        """Always False: the ratchet renews keys every turn; kept for older callers."""
        return False

    def _ad(self, role: str) -> bytes:
        return _wire.lp(b"parley/v2/ad", self._transcript_hash, role.encode())

    def _sign(self, data: bytes) -> bytes:
        signature = self._me.sign(data, self._hash)
        return signature.r.to_bytes(self._width, "big") + signature.s.to_bytes(self._width, "big")

    def _verify(self, data: bytes, sig: bytes) -> None:
        if not sig:
            return  # deniable peer: the MAC alone authenticates
        r, s = int.from_bytes(sig[: self._width], "big"), int.from_bytes(sig[self._width :], "big")
        signature = elgamal.Signature(r, s)
        if not elgamal.verify(self._peer.verify_key, data, signature, self._peer_hash):
            raise InvalidMessage("message signature is invalid")

    def seal(self, plaintext: bytes) -> dict:
        """Pad, encrypt, sign (unless deniable) and MAC ``plaintext``; one ratchet step."""
        if not isinstance(plaintext, bytes | bytearray):
            raise TypeError("plaintext must be bytes")
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError(f"plaintext larger than {MAX_PLAINTEXT} bytes")
        sign = None if self._deniable else self._sign
        header, ct, sig, mac = ratchet.RatchetEncrypt(
            self._state, padding.pad(bytes(plaintext)), self._ad(self._role), sign
        )
        envelope = {
            "v": PROTOCOL_VERSION,
            "dh": _wire.to_hex(header.dh),
            "pn": header.pn,
            "n": header.n,
            "ct": _wire.to_b64(ct),
            "mac": _wire.to_b64(mac),
            "sig": self._sig_payload(sig),
        }
        if self._init_pending:
            envelope["init"] = self._init
        return envelope

    def _sig_payload(self, sig: bytes) -> dict | None:
        if not sig:
            return None
        r = int.from_bytes(sig[: self._width], "big")
        return elgamal.Signature(r, int.from_bytes(sig[self._width :], "big")).to_payload()

    def open(self, envelope: object) -> bytes:
        """Verify and decrypt an envelope from the peer.

        Raises InvalidMessage for anything malformed, forged, tampered with, replayed or
        beyond the skip bound (OlderPeer for a v1 envelope); the state is then unchanged."""
        if _wire.is_v1(envelope):
            raise OlderPeer(self._peer.name)
        if isinstance(envelope, dict) and "init" in envelope:
            # Only the initial message that started this session may ride along (the MAC
            # binds its transcript hash through the associated data anyway).
            if self._init is None or envelope["init"] != self._init:
                raise InvalidMessage("envelope starts another session")
            envelope = {k: v for k, v in envelope.items() if k != "init"}
        header, ct, sig, mac = self._parse(envelope)
        state, padded = ratchet.RatchetDecrypt(
            self._state,
            header,
            ct,
            sig,
            mac,
            self._ad(self._peer_role),
            self._verify,
            self._clock(),
        )
        try:
            plaintext = padding.unpad(padded)
        except ValueError as exc:
            raise InvalidMessage(f"bad padding: {exc}") from exc
        self._state = state
        self._init_pending = False  # the peer answered: it holds the session
        return plaintext

    def _parse(self, envelope: object) -> tuple[ratchet.Header, bytes, bytes, bytes]:
        data = _wire.fields(envelope, _FIELDS, InvalidMessage, "envelope")
        _wire.version(data, InvalidMessage, "envelope", PROTOCOL_VERSION)
        group = self._state.group
        dh_value = _wire.hex_int(data["dh"], group.hex_digits, InvalidMessage, "envelope dh")
        for name in ("pn", "n"):
            value = data[name]
            if not _wire.is_int(value) or not 0 <= value <= ratchet.MAX_COUNTER:
                raise InvalidMessage(f"envelope {name} must be an integer 0..{ratchet.MAX_COUNTER}")
        ct = _wire.b64(data["ct"], padding.MAX_PADDED, InvalidMessage, "envelope ct")
        if len(ct) not in padding.BUCKETS:
            raise InvalidMessage("envelope ct length is not a padding bucket")
        mac = _wire.b64(data["mac"], 32, InvalidMessage, "envelope mac", exact=32)
        sig = self._parse_sig(data["sig"])
        return ratchet.Header(dh_value, data["pn"], data["n"]), ct, sig, mac

    def _parse_sig(self, sig: object) -> bytes:
        if self._peer_deniable:
            if sig is not None:
                raise InvalidMessage("deniable peer sent a signature")
            return b""
        if sig is None:
            raise InvalidMessage("message is unsigned but the peer signs its messages")
        group = self._peer.verify_key.group
        parsed = elgamal.Signature.from_payload(sig, group, InvalidMessage, "message signature")
        if parsed.r >= group.p or parsed.s >= group.q:
            raise InvalidMessage("message signature is out of range")
        return parsed.r.to_bytes(self._width, "big") + parsed.s.to_bytes(self._width, "big")

    def debug_secrets(self) -> dict[str, str]:
        """The current root and chain keys (hex), for a debug key log in the spirit of
        SSLKEYLOGFILE (tests prove they never reach the relay). Never log these otherwise."""
        st = self._state
        keys = {"root_key": st.RK, "send_chain_key": st.CKs, "receive_chain_key": st.CKr}
        return {name: value.hex() for name, value in keys.items() if value is not None}

    # ----- persistence -----------------------------------------------------------------
    def to_state(self) -> dict:
        """A JSON-able snapshot (contains secrets: store it 0600)."""
        return session_state.dump(self)

    @classmethod
    def from_state(
        cls, state: object, me: Identity, clock: Callable[[], float] = time.time
    ) -> Session:
        """Rebuild a session saved by :meth:`to_state`; raises ParleyError if it is invalid."""
        return session_state.load(cls, state, me, clock)
