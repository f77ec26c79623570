"""An established conversation: seal and open envelopes (sans-IO).

Envelope ``{"v":1, "seq", "iv", "ct", "mac", "sig"}``: AES-256-CFB128 ciphertext under the
sender's direction key, HMAC-SHA256 over version||seq||iv||ct under the direction MAC key,
and an ElGamal signature over the same bytes bound to the session transcript (``sig`` is
null in deniable mode). ``open`` checks, in order: shape, MAC (constant time), sequence,
signature; only then decrypts and advances the receive counter.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from parley_crypto import _wire, aes_cfb, elgamal, kdf
from parley_crypto.errors import InvalidMessage
from parley_crypto.identity import Identity, PeerIdentity

VERSION = 1
MAX_PLAINTEXT = 1 << 20
MAX_SEQ = (1 << 63) - 1
_FIELDS = ("v", "seq", "iv", "ct", "mac", "sig")


@dataclass(frozen=True)
class Direction:
    """Keys for one direction of traffic (label is b"a->b" or b"b->a")."""

    label: bytes
    enc_key: bytes
    mac_key: bytes


def authenticated_bytes(seq: int, iv: bytes, ct: bytes) -> bytes:
    """version || seq (8 bytes big-endian) || iv || ct: what the MAC and signature cover."""
    return bytes([VERSION]) + struct.pack(">Q", seq) + iv + ct


class Session:
    """One direction pair of keys plus sequence state. Built by ``Handshake.receive_dh``."""

    def __init__(
        self,
        *,
        me: Identity,
        peer: PeerIdentity,
        send: Direction,
        receive: Direction,
        transcript_hash: bytes,
        hash: str,
        peer_hash: str,
        deniable: bool,
        peer_deniable: bool,
        rekey_after: int,
        safety_number: str,
    ) -> None:
        self._me = me
        self._peer = peer
        self._send = send
        self._receive = receive
        self._transcript_hash = transcript_hash
        self._hash = hash
        self._peer_hash = peer_hash
        self._deniable = deniable
        self._peer_deniable = peer_deniable
        self._rekey_after = rekey_after
        self._safety_number = safety_number
        self._sent = 0
        self._last_received = 0

    @property
    def peer(self) -> PeerIdentity:
        """The authenticated peer identity."""
        return self._peer

    @property
    def safety_number(self) -> str:
        """60-digit safety number of the two identity keys."""
        return self._safety_number

    @property
    def transcript_hash(self) -> bytes:
        """SHA-256 of the canonical handshake transcript (same on both sides)."""
        return self._transcript_hash

    @property
    def deniable(self) -> bool:
        """True when our envelopes carry no signature."""
        return self._deniable

    @property
    def peer_deniable(self) -> bool:
        """True when the peer announced deniable mode (its envelopes must carry no signature)."""
        return self._peer_deniable

    @property
    def sent(self) -> int:
        """Number of envelopes sealed so far."""
        return self._sent

    @property
    def needs_rekey(self) -> bool:
        """True once ``rekey_after`` envelopes have been sealed: run a fresh handshake."""
        return self._sent >= self._rekey_after

    def _signed_bytes(self, label: bytes, authenticated: bytes) -> bytes:
        return _wire.lp(b"parley/v1/envelope", self._transcript_hash, label, authenticated)

    def seal(self, plaintext: bytes) -> dict:
        """Encrypt, MAC and (unless deniable) sign ``plaintext``; returns the envelope dict."""
        if not isinstance(plaintext, bytes | bytearray):
            raise TypeError("plaintext must be bytes")
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError(f"plaintext larger than {MAX_PLAINTEXT} bytes")
        seq = self._sent + 1
        iv = aes_cfb.new_iv()
        ct = aes_cfb.encrypt(self._send.enc_key, iv, bytes(plaintext))
        authenticated = authenticated_bytes(seq, iv, ct)
        mac = kdf.hmac_sha256(self._send.mac_key, authenticated)
        sig = None
        if not self._deniable:
            signed = self._signed_bytes(self._send.label, authenticated)
            sig = self._me.sign(signed, self._hash).to_payload()
        self._sent = seq
        return {
            "v": VERSION,
            "seq": seq,
            "iv": _wire.to_b64(iv),
            "ct": _wire.to_b64(ct),
            "mac": _wire.to_b64(mac),
            "sig": sig,
        }

    def open(self, envelope: object) -> bytes:
        """Verify and decrypt an envelope from the peer.

        Raises InvalidMessage for anything malformed, forged, tampered with, replayed or
        out of order; the session state is unchanged in that case.
        """
        data = _wire.fields(envelope, _FIELDS, InvalidMessage, "envelope")
        _wire.version(data, InvalidMessage, "envelope")
        seq = data["seq"]
        if not _wire.is_int(seq) or not 0 < seq <= MAX_SEQ:
            raise InvalidMessage("envelope seq must be a positive integer")
        iv = _wire.b64(
            data["iv"], aes_cfb.IV_BYTES, InvalidMessage, "envelope iv", exact=aes_cfb.IV_BYTES
        )
        ct = _wire.b64(data["ct"], MAX_PLAINTEXT, InvalidMessage, "envelope ct")
        mac = _wire.b64(data["mac"], 32, InvalidMessage, "envelope mac", exact=32)
        signature = self._parse_sig(data["sig"])
        authenticated = authenticated_bytes(seq, iv, ct)
        expected = kdf.hmac_sha256(self._receive.mac_key, authenticated)
        if not hmac.compare_digest(mac, expected):
            raise InvalidMessage("message authentication failed (tampered or wrong key)")
        if seq <= self._last_received:
            raise InvalidMessage(
                f"replayed or reordered message (seq {seq}, already saw {self._last_received})"
            )
        if signature is not None:
            signed = self._signed_bytes(self._receive.label, authenticated)
            if not elgamal.verify(self._peer.verify_key, signed, signature, self._peer_hash):
                raise InvalidMessage("message signature is invalid")
        plaintext = aes_cfb.decrypt(self._receive.enc_key, iv, ct)
        self._last_received = seq
        return plaintext

    def _parse_sig(self, sig: object) -> elgamal.Signature | None:
        if self._peer_deniable:
            if sig is not None:
                raise InvalidMessage("deniable peer sent a signature")
            return None
        if sig is None:
            raise InvalidMessage("message is unsigned but the peer signs its messages")
        group = self._peer.verify_key.group
        return elgamal.Signature.from_payload(sig, group, InvalidMessage, "message signature")
