"""Asynchronous first contact (sans-IO): X3DH's shape on the negotiated finite-field group.

Bob (the responder, away) publishes through the relay a *bundle*: his identity, a signed
medium-term prekey SPK (signed with his identity key over group, hash, deniable, the prekey's
id and value, his name and key id, the room and the prekey's creation time) and a batch of
unsigned one-time prekeys OTK. Alice refuses a bundle for another room (a relay serving Bob's
bundle from room X in room Y), one older than the prekey's keep time (a relay serving an old
prekey forever) and one from the future beyond a small clock skew. Alice (the
initiator) fetches the bundle and at most one OTK (the relay pops it), then:

    EK      = a fresh DH key pair in the same group
    T       = transcript(room, Bob's bundle entry, Alice's entry (identity, EK, nonce, hash,
              deniable), the OTK's id and value or empty)
    init    = {"v":2, "identity", "ek", "nonce", "spk", "otk", "hash", "deniable",
               "sig": Alice's identity signature over T}
    SK      = HKDF-SHA256(DH(EK, SPK) || DH(EK, OTK), salt = none, info = label || SHA-256(T))

SK seeds a Double Ratchet exactly as the live handshake's does, with Alice as role "a" (her
first ratchet step is against SPK) and Bob as "b" (SPK is his first ratchet key). Every
envelope Alice seals carries ``init`` until she has opened one of Bob's; the envelopes' MAC
binds SHA-256(T) through the associated data, so a rewritten ``init`` fails.

Bob validates the init (every DH value in the subgroup, the SPK and OTK ids his, versions, the
hash policy, Alice's signature over T), opens the first envelope, and only then deletes the
OTK's private key and records the init as used (:class:`~parley_crypto.prekey_store.PrekeyStore`):
a replayed init is refused, with or without an OTK, while its SPK lives.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from parley_crypto import _wire, dh, elgamal, kdf, ratchet
from parley_crypto.errors import InvalidPublicKey, OlderPeer
from parley_crypto.identity import PROTOCOL_VERSION, Identity, PeerIdentity
from parley_crypto.prekey_bundle import (  # noqa: F401 - re-exported: prekeys' public API
    _V,
    BUNDLE_MAX_AGE_SECONDS,
    BUNDLE_MAX_BYTES,
    BUNDLE_MAX_SKEW_SECONDS,
    BUNDLE_TYPE,
    ID_BYTES,
    MAX_ROOM_BYTES,
    Bundle,
    PrekeyError,
    _claimed_name,
    _dh_value,
    _fixed,
    _flag,
    _hash,
    _key_id,
    _peer,
    make_bundle,
    one_time_payload,
    parse_bundle,
    parse_one_time,
    spk_sig_input,
)
from parley_crypto.session import Session

NONCE_BYTES = 32
_INIT_FIELDS = ("v", "identity", "ek", "nonce", "spk", "otk", "hash", "deniable", "sig")


def new_key_id() -> str:
    """A fresh random prekey id (16 lowercase hex digits)."""
    return secrets.token_hex(ID_BYTES)


# ----- the transcript and the key -----------------------------------------------------------
def initiator_entry(who: PeerIdentity, ek: int, nonce: bytes, hash: str, deniable: bool) -> bytes:
    """Canonical bytes of the initiator's part of the transcript."""
    group = who.verify_key.group
    return _wire.lp(
        _V + b"initiator",
        who.name.encode(),
        group.name.encode(),
        who.key_id.encode("ascii"),
        _fixed(group, who.y),
        _fixed(group, ek),
        nonce,
        hash.encode(),
        b"\x01" if deniable else b"\x00",
    )


def transcript(room: str, bundle: Bundle, initiator: bytes, otk: tuple[str, int] | None) -> bytes:
    """The whole initial transcript: version, room, both entries, the OTK used (or none)."""
    group = bundle.owner.verify_key.group
    otk_part = _wire.lp(bytes.fromhex(otk[0]), _fixed(group, otk[1])) if otk else b""
    version = str(PROTOCOL_VERSION).encode()
    return _wire.lp(_V + b"transcript", version, room.encode(), bundle.entry(), initiator, otk_part)


def sig_input(transcript_bytes: bytes) -> bytes:
    """What the initiator's identity signature covers: the whole initial transcript."""
    return _wire.lp(_V + b"init-sig", transcript_bytes)


def derive_sk(dh1: bytes, dh2: bytes | None, transcript_hash: bytes) -> bytes:
    """SK = HKDF-SHA256(DH(EK,SPK) || DH(EK,OTK), zero salt, label || transcript hash)."""
    return kdf.hkdf_sha256(dh1 + (dh2 or b""), None, _V + b"sk" + transcript_hash, 32)


def init_id(init: object) -> str:
    """A stable id for an initial message (what the responder remembers as used)."""
    canonical = json.dumps(init, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]


# ----- Alice: start a session against a bundle ---------------------------------------------
def initiate(
    me: Identity,
    room: str,
    bundle_payload: object,
    one_time: object,
    *,
    hash: str = elgamal.DEFAULT_HASH,
    deniable: bool = False,
    clock: Callable[[], float] = time.time,
) -> Session:
    """A Session towards the bundle's owner that can seal at once; its envelopes carry the
    initial message until one of the peer's envelopes has opened. Raises PrekeyError /
    OlderPeer for a bad bundle or one-time key."""
    if hash not in elgamal.HASHES:
        raise ValueError(f"unsupported hash {hash!r}; choose one of {elgamal.HASHES}")
    if not isinstance(room, str) or len(room.encode()) > MAX_ROOM_BYTES:
        raise ValueError("room must be a short string")
    bundle = parse_bundle(bundle_payload, me, room, hash, clock())
    otk = parse_one_time(one_time, bundle)
    group = me.signing_key.group
    ek = dh.generate(group)
    nonce = secrets.token_bytes(NONCE_BYTES)
    entry = initiator_entry(me.public, ek.public, nonce, hash, bool(deniable))
    t = transcript(room, bundle, entry, otk)
    th = hashlib.sha256(t).digest()
    dh1 = dh.shared_secret(ek, bundle.spk)
    dh2 = dh.shared_secret(ek, otk[1]) if otk else None
    sk = derive_sk(dh1, dh2, th)
    init = {
        "v": PROTOCOL_VERSION,
        "identity": me.public_payload(),
        "ek": _wire.to_hex(ek.public),
        "nonce": nonce.hex(),
        "spk": bundle.spk_id,
        "otk": otk[0] if otk else None,
        "hash": hash,
        "deniable": bool(deniable),
        "sig": me.sign(sig_input(t), hash).to_payload(),
    }
    state = ratchet.init_a(group, sk, th, bundle.spk)
    return Session(
        me=me,
        peer=bundle.owner,
        role="a",
        state=state,
        transcript_hash=th,
        hash=hash,
        peer_hash=bundle.hash,
        deniable=bool(deniable),
        peer_deniable=bundle.deniable,
        clock=clock,
        init=init,
        init_pending=True,
    )


# ----- Bob: complete a session from an envelope that carries an initial message ------------
@dataclass(frozen=True)
class Initial:
    """A parsed, not yet verified initial message."""

    peer: PeerIdentity
    ek: int
    nonce: bytes
    spk_id: str
    otk_id: str | None
    hash: str
    deniable: bool
    sig: elgamal.Signature


def parse_init(obj: object, me: Identity) -> Initial:
    """Shape, version, identity, group membership of EK, ids and options of an init."""
    if _wire.is_v1(obj):
        raise OlderPeer(_claimed_name(obj))
    data = _wire.fields(obj, _INIT_FIELDS, PrekeyError, "initial message")
    _wire.version(data, PrekeyError, "initial message", PROTOCOL_VERSION)
    peer = _peer(data["identity"], me, "initial message")
    group = peer.verify_key.group
    otk_id = data["otk"]
    return Initial(
        peer,
        _dh_value(group, data["ek"], "initial message ephemeral key"),
        _wire.hex_bytes(data["nonce"], NONCE_BYTES, PrekeyError, "initial message nonce"),
        _key_id(data["spk"], "initial message signed prekey id"),
        None if otk_id is None else _key_id(otk_id, "initial message one-time prekey id"),
        _hash(data["hash"], "initial message hash"),
        _flag(data["deniable"], "initial message deniable"),
        elgamal.Signature.from_payload(data["sig"], group, PrekeyError, "initial signature"),
    )


def respond(
    me: Identity, room: str, store, envelope: object, clock: Callable[[], float] = time.time
) -> tuple[Session, bytes]:
    """Complete the session an envelope's ``init`` starts and open that envelope.

    ``store`` is our :class:`~parley_crypto.prekey_store.PrekeyStore`. Only when everything
    verified and the envelope opened is the one-time key deleted and the init recorded as
    used (the caller then saves the store before showing anything). Raises PrekeyError,
    OlderPeer or InvalidMessage, changing nothing."""
    if not isinstance(envelope, dict) or "init" not in envelope:
        raise PrekeyError("envelope carries no initial message")
    raw = envelope["init"]
    initial = parse_init(raw, me)
    record = store.signed(initial.spk_id)
    if record is None:
        raise PrekeyError("initial message names a signed prekey we do not hold (expired?)")
    if not elgamal.peer_hash_allowed(record.hash, initial.hash):
        raise PrekeyError(f"{initial.peer.name} signs with legacy SHA-1, which we refuse")
    iid = init_id(raw)
    if store.was_used(iid):
        raise PrekeyError("initial message replayed (this session start was already used)")
    otk_key = None
    if initial.otk_id is not None:
        otk_key = store.one_time(initial.otk_id)
        if otk_key is None:
            raise PrekeyError("initial message names a one-time prekey that is unknown or used")
    bundle = Bundle(me.public, record.id, record.key.public, record.hash, record.deniable)
    entry = initiator_entry(initial.peer, initial.ek, initial.nonce, initial.hash, initial.deniable)
    otk = (initial.otk_id, otk_key.public) if otk_key is not None else None
    t = transcript(room, bundle, entry, otk)
    if not elgamal.verify(initial.peer.verify_key, sig_input(t), initial.sig, initial.hash):
        raise PrekeyError("initial message signature is invalid (wrong key or transcript)")
    th = hashlib.sha256(t).digest()
    try:
        dh1 = dh.shared_secret(record.key, initial.ek)
        dh2 = dh.shared_secret(otk_key, initial.ek) if otk_key is not None else None
    except InvalidPublicKey as exc:
        raise PrekeyError(f"initial message ephemeral key rejected: {exc}") from exc
    state = ratchet.init_b(me.signing_key.group, derive_sk(dh1, dh2, th), th, record.key)
    session = Session(
        me=me,
        peer=initial.peer,
        role="b",
        state=state,
        transcript_hash=th,
        hash=record.hash,
        peer_hash=initial.hash,
        deniable=record.deniable,
        peer_deniable=initial.deniable,
        clock=clock,
        init=json.loads(json.dumps(raw)),  # our own copy
        init_pending=False,
    )
    plaintext = session.open(envelope)  # InvalidMessage: nothing consumed
    store.consume(initial.otk_id, iid, record.id)
    return session, plaintext
