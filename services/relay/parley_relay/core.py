"""Relay logic without transport: auth checks, room names, routing decisions, limits.

Nothing here imports socketio or touches the network, so all of it is tested directly.
The transport layer (`handlers.py`) asks this module what to do and then does it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from . import codec
from .config import RateLimit

DEFAULT_ROOM = "lobby"
DEFAULT_NAME = "anonymous"
MAX_NAME_CHARS = 64

# Rooms: 1-64 of letters, digits, '.', '_' and '-'. Small on purpose: room names end up in
# Redis keys and log lines, and '|' / ':' are separators there.
ROOM_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Resume secret: 32 random bytes as lowercase hex; instance: 16 random bytes per client process.
SECRET_RE = re.compile(r"[0-9a-f]{64}")
INSTANCE_RE = re.compile(r"[0-9a-f]{32}")

# What the other member receives for each client event.
FORWARD: dict[str, str] = {
    "ELGAMAL_PK": "ELGAMAL_PK_BC",
    "DEFF_HELLMAN_PK": "DEFF_HELLMAN_PK_BC",
    "DIFF_HELLMAN_PK": "DIFF_HELLMAN_PK_BC",
    "KEY_CONFIRM": "KEY_CONFIRM_BC",  # protocol v2: key confirmation, after the DH step
    "message": "received_message",
}

# Offline delivery (issue 15): events the relay answers itself instead of forwarding.
OFFLINE_EVENTS = frozenset({"mailbox_ack", "prekeys", "fetch_prekeys"})

# Error codes, with the human text sent along in `error {code, message}`.
ERROR_TEXT = {
    "room_full": "this room already has two members",
    "payload_too_large": "payload exceeds the relay's size limit",
    "rate_limited": "too many events; slow down",
    "bad_request": "malformed request",
    "unauthorized": "missing or wrong relay token",
    "unavailable": "the relay's message queue is unreachable; retry shortly",
    "already_connected": "this seat is already connected from another client process",
    "mailbox_full": "the peer's mailbox at the relay is full; try again once they have read it",
    "no_peer": "the room has no other member with published prekeys",
    "no_seat_secret": "offline delivery needs a seat secret (relay v2 client)",
}
RECOVERING_TEXT = "the relay is re-registering its members after a Redis restart; retry shortly"


class Rejection(Exception):  # noqa: N818 - a decision, not an error in the relay
    """A request the relay refuses; carries the wire error code and a human message."""

    def __init__(self, code: str, message: str | None = None):
        super().__init__(code)
        self.code = code
        self.message = message or ERROR_TEXT.get(code, code)

    def payload(self) -> dict[str, str]:
        """The `error` event / connect_error body: {"code", "message"}."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Identity:
    """Who a connection says it is and where it wants to go, after validation.

    `secret_hash` is SHA-256 of the seat's resume secret ("" for the original client, which
    sends none); the secret itself is not kept. `instance` names the client process.
    """

    room: str
    name: str
    secret_hash: str = ""
    instance: str = ""


def _valid_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_CHARS
        and name.isprintable()
        and name.strip() == name
    )


def parse_auth(auth: object, token: str | None) -> Identity:
    """Validate the Socket.IO connect `auth` object; raise Rejection on anything wrong.

    No auth at all (the original design's client) means room `lobby`, name `anonymous`.
    When the relay has a token, it is compared in constant time.
    """
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise Rejection("bad_request", "auth must be an object {room, name, token}")
    if token is not None:
        given = auth.get("token")
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode("utf-8"), token.encode("utf-8")
        ):
            raise Rejection("unauthorized")
    room = auth.get("room", DEFAULT_ROOM)
    if not isinstance(room, str) or not ROOM_RE.fullmatch(room):
        raise Rejection("bad_request", "room must be 1-64 characters of A-Z a-z 0-9 . _ -")
    name = auth.get("name", DEFAULT_NAME)
    if isinstance(name, str):
        # One spelling per name: "Zoë" typed precomposed or decomposed is the same person.
        name = unicodedata.normalize("NFC", name)
    if not _valid_name(name):
        raise Rejection(
            "bad_request", f"name must be 1-{MAX_NAME_CHARS} printable characters, no padding"
        )
    secret, instance = auth.get("secret"), auth.get("instance")
    if secret is None:
        return Identity(room=room, name=name)
    if not isinstance(secret, str) or not SECRET_RE.fullmatch(secret):
        raise Rejection("bad_request", "secret must be 64 lowercase hex characters")
    if not isinstance(instance, str) or not INSTANCE_RE.fullmatch(instance):
        raise Rejection("bad_request", "instance must be 32 lowercase hex characters")
    digest = hashlib.sha256(bytes.fromhex(secret)).hexdigest()
    return Identity(room=room, name=name, secret_hash=digest, instance=instance)


# Built once: json.dumps with non-default options makes a new encoder on every call
# (the mailboxes encode with it; the hot path uses codec.dumps, the same text).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_encode_str = json.encoder.encode_basestring


def payload_size(payload: object) -> int:
    """Bytes a payload occupies in the frame the relay forwards (issue 12, L2).

    That is its compact JSON text in UTF-8, as app.Utf8Json encodes it: a string counts its
    escaped contents without the quotes (64 KiB of NUL bytes are 384 KiB of `\\u0000`),
    non-ASCII counts its UTF-8 bytes (never the 3x of `\\u` escapes). Raises
    Rejection(bad_request) for what JSON text cannot carry: binary attachments inside an
    object, lone surrogates.
    """
    try:
        if type(payload) is str:
            text = _encode_str(payload)  # C; same escapes as the encoder below
            size = len(text) - 2
        else:
            text = codec.dumps(payload)  # what app.Utf8Json sends
            size = len(text)
        return size if text.isascii() else size + len(text.encode("utf-8")) - len(text)
    except (TypeError, ValueError, RecursionError):
        raise Rejection("bad_request", "payload must be plain JSON text (no binary)") from None


class TokenBucket:
    """Classic token bucket; `allow()` spends one token if there is one.

    `clock` is injectable so tests need no sleeping.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp", "clock")

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic):
        self.rate = limit.rate
        self.burst = float(limit.burst)
        self.tokens = float(limit.burst)
        self.clock = clock
        self.stamp = clock()

    def allow(self) -> bool:
        """True and one token spent, or False and nothing changed but the refill."""
        now = self.clock()
        elapsed = now - self.stamp
        self.stamp = now
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Connection:
    """Per-connection state kept by the replica that holds the socket."""

    sid: str
    identity: Identity
    bucket: TokenBucket | None
    sent: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # Where the other members' connections are ((replica, sid) pairs), read from the seat
    # store at join and kept current by peer updates and the reconciliation loop.
    peers: tuple = ()
    # Version (seat-store time) of the seat state `peers` came from: updates that cross on
    # the wire (two replicas announcing joins of one seat) apply only if newer.
    version: int = 0
    # Version of the last seat change whose event (KEY_EXCHANGE, peer_left) reached it. Kept
    # apart from `version`, which the reconciliation loop also advances (its reads carry the
    # time of the read): a peer's announcement sent just before such a read is stale as a
    # peer list but its event is news, and must not be dropped.
    event_version: int = 0


@dataclass(frozen=True)
class Forward:
    """Decision: send `payload` as `event` to the other member of `room`."""

    event: str
    room: str


class Router:
    """Decides what happens to each client event; holds the limits, never the sockets."""

    def __init__(
        self,
        max_message_bytes: int,
        rate_limit: RateLimit | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_message_bytes = max_message_bytes
        self.rate_limit = rate_limit
        self.clock = clock

    def new_connection(self, sid: str, identity: Identity) -> Connection:
        """State for a freshly accepted connection (its own full token bucket)."""
        bucket = TokenBucket(self.rate_limit, self.clock) if self.rate_limit else None
        return Connection(sid=sid, identity=identity, bucket=bucket)

    def route(self, conn: Connection, event: object, args: tuple) -> Forward:
        """Check one client event; return where it goes or raise Rejection.

        Order matters: the rate limit is charged first so a flood of junk is throttled too.
        """
        if conn.bucket is not None and not conn.bucket.allow():
            raise Rejection("rate_limited")
        if not isinstance(event, str) or event not in FORWARD:
            raise Rejection("bad_request", "unknown event")
        if len(args) != 1:
            raise Rejection("bad_request", "exactly one payload argument expected")
        payload = args[0]
        if type(payload) is not str and type(payload) is not dict:
            raise Rejection("bad_request", "payload must be a string or an object")
        if payload_size(payload) > self.max_message_bytes:
            raise Rejection(
                "payload_too_large",
                f"payload exceeds the relay's limit of {self.max_message_bytes} bytes",
            )
        conn.sent += 1
        return Forward(event=FORWARD[event], room=conn.identity.room)

    def check_offline(self, conn: Connection, event: str, args: tuple) -> None:
        """Rate limit and size check for an OFFLINE_EVENTS event (its own parser checks the
        shape); raise Rejection like `route`."""
        if conn.bucket is not None and not conn.bucket.allow():
            raise Rejection("rate_limited")
        if not conn.identity.secret_hash:
            raise Rejection("no_seat_secret")
        if args and payload_size(args[0]) > self.max_message_bytes:
            raise Rejection(
                "payload_too_large",
                f"{event} exceeds the relay's limit of {self.max_message_bytes} bytes",
            )

    @staticmethod
    def note_rejection(conn: Connection, code: str) -> None:
        """Count a rejection on the connection (for its disconnect log line)."""
        conn.rejected[code] = conn.rejected.get(code, 0) + 1
