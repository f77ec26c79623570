"""Prekey bundles (sans-IO): what Bob publishes and Alice verifies, and the wire helpers the
rest of :mod:`parley_crypto.prekeys` shares. See prekeys.py for the protocol; a bundle is
bound (by Bob's identity signature) to its room and its signed prekey's creation time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from parley_crypto import _wire, dh, elgamal
from parley_crypto.errors import InvalidPublicKey, OlderPeer, ParleyError
from parley_crypto.identity import PROTOCOL_VERSION, Identity, PeerIdentity

ID_BYTES = 8  # prekey ids are 16 hex digits (random): collisions are not a concern per seat
# The relay refuses a bundle over 8 KiB (DECISIONS.md); an 8192-bit group's bundle is ~4 KiB.
BUNDLE_MAX_BYTES = 8192
BUNDLE_TYPE = "parley-prekey-bundle"
_BUNDLE_FIELDS = ("v", "type", "identity", "room", "created", "spk", "hash", "deniable", "sig")
# A bundle's signed prekey is good while the responder keeps it: prekey_store.SPK_KEEP_SECONDS
# (21 days; kept here too, as prekey_store imports this module). Older: refused as stale.
BUNDLE_MAX_AGE_SECONDS = 21 * 24 * 3600
# Clocks of two machines differ; ten minutes covers a machine without NTP for weeks, while a
# bundle "from the future" beyond it cannot be the responder's honest one.
BUNDLE_MAX_SKEW_SECONDS = 600
MAX_ROOM_BYTES = 256  # rooms are 1-64 characters (client and relay); generous for UTF-8
_KEY_FIELDS = ("id", "dh")
_V = b"parley/v2/x3dh/"


class PrekeyError(ParleyError):
    """A prekey bundle, one-time key or initial message is malformed, unverifiable, replayed
    or names a prekey we do not hold. ``str()`` is one line for the user."""


def _key_id(value: object, what: str) -> str:
    _wire.hex_bytes(value, ID_BYTES, PrekeyError, what)
    return value  # type: ignore[return-value]


def _dh_value(group, value: object, what: str) -> int:
    y = _wire.hex_int(value, group.hex_digits, PrekeyError, what)
    try:
        return dh.validate_public(group, y)
    except InvalidPublicKey as exc:
        raise PrekeyError(f"{what} rejected: {exc}") from exc


def _claimed_name(obj: dict) -> str:
    """The name a v1 payload claims, fit for the OlderPeer line (or "the peer")."""
    ident = obj.get("identity")
    name = ident.get("name") if isinstance(ident, dict) else obj.get("name")
    return (
        name
        if isinstance(name, str) and 0 < len(name) <= 64 and name.isprintable()
        else ("the peer")
    )


def _peer(obj: object, me: Identity, what: str) -> PeerIdentity:
    if _wire.is_v1(obj):
        raise OlderPeer(_claimed_name(obj))
    try:
        peer = PeerIdentity.from_payload(obj)
    except OlderPeer:
        raise
    except ParleyError as exc:
        raise PrekeyError(f"{what} identity is invalid: {exc}") from exc
    if peer.group != me.signing_key.group.name:
        raise PrekeyError(f"{what} uses group {peer.group}, we use {me.signing_key.group.name}")
    if peer.y == me.public.y:
        raise PrekeyError(f"{what} carries our own identity key (reflected?)")
    return peer


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise PrekeyError(f"{what} must be true or false")
    return value


def _hash(value: object, what: str) -> str:
    if value not in elgamal.HASHES:
        raise PrekeyError(f"{what} must be one of {elgamal.HASHES}")
    return value  # type: ignore[return-value]


def _fixed(group, value: int) -> bytes:
    return value.to_bytes(group.byte_length, "big")


# ----- the bundle (Bob's side publishes it, Alice's side verifies it) -----------------------
@dataclass(frozen=True)
class Bundle:
    """A verified prekey bundle: whose it is, the signed prekey, and Bob's session options."""

    owner: PeerIdentity
    spk_id: str
    spk: int
    hash: str
    deniable: bool
    room: str = ""  # what the owner signed it for (not part of the transcript entry)
    created: int = 0  # the signed prekey's creation time, seconds since the epoch

    def entry(self) -> bytes:
        """Canonical bytes of the responder's part of the transcript. Not the display name:
        the owner may rename itself between publishing and opening (its key is who it is)."""
        group = self.owner.verify_key.group
        return _wire.lp(
            _V + b"responder",
            group.name.encode(),
            self.owner.key_id.encode("ascii"),
            _fixed(group, self.owner.y),
            bytes.fromhex(self.spk_id),
            _fixed(group, self.spk),
            self.hash.encode(),
            b"\x01" if self.deniable else b"\x00",
        )


def spk_sig_input(bundle: Bundle) -> bytes:
    """What the identity signature on a signed prekey covers: the owner's display name (the
    label a first contact pins), the responder entry, the room and the creation time."""
    return _wire.lp(
        _V + b"spk-sig",
        bundle.owner.name.encode(),
        bundle.entry(),
        bundle.room.encode(),
        str(bundle.created).encode("ascii"),
    )


def make_bundle(
    me: Identity,
    spk_id: str,
    spk: dh.DHPrivateKey,
    hash: str,
    deniable: bool,
    room: str,
    created: float,
) -> dict:
    """The bundle payload for our signed prekey ``spk`` in ``room``, created at ``created``
    (seconds since the epoch; sent in relay event ``prekeys``)."""
    bundle = Bundle(me.public, spk_id, spk.public, hash, bool(deniable), room, int(created))
    signature = me.sign(spk_sig_input(bundle), hash)
    return {
        "v": PROTOCOL_VERSION,
        "type": BUNDLE_TYPE,
        "identity": me.public_payload(),
        "room": room,
        "created": int(created),
        "spk": {"id": spk_id, "dh": _wire.to_hex(spk.public)},
        "hash": hash,
        "deniable": bool(deniable),
        "sig": signature.to_payload(),
    }


def parse_bundle(
    obj: object,
    me: Identity,
    room: str,
    local_hash: str = elgamal.DEFAULT_HASH,
    now: float | None = None,
) -> Bundle:
    """Validate a bundle fetched in ``room``: shape, version, identity and group, the room it
    was signed for, its age (``now``: seconds since the epoch, default the clock), the SPK in
    the subgroup, the owner's hash against our policy, and the owner's signature over it."""
    if _wire.is_v1(obj):
        raise OlderPeer(_claimed_name(obj))
    if len(json.dumps(obj, separators=(",", ":"))) > BUNDLE_MAX_BYTES:
        raise PrekeyError(f"prekey bundle is larger than {BUNDLE_MAX_BYTES} bytes")
    data = _wire.fields(obj, _BUNDLE_FIELDS, PrekeyError, "prekey bundle")
    _wire.version(data, PrekeyError, "prekey bundle", PROTOCOL_VERSION)
    if data["type"] != BUNDLE_TYPE:
        raise PrekeyError("prekey bundle has the wrong type")
    owner = _peer(data["identity"], me, "prekey bundle")
    group = owner.verify_key.group
    spk = _wire.fields(data["spk"], _KEY_FIELDS, PrekeyError, "signed prekey")
    created = _created(data["created"], time.time() if now is None else now)
    if data["room"] != room:
        raise PrekeyError("prekey bundle was published for another room")
    hash = _hash(data["hash"], "prekey bundle hash")
    if not elgamal.peer_hash_allowed(local_hash, hash):
        raise PrekeyError(f"{owner.name} signs with legacy SHA-1, which this client refuses")
    bundle = Bundle(
        owner,
        _key_id(spk["id"], "signed prekey id"),
        _dh_value(group, spk["dh"], "signed prekey"),
        hash,
        _flag(data["deniable"], "prekey bundle deniable"),
        room,
        created,
    )
    signature = elgamal.Signature.from_payload(
        data["sig"], group, PrekeyError, "signed prekey signature"
    )
    if not elgamal.verify(owner.verify_key, spk_sig_input(bundle), signature, hash):
        raise PrekeyError("signed prekey signature is invalid (not signed by its identity key)")
    return bundle


def _created(value: object, now: float) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PrekeyError("prekey bundle creation time must be a whole number of seconds")
    if value > now + BUNDLE_MAX_SKEW_SECONDS:
        raise PrekeyError("prekey bundle is dated in the future (clock skew beyond 10 minutes)")
    if now - value > BUNDLE_MAX_AGE_SECONDS:
        raise PrekeyError("prekey bundle is stale (its signed prekey is older than 21 days)")
    return value


def one_time_payload(key_id: str, key: dh.DHPrivateKey) -> dict:
    """One one-time prekey as published: ``{"id", "dh"}``."""
    return {"id": key_id, "dh": _wire.to_hex(key.public)}


def parse_one_time(obj: object, bundle: Bundle) -> tuple[str, int] | None:
    """A fetched one-time prekey (or None when the relay had none left)."""
    if obj is None:
        return None
    data = _wire.fields(obj, _KEY_FIELDS, PrekeyError, "one-time prekey")
    group = bundle.owner.verify_key.group
    otk = _dh_value(group, data["dh"], "one-time prekey")
    if otk == bundle.spk:
        raise PrekeyError("one-time prekey equals the signed prekey")
    return _key_id(data["id"], "one-time prekey id"), otk
