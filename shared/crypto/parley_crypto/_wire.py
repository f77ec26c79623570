"""Strict decoding of wire values. Every helper raises the caller's error class, never
another exception, and bounds every length before converting anything."""

from __future__ import annotations

import base64
import binascii
import re
import struct

_HEX = re.compile(r"[0-9a-f]+")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def is_int(value: object) -> bool:
    """A real int: ``True``/``False`` are not accepted as 0/1."""
    return isinstance(value, int) and not isinstance(value, bool)


def fields(obj: object, required: tuple[str, ...], error: type[Exception], what: str) -> dict:
    """``obj`` as a dict with exactly the ``required`` keys (no missing, no extra)."""
    if not isinstance(obj, dict):
        raise error(f"{what} must be a JSON object, not {type(obj).__name__}")
    keys = set(obj)
    missing = [k for k in required if k not in keys]
    if missing:
        raise error(f"{what} is missing {', '.join(missing)}")
    extra = keys - set(required)
    if extra:
        shown = ", ".join(sorted(repr(k)[:40] for k in extra))
        raise error(f"{what} has unexpected field(s) {shown}")
    return obj


def version(obj: dict, error: type[Exception], what: str, expected: int = 1) -> None:
    """``obj["v"]`` must be the integer ``expected``."""
    if not is_int(obj["v"]) or obj["v"] != expected:
        shown = str(obj["v"])[:20]
        raise error(f"{what}: unsupported version {shown!r} (expected {expected})")


def is_v1(obj: object) -> bool:
    """True for a dict that says ``"v": 1``: a Parley protocol v1 payload."""
    return isinstance(obj, dict) and is_int(obj.get("v")) and obj.get("v") == 1


def hex_int(value: object, max_digits: int, error: type[Exception], what: str) -> int:
    """A canonical lowercase hex integer (no prefix, no leading zeros) of <= max_digits."""
    if not isinstance(value, str):
        raise error(f"{what} must be a hex string, not {type(value).__name__}")
    if not 0 < len(value) <= max_digits:
        raise error(f"{what} must be 1..{max_digits} hex digits, got {len(value)}")
    if not _HEX.fullmatch(value):
        raise error(f"{what} is not lowercase hex")
    if len(value) > 1 and value[0] == "0":
        raise error(f"{what} has leading zeros (not canonical)")
    return int(value, 16)


def hex_bytes(value: object, length: int, error: type[Exception], what: str) -> bytes:
    """Exactly ``length`` bytes as lowercase hex."""
    if not isinstance(value, str) or len(value) != 2 * length or not _HEX.fullmatch(value):
        raise error(f"{what} must be {2 * length} lowercase hex digits")
    return bytes.fromhex(value)


def b64(
    value: object, max_bytes: int, error: type[Exception], what: str, exact: int | None = None
) -> bytes:
    """Canonical padded standard base64 (re-encoding gives the same text), length-bounded."""
    if not isinstance(value, str):
        raise error(f"{what} must be a base64 string, not {type(value).__name__}")
    if len(value) > 4 * (max_bytes // 3 + 1) or len(value) % 4 or not _B64.fullmatch(value):
        raise error(f"{what} is not valid base64 of at most {max_bytes} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise error(f"{what} is not valid base64") from exc
    if base64.b64encode(data).decode("ascii") != value:
        raise error(f"{what} is not canonical base64")
    if len(data) > max_bytes or (exact is not None and len(data) != exact):
        raise error(f"{what} has the wrong length ({len(data)} bytes)")
    return data


def to_hex(value: int) -> str:
    """Canonical hex for an integer (the inverse of :func:`hex_int`)."""
    return format(value, "x")


def to_b64(data: bytes) -> str:
    """Standard padded base64 text."""
    return base64.b64encode(data).decode("ascii")


def lp(*parts: bytes) -> bytes:
    """Length-prefixed concatenation, so field boundaries cannot be shifted."""
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)
