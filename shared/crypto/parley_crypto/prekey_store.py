"""The responder's private prekeys (sans-IO): signed prekeys, one-time prekeys, used inits.

A :class:`PrekeyStore` is what a client keeps in its home (``to_state`` / ``from_state``,
JSON-able, secret: store it 0600). It generates the bundle and the one-time keys to publish,
rotates the signed prekey, and answers :func:`parley_crypto.prekeys.respond`'s questions:
which signed prekey an id names, which one-time key, whether an init was used. ``consume``
deletes a one-time private key for good and records the init, so neither can serve twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from parley_crypto import _wire, dh, elgamal, prekeys
from parley_crypto.errors import ParleyError
from parley_crypto.identity import PROTOCOL_VERSION, Identity

# A signed prekey is replaced after a week (Signal rotates weekly to monthly) and kept for two
# more weeks, so envelopes stored in a relay mailbox (7 days' TTL) can still be opened.
SPK_ROTATE_SECONDS = 7 * 24 * 3600.0
SPK_KEEP_SECONDS = 21 * 24 * 3600.0
MAX_SIGNED = 4  # at most this many signed prekeys kept (rotations within SPK_KEEP_SECONDS)
# The relay holds at most 200 one-time keys per seat (PARLEY_PREKEYS_MAX); twice that covers
# keys fetched by senders who never sent. The oldest private keys are dropped first.
MAX_ONE_TIME = 400
# One-time keys we aim to have published (DECISIONS.md: top up to 50 on every join).
ONE_TIME_TARGET = 50
# Used inits are remembered per signed prekey for as long as that prekey is kept (at most
# SPK_KEEP_SECONDS): no count cap, since a cap lets a hostile relay push that many inits of its
# own to evict an old init of ours and then replay it. What bounds them is the prekey's life
# and how many mailbox entries a client opens in that time (the relay keeps at most 1000 per
# seat, PARLEY_MAILBOX_MAX_MESSAGES); each is 32 hex digits in the prekey file.
_TYPE = "parley-prekeys"
_FIELDS = ("v", "type", "me", "signed", "one_time", "used")
_SIGNED_FIELDS = ("id", "x", "hash", "deniable", "created")


class InvalidPrekeyState(ParleyError):
    """A stored prekey file is malformed or belongs to another identity."""


@dataclass(frozen=True)
class SignedPrekey:
    """One signed prekey pair with the session options it was published with."""

    id: str
    key: dh.DHPrivateKey = field(repr=False)
    hash: str
    deniable: bool
    created: float


class PrekeyStore:
    """Our private prekeys for one identity; see the module docstring."""

    def __init__(self, me: Identity, clock: Callable[[], float] = time.time) -> None:
        self._me = me
        self._group = me.signing_key.group
        self._clock = clock
        self._signed: list[SignedPrekey] = []  # newest last
        self._one_time: OrderedDict[str, dh.DHPrivateKey] = OrderedDict()
        self._used: dict[str, set[str]] = {}  # signed prekey id -> ids of the inits it served

    # ----- publishing ---------------------------------------------------------------------
    def current(self, hash: str = elgamal.DEFAULT_HASH, deniable: bool = False) -> SignedPrekey:
        """The signed prekey to publish: a new one when there is none, when it is older than
        SPK_ROTATE_SECONDS, or when the local options changed; old ones expire."""
        now = self._clock()
        self._signed = [s for s in self._signed if now - s.created <= SPK_KEEP_SECONDS][
            -MAX_SIGNED:
        ]
        live = {s.id for s in self._signed}
        self._used = {k: v for k, v in self._used.items() if k in live}  # expired with its SPK
        newest = self._signed[-1] if self._signed else None
        if (
            newest is None
            or now - newest.created > SPK_ROTATE_SECONDS
            or (newest.hash, newest.deniable) != (hash, bool(deniable))
        ):
            newest = SignedPrekey(
                prekeys.new_key_id(), dh.generate(self._group), hash, bool(deniable), now
            )
            self._signed = (self._signed + [newest])[-MAX_SIGNED:]
        return newest

    def bundle(self, room: str, hash: str = elgamal.DEFAULT_HASH, deniable: bool = False) -> dict:
        """The signed bundle payload for relay event ``prekeys`` in ``room`` (signed for that
        room and dated with the signed prekey's creation time)."""
        spk = self.current(hash, deniable)
        return prekeys.make_bundle(
            self._me, spk.id, spk.key, spk.hash, spk.deniable, room, spk.created
        )

    def new_one_time(self, count: int) -> list[dict]:
        """``count`` fresh one-time keys (privates kept here; save before publishing)."""
        if not 0 <= count <= MAX_ONE_TIME:
            raise ValueError(f"one-time key count must be 0..{MAX_ONE_TIME}")
        out = []
        for _ in range(count):
            key_id, key = prekeys.new_key_id(), dh.generate(self._group)
            self._one_time[key_id] = key
            out.append(prekeys.one_time_payload(key_id, key))
        while len(self._one_time) > MAX_ONE_TIME:
            self._one_time.popitem(last=False)
        return out

    # ----- what respond() asks ------------------------------------------------------------
    def signed(self, key_id: str) -> SignedPrekey | None:
        """The signed prekey with this id, if still kept."""
        return next((s for s in self._signed if s.id == key_id), None)

    def one_time(self, key_id: str) -> dh.DHPrivateKey | None:
        """The one-time private key with this id, if unused."""
        return self._one_time.get(key_id)

    def was_used(self, init_id: str) -> bool:
        """True when this init already started a session (under a signed prekey still kept)."""
        return any(init_id in used for used in self._used.values())

    def consume(self, otk_id: str | None, init_id: str, spk_id: str) -> None:
        """Delete the one-time private key and remember the init as used."""
        if otk_id is not None:
            self._one_time.pop(otk_id, None)
        self._used.setdefault(spk_id, set()).add(init_id)

    def __len__(self) -> int:
        """How many one-time private keys are held."""
        return len(self._one_time)

    # ----- persistence --------------------------------------------------------------------
    def to_state(self) -> dict:
        """A JSON-able snapshot (secret)."""
        return {
            "v": PROTOCOL_VERSION,
            "type": _TYPE,
            "me": self._me.public.key_id,
            "signed": [
                {
                    "id": s.id,
                    "x": _wire.to_hex(s.key.x),
                    "hash": s.hash,
                    "deniable": s.deniable,
                    "created": s.created,
                }
                for s in self._signed
            ],  # fmt: skip
            "one_time": [[k, _wire.to_hex(v.x)] for k, v in self._one_time.items()],
            "used": [[i, k] for k, used in self._used.items() for i in sorted(used)],
        }

    @classmethod
    def from_state(
        cls, obj: object, me: Identity, clock: Callable[[], float] = time.time
    ) -> PrekeyStore:
        """Rebuild a store saved by :meth:`to_state`; InvalidPrekeyState if it is not valid."""
        err = InvalidPrekeyState
        data = _wire.fields(obj, _FIELDS, err, "prekey state")
        _wire.version(data, err, "prekey state", PROTOCOL_VERSION)
        if data["type"] != _TYPE or data["me"] != me.public.key_id:
            raise err("prekey state belongs to another identity or is not a prekey state")
        store = cls(me, clock)
        for item in _items(data["signed"], MAX_SIGNED, "signed"):
            s = _wire.fields(item, _SIGNED_FIELDS, err, "signed prekey state")
            created = s["created"]
            if isinstance(created, bool) or not isinstance(created, int | float):
                raise err("signed prekey state time is invalid")
            if s["hash"] not in elgamal.HASHES or not isinstance(s["deniable"], bool):
                raise err("signed prekey state options are invalid")
            store._signed.append(
                SignedPrekey(_id(s["id"]), store._private(s["x"]), s["hash"], s["deniable"],
                             float(created))
            )  # fmt: skip
        for item in _items(data["one_time"], MAX_ONE_TIME, "one_time", pair=True):
            store._one_time[_id(item[0])] = store._private(item[1])
        kept = {s.id for s in store._signed}
        for item in _items(data["used"], None, "used", pair=True):
            if not isinstance(item[0], str) or len(item[0]) != 32:
                raise err("used init id is invalid")
            if _id(item[1]) in kept:  # (an init of an expired prekey cannot start anything)
                store._used.setdefault(item[1], set()).add(item[0])
        return store

    def _private(self, value: object) -> dh.DHPrivateKey:
        x = _wire.hex_int(value, self._group.hex_digits, InvalidPrekeyState, "prekey")
        try:
            return dh.DHPrivateKey(self._group, x)
        except ValueError as exc:
            raise InvalidPrekeyState(f"prekey private key is invalid: {exc}") from exc


def _id(value: object) -> str:
    _wire.hex_bytes(value, prekeys.ID_BYTES, InvalidPrekeyState, "prekey id")
    return value  # type: ignore[return-value]


def _items(value: object, limit: int | None, what: str, pair: bool = False) -> list:
    if not isinstance(value, list) or (limit is not None and len(value) > limit):
        raise InvalidPrekeyState(f"prekey state {what} is invalid")
    if pair and not all(isinstance(i, list) and len(i) == 2 for i in value):
        raise InvalidPrekeyState(f"prekey state {what} entry is invalid")
    return value
