"""The authenticated key exchange (sans-IO): identity payloads, signed ephemeral DH, keys.

Each side sends its identity payload, then a handshake payload
``{"v":1, "dh", "nonce", "hash", "deniable", "sig": {"r","s"}}`` whose ElGamal signature
covers a domain-separated entry: "parley/v1/handshake", room, name, group, identity y,
dh, nonce, hash, deniable. Both entries, sorted bytewise, form the transcript; its SHA-256
salts HKDF over the DH secret, and the side whose entry sorts first is "a" for the
per-direction labels. So both sides derive the same keys whichever message arrives first.
"""

from __future__ import annotations

import hashlib
import secrets

from parley_crypto import _wire, dh, elgamal, kdf, safety
from parley_crypto.errors import HandshakeError, InvalidPublicKey, LegacyPeer
from parley_crypto.identity import Identity, PeerIdentity
from parley_crypto.session import Direction, Session

NONCE_BYTES = 32
ROOM_MAX = 256
_FIELDS = ("v", "dh", "nonce", "hash", "deniable", "sig")
_LEGACY_KEYS = ("diff_public_key", "deff_public_key", "s1", "s2")


def _entry(
    room: str, who: PeerIdentity, dh_value: int, nonce: bytes, hash: str, deniable: bool
) -> bytes:
    """The bytes one side signs: everything the peer must bind to that side's identity."""
    group = who.verify_key.group
    width = group.byte_length
    return _wire.lp(
        b"parley/v1/handshake",
        room.encode(),
        who.name.encode(),
        group.name.encode(),
        who.y.to_bytes(width, "big"),
        dh_value.to_bytes(width, "big"),
        nonce,
        hash.encode(),
        b"\x01" if deniable else b"\x00",
    )


class Handshake:
    """One key exchange with one peer. Feed it the peer's payloads; it returns a Session.

    A Handshake is single-use: for a rekey, build a new one (pass ``peer=`` to skip the
    identity step) so a fresh ephemeral key is used.
    """

    def __init__(
        self,
        my_identity: Identity,
        room: str,
        *,
        hash: str = elgamal.DEFAULT_HASH,
        deniable: bool = False,
        rekey_after: int = 1000,
        peer: PeerIdentity | None = None,
    ) -> None:
        if not isinstance(room, str) or not 0 < len(room) <= ROOM_MAX:
            raise ValueError(f"room must be a non-empty string of at most {ROOM_MAX} characters")
        if hash not in elgamal.HASHES:
            raise ValueError(f"unsupported hash {hash!r}; choose one of {elgamal.HASHES}")
        if not _wire.is_int(rekey_after) or rekey_after < 1:
            raise ValueError("rekey_after must be a positive integer")
        self._me = my_identity
        self._group = my_identity.signing_key.group
        self._room = room
        self._hash = hash
        self._deniable = bool(deniable)
        self._rekey_after = rekey_after
        self._peer: PeerIdentity | None = None
        self._ephemeral: dh.DHPrivateKey | None = None
        self._payload: dict | None = None
        self._entry = b""
        self._session: Session | None = None
        if peer is not None:
            self._accept_peer(peer)

    @property
    def peer(self) -> PeerIdentity | None:
        """The peer identity received so far, if any."""
        return self._peer

    def identity_payload(self) -> dict:
        """Our identity payload (send as ELGAMAL_PK)."""
        return self._me.public_payload()

    def receive_identity(self, payload: object) -> PeerIdentity:
        """Validate the peer's identity payload (ELGAMAL_PK_BC) and remember it.

        Raises LegacyPeer for the original protocol's bare string key, HandshakeError otherwise.
        """
        if self._session is not None:
            raise HandshakeError("handshake already complete; start a new one to change identity")
        return self._accept_peer(PeerIdentity.from_payload(payload))

    def _accept_peer(self, peer: PeerIdentity) -> PeerIdentity:
        if peer.group != self._group.name:
            raise HandshakeError(f"peer uses group {peer.group}, we use {self._group.name}")
        if peer.y == self._me.public.y:
            raise HandshakeError("peer presented our own identity key (reflected message?)")
        self._peer = peer
        return peer

    def dh_payload(self) -> dict:
        """Our signed ephemeral DH payload (send as DEFF_HELLMAN_PK). Same dict every call."""
        if self._payload is None:
            self._ephemeral = dh.generate(self._group)
            nonce = secrets.token_bytes(NONCE_BYTES)
            public = self._ephemeral.public
            self._entry = _entry(
                self._room, self._me.public, public, nonce, self._hash, self._deniable
            )
            signature = self._me.sign(self._entry, self._hash)
            self._payload = {
                "v": 1,
                "dh": _wire.to_hex(public),
                "nonce": nonce.hex(),
                "hash": self._hash,
                "deniable": self._deniable,
                "sig": signature.to_payload(),
            }
        return dict(self._payload, sig=dict(self._payload["sig"]))

    def receive_dh(self, payload: object) -> Session:
        """Verify the peer's signed DH payload and derive the session keys.

        Needs :meth:`receive_identity` first. Raises LegacyPeer for the original protocol's
        unsigned ``diff_public_key`` payloads and HandshakeError for anything invalid.
        """
        if self._session is not None:
            raise HandshakeError("handshake already complete")
        peer = self._peer
        if peer is None:
            raise HandshakeError("peer DH payload arrived before the peer's identity")
        if isinstance(payload, str) or (
            isinstance(payload, dict) and any(k in payload for k in _LEGACY_KEYS)
        ):
            raise LegacyPeer(
                "peer sent an unsigned legacy DH key (the original protocol); "
                "it cannot be authenticated"
            )
        peer_dh, nonce, peer_hash, peer_deniable, signature = self._parse(payload)
        try:
            dh.validate_public(self._group, peer_dh)
        except InvalidPublicKey as exc:
            raise HandshakeError(f"peer DH value rejected: {exc}") from exc
        self.dh_payload()  # make sure our own ephemeral key and entry exist
        peer_entry = _entry(self._room, peer, peer_dh, nonce, peer_hash, peer_deniable)
        # A reflected copy of our own payload fails here: it carries our signature, and the
        # peer's key differs from ours (checked when the identity was accepted).
        if not elgamal.verify(peer.verify_key, peer_entry, signature, peer_hash):
            raise HandshakeError(
                "peer DH payload signature is invalid (wrong key, room or tampering)"
            )
        try:
            secret = dh.shared_secret(self._ephemeral, peer_dh)
        except InvalidPublicKey as exc:
            raise HandshakeError(f"peer DH value rejected: {exc}") from exc
        self._session = self._derive(secret, peer_entry, peer_hash, peer_deniable)
        self._ephemeral = None  # forward secrecy: the exponent is not needed any more
        return self._session

    def _parse(self, payload: object) -> tuple[int, bytes, str, bool, elgamal.Signature]:
        data = _wire.fields(payload, _FIELDS, HandshakeError, "handshake payload")
        _wire.version(data, HandshakeError, "handshake payload")
        digits = self._group.hex_digits
        peer_dh = _wire.hex_int(data["dh"], digits, HandshakeError, "handshake dh")
        nonce = _wire.hex_bytes(data["nonce"], NONCE_BYTES, HandshakeError, "handshake nonce")
        if data["hash"] not in elgamal.HASHES:
            raise HandshakeError(f"handshake hash must be one of {elgamal.HASHES}")
        if not isinstance(data["deniable"], bool):
            raise HandshakeError("handshake deniable must be true or false")
        signature = elgamal.Signature.from_payload(
            data["sig"], self._group, HandshakeError, "handshake signature"
        )
        return peer_dh, nonce, data["hash"], data["deniable"], signature

    def _derive(
        self, secret: bytes, peer_entry: bytes, peer_hash: str, peer_deniable: bool
    ) -> Session:
        i_am_a = self._entry < peer_entry
        first, second = (self._entry, peer_entry) if i_am_a else (peer_entry, self._entry)
        transcript_hash = hashlib.sha256(_wire.lp(b"parley/v1/transcript", first, second)).digest()

        def direction(label: bytes) -> Direction:
            enc = kdf.hkdf_sha256(secret, transcript_hash, b"parley/v1/" + label + b"/enc", 32)
            mac = kdf.hkdf_sha256(secret, transcript_hash, b"parley/v1/" + label + b"/mac", 32)
            return Direction(label, enc, mac)

        a_to_b, b_to_a = direction(b"a->b"), direction(b"b->a")
        return Session(
            me=self._me,
            peer=self._peer,
            send=a_to_b if i_am_a else b_to_a,
            receive=b_to_a if i_am_a else a_to_b,
            transcript_hash=transcript_hash,
            hash=self._hash,
            peer_hash=peer_hash,
            deniable=self._deniable,
            peer_deniable=peer_deniable,
            rekey_after=self._rekey_after,
            safety_number=safety.safety_number(self._me.public, self._peer),
        )
