"""The Double Ratchet (Signal's specification, rev. 1, section 3) on the negotiated
finite-field group. Sans-IO; names follow the spec: RK, CKs, CKr, DHs, DHr, Ns, Nr, PN,
MKSKIPPED, KDF_RK, KDF_CK, RatchetEncrypt, RatchetDecrypt, DHRatchet, SkipMessageKeys.

Seeding from the v2 handshake (both sides derive SK and the transcript hash; roles "a" and
"b" come from the transcript order), so that either side may speak first:

* RK0 = HKDF(SK, "root"), CK_ba = HKDF(SK, "b->a/chain").
* b starts with DHs = its handshake ephemeral, CKs = CK_ba, no receiving chain: it can send
  before it has received anything (header dh = its handshake key).
* a starts with DHr = b's handshake key, CKr = CK_ba, and at once performs one DH ratchet
  step with a fresh key pair: RK, CKs = KDF_RK(RK0, DH(DHs_new, DHr)). Its first message
  therefore carries a new ratchet key, and receiving it makes b perform its step.

ENCRYPT/DECRYPT (spec section 5.2's recommendation): the message key gives AES-256, HMAC
and IV keys through HKDF; AES-256-CFB128, then HMAC-SHA256 over the associated data, the
header, the ciphertext and the signature bytes (encrypt-then-MAC). The optional signature
(the caller's hook) covers associated data, header and ciphertext.
"""

from __future__ import annotations

import copy
import hmac
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from parley_crypto import aes_cfb, dh, kdf
from parley_crypto._wire import lp
from parley_crypto.errors import InvalidMessage, InvalidPublicKey
from parley_crypto.groups import Group

# ----- limits (one place; each with its reason) -------------------------------------------
# Most message keys one header may make us skip in one chain: as libsignal's MAX_SKIP-like
# bound, it caps the hashing a forged header can cost us; 2000 covers any real backlog of
# one turn (the client paces 20 messages per second and resends after 5 s).
MAX_SKIP = 2000
# Most skipped keys kept in total (libsignal's MAX_MESSAGE_KEYS): bounds memory and state
# size on disk; the oldest are dropped first.
MAX_SKIPPED_TOTAL = 2000
# Skipped keys older than this are dropped: a late message is then lost rather than the key
# kept forever (forward secrecy). 7 days matches how long a relay keeps a seat and mailbox.
SKIPPED_KEY_TTL = 7 * 24 * 3600.0
# Message numbers travel as unsigned 32-bit fields; a chain never gets near this.
MAX_COUNTER = (1 << 32) - 1

ROLES = ("a", "b")
_INFO = b"parley/v2/"


def KDF_RK(rk: bytes, dh_out: bytes) -> tuple[bytes, bytes]:  # noqa: N802 - spec name
    """Root KDF (spec 5.2): HKDF-SHA256 with RK as salt and the DH output as input."""
    out = kdf.hkdf_sha256(dh_out, rk, _INFO + b"ratchet", 64)
    return out[:32], out[32:]


def KDF_CK(ck: bytes) -> tuple[bytes, bytes]:  # noqa: N802 - spec name
    """Chain KDF (spec 5.2): next CK = HMAC(CK, 0x02), message key = HMAC(CK, 0x01)."""
    return kdf.hmac_sha256(ck, b"\x02"), kdf.hmac_sha256(ck, b"\x01")


def message_keys(mk: bytes) -> tuple[bytes, bytes, bytes]:
    """(AES key, HMAC key, IV) from one message key. The IV is derived: every message key
    is used exactly once, so IV reuse under a key cannot happen."""
    out = kdf.hkdf_sha256(mk, bytes(32), _INFO + b"message-keys", 80)
    return out[:32], out[32:64], out[64:80]


def initial_keys(sk: bytes, transcript_hash: bytes) -> tuple[bytes, bytes]:
    """(RK0, CK_ba) from the handshake's SK, bound to the transcript."""
    rk0 = kdf.hkdf_sha256(sk, transcript_hash, _INFO + b"root", 32)
    ck_ba = kdf.hkdf_sha256(sk, transcript_hash, _INFO + b"b->a/chain", 32)
    return rk0, ck_ba


@dataclass(frozen=True)
class Header:
    """The message header: sender's ratchet public key, previous chain length, number."""

    dh: int
    pn: int
    n: int

    def encode(self, group: Group) -> bytes:
        """Fixed-width bytes, authenticated as associated data."""
        return lp(b"parley/v2/header", self.dh.to_bytes(group.byte_length, "big")) + struct.pack(
            ">II", self.pn, self.n
        )


@dataclass
class State:
    """The spec's state variables. DHs is our current ratchet key pair, DHr the peer's
    current ratchet public key; MKSKIPPED maps (DHr, N) to (message key, time stored)."""

    group: Group
    DHs: dh.DHPrivateKey
    DHr: int | None
    RK: bytes
    CKs: bytes | None
    CKr: bytes | None
    Ns: int = 0
    Nr: int = 0
    PN: int = 0
    MKSKIPPED: dict[tuple[int, int], tuple[bytes, float]] = field(default_factory=dict)


def _dh(state: State, public: int) -> bytes:
    try:
        return dh.shared_secret(state.DHs, public)
    except InvalidPublicKey as exc:
        raise InvalidMessage(f"bad ratchet key: {exc}") from exc


def init_a(group: Group, sk: bytes, th: bytes, b_public: int) -> State:
    """Side a: receives b's initial chain, sends on a chain from its first DH step."""
    rk0, ck_ba = initial_keys(sk, th)
    state = State(group, dh.generate(group), b_public, rk0, None, ck_ba)
    state.RK, state.CKs = KDF_RK(rk0, _dh(state, b_public))
    return state


def init_b(group: Group, sk: bytes, th: bytes, b_private: dh.DHPrivateKey) -> State:
    """Side b: its handshake ephemeral is its first ratchet key; sends on CK_ba at once."""
    rk0, ck_ba = initial_keys(sk, th)
    return State(group, b_private, None, rk0, ck_ba, None)


Signer = Callable[[bytes], bytes]
Verifier = Callable[[bytes, bytes], None]


def _signed_input(ad: bytes, header: bytes, ct: bytes) -> bytes:
    return lp(b"parley/v2/envelope/sig", ad, header, ct)


def _mac_input(ad: bytes, header: bytes, ct: bytes, sig: bytes) -> bytes:
    return lp(b"parley/v2/envelope/mac", ad, header, ct, sig)


def RatchetEncrypt(  # noqa: N802 - spec name
    state: State, plaintext: bytes, ad: bytes, sign: Signer | None = None
) -> tuple[Header, bytes, bytes, bytes]:
    """Advance the sending chain; returns (header, ciphertext, signature bytes, mac).
    ``sign`` (if any) signs the associated data, header and ciphertext; its output is
    covered by the MAC."""
    if state.CKs is None or state.Ns >= MAX_COUNTER:
        raise InvalidMessage("no sending chain")
    state.CKs, mk = KDF_CK(state.CKs)
    header = Header(state.DHs.public, state.PN, state.Ns)
    state.Ns += 1
    enc_key, mac_key, iv = message_keys(mk)
    ct = aes_cfb.encrypt(enc_key, iv, plaintext)
    hb = header.encode(state.group)
    sig = sign(_signed_input(ad, hb, ct)) if sign else b""
    return header, ct, sig, kdf.hmac_sha256(mac_key, _mac_input(ad, hb, ct, sig))


def RatchetDecrypt(  # noqa: N802 - spec name
    state: State,
    header: Header,
    ct: bytes,
    sig: bytes,
    mac: bytes,
    ad: bytes,
    verify: Verifier | None = None,
    now: float | None = None,
) -> tuple[State, bytes]:
    """Returns (new state, plaintext) and leaves ``state`` untouched; the caller commits the
    new state only on success. Raises InvalidMessage (state unchanged) for anything bad:
    skip beyond MAX_SKIP, replay, wrong MAC, bad signature."""
    now = time.time() if now is None else now
    new = _working_copy(state)
    _expire(new, now)
    mk = new.MKSKIPPED.pop((header.dh, header.n), (None, 0.0))[0]
    if mk is None:
        if header.dh != new.DHr:
            SkipMessageKeys(new, header.pn, now)
            DHRatchet(new, header)
        elif header.n < new.Nr:
            raise InvalidMessage("replayed message (its key was used and deleted)")
        SkipMessageKeys(new, header.n, now)
        new.CKr, mk = KDF_CK(new.CKr)
        new.Nr += 1
    plaintext = _decrypt(new.group, mk, header, ct, sig, mac, ad, verify)
    return new, plaintext


def _decrypt(group, mk, header, ct, sig, mac, ad, verify) -> bytes:
    enc_key, mac_key, iv = message_keys(mk)
    hb = header.encode(group)
    expected = kdf.hmac_sha256(mac_key, _mac_input(ad, hb, ct, sig))
    if not hmac.compare_digest(mac, expected):
        raise InvalidMessage("message authentication failed (tampered, replayed or wrong key)")
    if verify is not None:
        verify(_signed_input(ad, hb, ct), sig)
    return aes_cfb.decrypt(enc_key, iv, ct)


def SkipMessageKeys(state: State, until: int, now: float) -> None:  # noqa: N802 - spec name
    """Store the receiving chain's keys up to ``until``; refuses a jump beyond MAX_SKIP."""
    if state.Nr + MAX_SKIP < until:
        raise InvalidMessage(f"message skips more than {MAX_SKIP} keys; refused")
    if state.CKr is None:
        return
    while state.Nr < until:
        state.CKr, mk = KDF_CK(state.CKr)
        state.MKSKIPPED[(state.DHr, state.Nr)] = (mk, now)
        state.Nr += 1
    while len(state.MKSKIPPED) > MAX_SKIPPED_TOTAL:
        del state.MKSKIPPED[next(iter(state.MKSKIPPED))]  # oldest first


def DHRatchet(state: State, header: Header) -> None:  # noqa: N802 - spec name
    """A DH ratchet step: new receiving chain from the peer's key, then a fresh key pair
    and a new sending chain."""
    state.PN = state.Ns
    state.Ns = 0
    state.Nr = 0
    state.DHr = header.dh
    state.RK, state.CKr = KDF_RK(state.RK, _dh(state, state.DHr))
    state.DHs = dh.generate(state.group)
    state.RK, state.CKs = KDF_RK(state.RK, _dh(state, state.DHr))


def _working_copy(state: State) -> State:
    """A shallow copy with its own MKSKIPPED (keys and chain values are immutable bytes)."""
    new = copy.copy(state)
    new.MKSKIPPED = dict(state.MKSKIPPED) if state.MKSKIPPED else {}
    return new


def _expire(state: State, now: float) -> None:
    skipped = state.MKSKIPPED
    while skipped:
        key = next(iter(skipped))  # insertion order is time order
        if now - skipped[key][1] <= SKIPPED_KEY_TTL:
            break
        del skipped[key]
