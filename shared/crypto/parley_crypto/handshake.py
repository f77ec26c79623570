"""Handshake v2 (sans-IO): SIGMA-shaped authenticated key exchange with key confirmation.

Flow, the same on both sides (either may start):

    -> ELGAMAL_PK      identity {"v":2, "name", "group", "y"}
    -> DEFF_HELLMAN_PK offer {"v":2, "dh", "nonce", "hash", "deniable"}   (unsigned)
    <- the peer's identity and offer
    -> KEY_CONFIRM     {"v":2, "sig": {"r","s"}, "mac"}
    <- the peer's KEY_CONFIRM: verified -> Session

The transcript holds the version, the room and both offers (each: name, group, key y, DH
value, nonce, hash, deniable), sorted by their bytes; the side whose offer sorts first is
"a". Each side signs ``sig_input(role, transcript)`` with its long-term key and MACs the
transcript hash under its direction's confirmation key from the HKDF schedule. Fresh
nonces and DH values on both sides make every transcript new, so nothing from an earlier
handshake verifies in a later one, and a reflected confirmation carries the wrong role.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from parley_crypto import _wire, dh, elgamal, kdf, ratchet
from parley_crypto.errors import HandshakeError, InvalidPublicKey, LegacyPeer, OlderPeer
from parley_crypto.identity import PROTOCOL_VERSION, Identity, PeerIdentity
from parley_crypto.session import Session

NONCE_BYTES = 32
ROOM_MAX = 256
MAC_BYTES = 32
_OFFER_FIELDS = ("v", "dh", "nonce", "hash", "deniable")
_CONFIRM_FIELDS = ("v", "sig", "mac")
_LEGACY_KEYS = ("diff_public_key", "deff_public_key", "s1", "s2")
_V = b"parley/v2/"


@dataclass(frozen=True)
class Offer:
    """One side's contribution to the transcript."""

    who: PeerIdentity
    dh: int
    nonce: bytes
    hash: str
    deniable: bool

    def entry(self) -> bytes:
        """Canonical bytes: name, group, fixed-width y and dh, nonce, hash, deniable."""
        group = self.who.verify_key.group
        width = group.byte_length
        return _wire.lp(
            _V + b"offer",
            self.who.name.encode(),
            group.name.encode(),
            self.who.y.to_bytes(width, "big"),
            self.dh.to_bytes(width, "big"),
            self.nonce,
            self.hash.encode(),
            b"\x01" if self.deniable else b"\x00",
        )


def transcript(room: str, one: Offer, other: Offer) -> tuple[bytes, Offer, Offer]:
    """(transcript bytes, offer of a, offer of b): the offers in sorted entry order."""
    a, b = sorted((one, other), key=Offer.entry)
    version = str(PROTOCOL_VERSION).encode()
    return _wire.lp(_V + b"transcript", version, room.encode(), a.entry(), b.entry()), a, b


def sig_input(role: str, transcript_bytes: bytes) -> bytes:
    """What a side's KEY_CONFIRM signature covers: its role label and the whole transcript."""
    return _wire.lp(_V + b"key-confirm/sig", role.encode(), transcript_bytes)


def mac_input(role: str, transcript_hash: bytes) -> bytes:
    """What a side's KEY_CONFIRM MAC covers: its role label and the transcript hash."""
    return _wire.lp(_V + b"key-confirm/mac", role.encode(), transcript_hash)


@dataclass(frozen=True)
class KeySchedule:
    """Everything derived from the DH secret: SK (the ratchet's seed) and one confirmation
    key per direction."""

    sk: bytes
    confirm: dict[str, bytes]


def key_schedule(secret: bytes, transcript_hash: bytes) -> KeySchedule:
    """HKDF-SHA256 over the DH secret, salted with the transcript hash, one label per use."""
    prk = kdf.hkdf_extract(transcript_hash, secret)
    return KeySchedule(
        sk=kdf.hkdf_expand(prk, _V + b"sk", 32),
        confirm={
            "a": kdf.hkdf_expand(prk, _V + b"a->b/confirm", 32),
            "b": kdf.hkdf_expand(prk, _V + b"b->a/confirm", 32),
        },
    )


class Handshake:
    """One key exchange with one peer; single-use. Feed it the peer's payloads in order:
    :meth:`receive_identity`, :meth:`receive_dh` (returns our KEY_CONFIRM payload), then
    :meth:`receive_confirm` (returns the Session)."""

    def __init__(
        self,
        my_identity: Identity,
        room: str,
        *,
        hash: str = elgamal.DEFAULT_HASH,
        deniable: bool = False,
        peer: PeerIdentity | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(room, str) or not 0 < len(room) <= ROOM_MAX:
            raise ValueError(f"room must be a non-empty string of at most {ROOM_MAX} characters")
        if hash not in elgamal.HASHES:
            raise ValueError(f"unsupported hash {hash!r}; choose one of {elgamal.HASHES}")
        self._me = my_identity
        self._group = my_identity.signing_key.group
        self._room = room
        self._hash = hash
        self._deniable = bool(deniable)
        self._clock = clock
        self._peer: PeerIdentity | None = None
        self._ephemeral = dh.generate(self._group)
        self._nonce = secrets.token_bytes(NONCE_BYTES)
        self._peer_offer: Offer | None = None
        self._confirm: dict | None = None
        self._session: Session | None = None
        if peer is not None:
            self._accept_peer(peer)

    @property
    def peer(self) -> PeerIdentity | None:
        """The peer identity received so far, if any."""
        return self._peer

    @property
    def awaiting_confirm(self) -> bool:
        """True between our KEY_CONFIRM going out and the peer's arriving."""
        return self._confirm is not None and self._session is None

    def identity_payload(self) -> dict:
        """Our identity payload (send as ELGAMAL_PK)."""
        return self._me.public_payload()

    def receive_identity(self, payload: object) -> PeerIdentity:
        """Validate the peer's identity payload (ELGAMAL_PK_BC) and remember it.

        Raises LegacyPeer (original protocol), OlderPeer (v1), HandshakeError otherwise."""
        if self._peer_offer is not None:
            raise HandshakeError("handshake already under way; start a new one")
        return self._accept_peer(PeerIdentity.from_payload(payload))

    def _accept_peer(self, peer: PeerIdentity) -> PeerIdentity:
        if peer.group != self._group.name:
            raise HandshakeError(f"peer uses group {peer.group}, we use {self._group.name}")
        if peer.y == self._me.public.y:
            raise HandshakeError("peer presented our own identity key (reflected message?)")
        self._peer = peer
        return peer

    def _my_offer(self) -> Offer:
        return Offer(
            self._me.public, self._ephemeral.public, self._nonce, self._hash, self._deniable
        )

    def dh_payload(self) -> dict:
        """Our offer (send as DEFF_HELLMAN_PK / DIFF_HELLMAN_PK): unsigned; the signature
        comes in KEY_CONFIRM over the whole transcript."""
        return {
            "v": PROTOCOL_VERSION,
            "dh": _wire.to_hex(self._ephemeral.public),
            "nonce": self._nonce.hex(),
            "hash": self._hash,
            "deniable": self._deniable,
        }

    def receive_dh(self, payload: object) -> dict:
        """Check the peer's offer, derive the keys and return our KEY_CONFIRM payload.

        Raises LegacyPeer / OlderPeer / HandshakeError (the peer's SHA-1 under a local
        SHA-256 policy included); nothing changes then."""
        if self._peer_offer is not None:
            raise HandshakeError("handshake already has the peer's DH payload")
        peer = self._peer
        if peer is None:
            raise HandshakeError("peer DH payload arrived before the peer's identity")
        offer = self._parse_offer(payload, peer)
        try:
            secret = dh.shared_secret(self._ephemeral, offer.dh)
        except InvalidPublicKey as exc:
            raise HandshakeError(f"peer DH value rejected: {exc}") from exc
        self._transcript, a, _ = transcript(self._room, self._my_offer(), offer)
        self._th = hashlib.sha256(self._transcript).digest()
        self._role = "a" if a.who.y == self._me.public.y else "b"
        self._peer_role = "b" if self._role == "a" else "a"
        self._keys = key_schedule(secret, self._th)
        self._peer_offer = offer
        signature = self._me.sign(sig_input(self._role, self._transcript), self._hash)
        mac = kdf.hmac_sha256(self._keys.confirm[self._role], mac_input(self._role, self._th))
        self._confirm = {"v": PROTOCOL_VERSION, "sig": signature.to_payload(), "mac": mac.hex()}
        return self.confirm_payload()

    def confirm_payload(self) -> dict:
        """Our KEY_CONFIRM payload (after :meth:`receive_dh`)."""
        if self._confirm is None:
            raise HandshakeError("no KEY_CONFIRM before the peer's DH payload")
        return dict(self._confirm, sig=dict(self._confirm["sig"]))

    def receive_confirm(self, payload: object) -> Session:
        """Verify the peer's KEY_CONFIRM (MAC, then signature over the transcript); only
        then is there a Session. Raises OlderPeer / HandshakeError, changing nothing."""
        if self._session is not None:
            raise HandshakeError("handshake already complete")
        if self._confirm is None:
            raise HandshakeError("KEY_CONFIRM arrived before the peer's DH payload")
        if _wire.is_v1(payload):
            raise OlderPeer(self._peer.name)
        data = _wire.fields(payload, _CONFIRM_FIELDS, HandshakeError, "KEY_CONFIRM")
        _wire.version(data, HandshakeError, "KEY_CONFIRM", PROTOCOL_VERSION)
        mac = _wire.hex_bytes(data["mac"], MAC_BYTES, HandshakeError, "KEY_CONFIRM mac")
        signature = elgamal.Signature.from_payload(
            data["sig"], self._group, HandshakeError, "KEY_CONFIRM signature"
        )
        role = self._peer_role
        expected = kdf.hmac_sha256(self._keys.confirm[role], mac_input(role, self._th))
        if not hmac.compare_digest(mac, expected):
            raise HandshakeError("KEY_CONFIRM MAC is invalid (peer does not hold the keys)")
        signed = sig_input(role, self._transcript)
        if not elgamal.verify(self._peer.verify_key, signed, signature, self._peer_offer.hash):
            raise HandshakeError("KEY_CONFIRM signature is invalid (wrong key or transcript)")
        self._session = self._make_session()
        self._ephemeral = None  # b's exponent now lives in the ratchet, a's is gone
        return self._session

    def _make_session(self) -> Session:
        if self._role == "a":
            state = ratchet.init_a(self._group, self._keys.sk, self._th, self._peer_offer.dh)
        else:
            state = ratchet.init_b(self._group, self._keys.sk, self._th, self._ephemeral)
        return Session(
            me=self._me,
            peer=self._peer,
            role=self._role,
            state=state,
            transcript_hash=self._th,
            hash=self._hash,
            peer_hash=self._peer_offer.hash,
            deniable=self._deniable,
            peer_deniable=self._peer_offer.deniable,
            clock=self._clock,
        )

    def _parse_offer(self, payload: object, peer: PeerIdentity) -> Offer:
        if isinstance(payload, str) or (
            isinstance(payload, dict) and any(k in payload for k in _LEGACY_KEYS)
        ):
            raise LegacyPeer(
                "peer sent an unsigned legacy DH key (the original protocol); "
                "it cannot be authenticated"
            )
        if _wire.is_v1(payload):
            raise OlderPeer(peer.name)
        data = _wire.fields(payload, _OFFER_FIELDS, HandshakeError, "handshake payload")
        _wire.version(data, HandshakeError, "handshake payload", PROTOCOL_VERSION)
        peer_dh = _wire.hex_int(data["dh"], self._group.hex_digits, HandshakeError, "handshake dh")
        nonce = _wire.hex_bytes(data["nonce"], NONCE_BYTES, HandshakeError, "handshake nonce")
        if data["hash"] not in elgamal.HASHES:
            raise HandshakeError(f"handshake hash must be one of {elgamal.HASHES}")
        if not elgamal.peer_hash_allowed(self._hash, data["hash"]):
            raise HandshakeError(
                f"{peer.name} signs with legacy SHA-1, which this client refuses "
                "(allow it only by choosing --hash sha1 yourself)"
            )
        if not isinstance(data["deniable"], bool):
            raise HandshakeError("handshake deniable must be true or false")
        if nonce == self._nonce or peer_dh == self._ephemeral.public:
            raise HandshakeError("peer DH payload is our own (reflected message)")
        try:
            dh.validate_public(self._group, peer_dh)
        except InvalidPublicKey as exc:
            raise HandshakeError(f"peer DH value rejected: {exc}") from exc
        return Offer(peer, peer_dh, nonce, data["hash"], data["deniable"])
