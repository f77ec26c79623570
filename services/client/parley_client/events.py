"""What the core tells the UI (:class:`Event`), its connection states, and small helpers
for turning hostile input into short, single-line reports."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """Connection states, as shown on the status line."""

    CONNECTING = "connecting"
    WAITING = "waiting for peer"
    VERIFYING = "verifying"
    SECURE = "secure"
    AWAY = "contact away (mailbox)"  # sealed for the away contact; the relay stores it
    PEER_LEFT = "peer left"
    REFUSED = "refused"


@dataclass
class Event:
    """Something the UI should show. ``kind`` is one of: state, message, sent, delivered,
    secure, key_changed, refused, info, warning, error."""

    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def relay_error_fields(payload: Any) -> tuple[str, str]:
    """(code, message) from a relay error, which may be nested under ``data``."""
    nested = isinstance(payload, dict) and isinstance(payload.get("data"), dict)
    if nested and "code" not in payload:
        payload = payload["data"]
    if isinstance(payload, dict):
        code = str(payload.get("code", "error"))[:40]
        message = str(payload.get("message", ""))[:200]
        return code, message
    return "error", str(payload)[:200]


def describe(event: str) -> str:
    names = {
        "ELGAMAL_PK_BC": "identity key",
        "DEFF_HELLMAN_PK_BC": "handshake payload",
        "DIFF_HELLMAN_PK_BC": "handshake payload",
        "KEY_CONFIRM_BC": "key confirmation",
        "received_message": "message",
    }
    return names.get(event, f"event {event[:40]!r}")


def looks_legacy_message(text: str) -> bool:
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    return isinstance(obj, dict) and "message" in obj and "iv" in obj


_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def printable(text: str) -> str:
    """Text safe to put on a terminal line: control characters (escape sequences, newlines)
    and bidi overrides from a peer are shown as ``\\xNN`` instead of acting on the screen."""
    out = []
    for ch in text:
        if ch == "\t" or (ch not in _BIDI and unicodedata.category(ch) not in ("Cc", "Zl", "Zp")):
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return "".join(out)


LEGACY_REFUSAL = (
    "refused: the peer speaks the original unauthenticated protocol "
    "(plain decimal keys, no signatures); Parley will not talk to it"
)


def key_changed_event(peer, pinned_key_id: str, safety_number: str) -> Event:
    """The loud warning for a peer whose key differs from the pinned one."""
    text = (
        f"WARNING: the key of {peer.name} has CHANGED (pinned {pinned_key_id[:16]}, now "
        f"{peer.key_id[:16]}). Someone may be intercepting this chat. Sending is blocked: "
        "compare safety numbers with /verify, then /trust if they match."
    )
    data = {
        "peer": peer.name,
        "pinned": pinned_key_id,
        "now": peer.key_id,
        "safety_number": safety_number,
    }
    return Event("key_changed", text, data)


def secure_event(peer, safety_number: str, blocked: bool) -> Event:
    """A handshake completed: who, their fingerprint and the safety number."""
    data = {
        "peer": peer.name,
        "fingerprint": peer.fingerprint,
        "safety_number": safety_number,
        "blocked": blocked,
    }
    if blocked:
        text = f"keys agreed with {peer.name} ({peer.fingerprint}), but its key CHANGED: blocked"
    else:
        text = f"secure with {peer.name} ({peer.fingerprint})"
    return Event("secure", text, data)


def same_identity_event(name: str) -> Event:
    """The peer presented our own key: another terminal runs as this identity."""
    text = f"both terminals use the key of {name!r} (one --home): give the other its own --home"
    return Event("refused", text, {"code": "same_identity", "name": name})


def refusal_text(code: str, message: str, name: str, room: str) -> str:
    """Why the connection loop gave up, in plain words with the fix (one line)."""
    known = {
        "already_connected": f"you are already connected as {name!r} from another terminal",
        "room_full": f"room {room!r} already has two people in it; pick another --room",
        "unauthorized": "the relay wants a token: pass --token (or PARLEY_RELAY_TOKEN)",
        "same_identity": message,
    }
    if code in known:
        return f"stopped: {known[code]}"
    if code == "internal":
        return f"stopped after an internal error: {message}"
    return f"stopped: the relay refused the connection: {code}: {message}"
