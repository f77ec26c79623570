"""Offline delivery (issue 15): what the relay keeps for a secret seat whose member is away.

Per secret seat (named by `seat_tag`, the first 16 hex of its secret's hash) a store keeps
* a mailbox: sealed `message` payloads in arrival order, each with an entry id
  ("<ms>-<seq>", Redis Stream ids: the store time is the id's first part), bounded by
  `Limits` (messages, bytes, time to live);
* expiry notices: ids of entries dropped unread, for the seat that stored them;
* prekeys: the seat's signed bundle and a capped list of one-time prekeys, each handed out
  once (`fetch_prekeys`).
Two implementations share the `MailboxStore` contract (tests/unit/relay/test_relay_mailbox_store.py
runs against both): `memory_mailbox.MemoryMailbox` and `redis_mailbox.RedisMailbox`.

This module also validates the client's offline-delivery events (`parse_*`): anything
malformed is a `Rejection(bad_request)` with a one-line reason, before any store is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from .core import Rejection, payload_size
from .store import Conn

# Wire limits of docs/protocol.md "Offline delivery" (DECISIONS.md, issue 15).
MAX_ACK_IDS = 500  # ids per mailbox_ack: a drained backlog of 1,000 takes two acks
MAX_ONE_TIME_PER_EVENT = 100  # one-time prekeys per `prekeys` event
MAX_BUNDLE_BYTES = 8192  # a signed bundle: group name, prekey (<= 8192-bit), signature
# A one-time prekey's DH value as hex: room for an 8192-bit group element (2,048 hex) twice
# over; the event as a whole is also bounded by PARLEY_MAX_MESSAGE_BYTES like `message`.
MAX_DH_HEX = 4096
DRAIN_BATCH = 100  # entries read from the store per round trip while draining
EXPIRED_NOTICES_MAX = 2000  # notices kept per room (>= one full mailbox of each seat)
EXPIRED_PER_EVENT = 500  # ids per mailbox_expired event

ENTRY_ID_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
OTK_ID_RE = re.compile(r"[0-9a-f]{16}")
DH_RE = re.compile(f"[0-9a-f]{{1,{MAX_DH_HEX}}}")


def seat_tag(secret_hash: str) -> str:
    """The seat's name in keys and notices: 16 hex of the secret's hash (never the secret)."""
    return secret_hash[:16]


@dataclass(frozen=True)
class Limits:
    """Per-seat bounds (settings PARLEY_MAILBOX_*, PARLEY_PREKEYS_*), and the relay-wide
    `total_bytes` budget over every seat's stored payloads and prekeys."""

    max_messages: int = 1000
    max_bytes: int = 10_485_760
    ttl_ms: int = 7 * 24 * 3600 * 1000
    prekeys_max: int = 200
    total_bytes: int = 268_435_456
    fetch_window_ms: int = 10_000  # 0: every fetch pops a new one-time key

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(
            max_messages=settings.mailbox_max_messages,
            max_bytes=settings.mailbox_max_bytes,
            ttl_ms=max(1, int(settings.mailbox_ttl_seconds * 1000)),
            prekeys_max=settings.prekeys_max,
            total_bytes=settings.mailbox_total_bytes,
            fetch_window_ms=int(settings.prekeys_fetch_window_seconds * 1000),
        )


class Full(Exception):
    """The relay-wide stored-bytes budget is used up (the client sees `mailbox_full`)."""


@dataclass(frozen=True)
class Stored:
    """What `store` did with a message.

    status: "stored" (id set), "live" (the peer's seat has a connection: forward to `peer`),
    "none" (no secret seat to keep it for: as a live forward to nobody) or "full".
    `expired` counts entries the store dropped for age first (their senders get notices).
    """

    status: str
    id: str = ""
    peer: Conn | None = None
    expired: int = 0


@dataclass(frozen=True)
class Entry:
    """One stored message: entry id, store time (ms since the epoch), original payload."""

    id: str
    at: int
    payload: object

    def wire(self) -> dict:
        """The `stored_message` event's data."""
        return {"id": self.id, "at": self.at, "payload": self.payload}


@dataclass(frozen=True)
class Prekeys:
    """A peer's published bundle and the one-time key popped for this fetch (or None)."""

    bundle: dict
    one_time: dict | None


class MailboxStore(Protocol):
    """What the relay needs for offline delivery. Seats are named by their secret hash;
    every method touches only the given room, and only the seats the rules name."""

    def store(self, room: str, sender_hash: str, payload: object, size: int) -> Stored:
        """Atomically with the seats: the room's other seat is live -> "live"; reserved by
        a secret with nobody connected -> append (or "full"); else "none"."""

    def backlog(self, room: str, owner_hash: str, after: str = "", count: int = 100) -> list:
        """Up to `count` entries of the owner's mailbox after entry id `after`, in order."""

    def ack(self, room: str, owner_hash: str, ids: list[str]) -> int:
        """Delete these entries from the owner's own mailbox; return how many existed."""

    def expire(self, room: str, owner_hash: str) -> list[Conn]:
        """Drop the owner mailbox's entries older than the TTL, record notices for their
        senders; return the live connections of those senders (to be told now)."""

    def take_expired(self, room: str, sender_hash: str) -> list[str]:
        """Remove and return the expiry notices (entry ids) for this sender seat."""

    def expire_all(self) -> list[tuple[str, Conn]]:
        """Janitor: expire a round of mailboxes; (room, live sender connection) to tell."""

    def put_prekeys(self, room: str, owner_hash: str, bundle, one_time: list) -> int:
        """Replace the bundle (when given), append new one-time keys up to the cap; return
        how many one-time keys the seat now has. Raises `Full` past the relay-wide budget."""

    def fetch_prekeys(self, room: str, asker_hash: str) -> Prekeys | None:
        """The other secret seat's bundle with one one-time key popped atomically, or None.
        Within `Limits.fetch_window_ms` the same asker gets the key it got last again."""

    def deliver(self, room: str, owner_hash: str, payload: object, size: int) -> Stored:
        """A live event that missed its connection (replaced mid-drain): "live" to the
        seat's current connection, else append to its mailbox (or "full"/"none")."""

    def drop_seat(self, room: str, owner_hash: str) -> None:
        """The seat was released (`leave`): its mailbox and prekeys go with it."""

    def counts(self, room: str, owner_hash: str) -> tuple[int, int, int]:
        """(messages, bytes, one-time prekeys) kept for the seat (tests, diagnostics)."""


def _object(args: tuple, what: str) -> dict:
    if len(args) != 1 or not isinstance(args[0], dict):
        raise Rejection("bad_request", f"{what} takes one object argument")
    return args[0]


def parse_ack(args: tuple) -> list[str]:
    """`mailbox_ack {"ids": [...]}`: 1-500 entry ids, each "<digits>-<digits>"."""
    data = _object(args, "mailbox_ack")
    ids = data.get("ids")
    if set(data) - {"ids"} or not isinstance(ids, list) or not ids:
        raise Rejection("bad_request", 'mailbox_ack needs {"ids": [entry id, ...]}')
    if len(ids) > MAX_ACK_IDS:
        raise Rejection("bad_request", f"mailbox_ack takes at most {MAX_ACK_IDS} ids")
    if not all(isinstance(i, str) and _entry_id(i) for i in ids):
        raise Rejection("bad_request", "mailbox_ack ids must be entry ids like 1700000000000-0")
    return list(dict.fromkeys(ids))


def _entry_id(text: str) -> bool:
    """A Redis Stream id: "<ms>-<seq>", both unsigned 64-bit."""
    if not ENTRY_ID_RE.fullmatch(text):
        return False
    ms, _, seq = text.partition("-")
    return int(ms) < 2**64 and int(seq) < 2**64


def parse_prekeys(args: tuple) -> tuple[dict | None, list[dict]]:
    """`prekeys {"bundle"?: object <= 8 KiB, "one_time"?: [{"id": 16 hex, "dh": hex}]}`."""
    data = _object(args, "prekeys")
    if set(data) - {"bundle", "one_time"}:
        raise Rejection("bad_request", "prekeys takes only bundle and one_time")
    bundle = data.get("bundle")
    if bundle is not None:
        if not isinstance(bundle, dict) or not bundle:
            raise Rejection("bad_request", "prekeys bundle must be a non-empty object")
        if payload_size(bundle) > MAX_BUNDLE_BYTES:
            raise Rejection("bad_request", f"prekeys bundle exceeds {MAX_BUNDLE_BYTES} bytes")
    one_time = data.get("one_time", [])
    if not isinstance(one_time, list) or len(one_time) > MAX_ONE_TIME_PER_EVENT:
        raise Rejection(
            "bad_request", f"prekeys one_time must be a list of at most {MAX_ONE_TIME_PER_EVENT}"
        )
    keys = []
    for key in one_time:
        if (
            not isinstance(key, dict)
            or set(key) != {"id", "dh"}
            or not isinstance(key["id"], str)
            or not OTK_ID_RE.fullmatch(key["id"])
            or not isinstance(key["dh"], str)
            or not DH_RE.fullmatch(key["dh"])
        ):
            raise Rejection(
                "bad_request",
                'each one-time prekey must be {"id": 16 lowercase hex, "dh": lowercase hex}',
            )
        keys.append({"id": key["id"], "dh": key["dh"]})
    if len({k["id"] for k in keys}) != len(keys):
        raise Rejection("bad_request", "prekeys one_time ids must be distinct")
    return bundle, keys


def parse_fetch(args: tuple) -> None:
    """`fetch_prekeys {}` (no argument at all is accepted too)."""
    if args == () or args == ({},):
        return
    raise Rejection("bad_request", "fetch_prekeys takes an empty object")
