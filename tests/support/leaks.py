"""One leak search for every test that asks "did a secret cross the relay or Redis?".

A secret (a plaintext line, a key) can travel in many spellings: as is, JSON-escaped, as hex,
or base64-encoded inside a longer byte string, where its encoding depends on its offset
modulo 3. `forms()` lists every spelling whose characters depend on the secret alone, and
`find_leaks()` searches a text (Redis MONITOR output, relay logs, a tap dump) for all of
them, case-insensitively where the encoding is (hex) and exactly where it is not (base64).
"""

from __future__ import annotations

import base64
import json

# A spelling shorter than this could occur by chance in kilobytes of base64 ciphertext.
MIN_FORM_CHARS = 12


def _b64_inner(data: bytes, offset: int, alphabet: bytes | None) -> str:
    """The base64 characters that depend only on `data` when it starts `offset` bytes into
    (offset mod 3) the encoded stream: the first/last characters mix in neighbour bits."""
    enc = base64.b64encode(b"\x00" * offset + data + b"\x00\x00", altchars=alphabet).decode()
    first = -(-8 * offset // 6)  # first 6-bit group wholly inside `data`
    last = (8 * (offset + len(data))) // 6  # first group that reaches past it
    return enc[first:last]


def redis_repr(data: bytes) -> str:
    """How bytes look in redis-py's MONITOR output: redis escapes them (sdscatrepr) and
    redis-py turns an escaped quote back into a plain one."""
    escapes = {10: "\\n", 13: "\\r", 9: "\\t", 7: "\\a", 8: "\\b", 92: "\\\\"}
    return "".join(escapes.get(b, chr(b) if 32 <= b < 127 else f"\\x{b:02x}") for b in data)


def forms(secret: str | bytes) -> dict[str, str]:
    """{name: spelling} of `secret`: raw (text), JSON-escaped, redis-escaped bytes, hex, and
    standard and URL-safe base64 at each of the three offsets."""
    data = secret.encode("utf-8") if isinstance(secret, str) else secret
    out: dict[str, str] = {"hex": data.hex()}
    if isinstance(secret, str):
        out["raw"] = secret
        out["json"] = json.dumps(secret)[1:-1]
    else:
        out["redis_bytes"] = redis_repr(data)
    for offset in range(3):
        out[f"base64@{offset}"] = _b64_inner(data, offset, None)
        out[f"base64url@{offset}"] = _b64_inner(data, offset, b"-_")
    return {name: text for name, text in out.items() if len(text) >= MIN_FORM_CHARS}


def find_leaks(haystack: str, secrets: dict[str, str | bytes]) -> list[str]:
    """Names of the `secrets` ({label: secret}) found in `haystack` in any spelling, each as
    "label (form)"; an empty list means nothing leaked."""
    lowered = haystack.lower()
    found = []
    for label, secret in secrets.items():
        for form, text in forms(secret).items():
            case_free = form == "hex"
            if (text.lower() in lowered) if case_free else (text in haystack):
                found.append(f"{label} ({form})")
    return found


def assert_no_leaks(haystack: str, secrets: dict[str, str | bytes]) -> None:
    """Fail naming every secret that occurs in `haystack`, in whichever spelling."""
    assert secrets, "no secrets to look for: the check would be blind"
    leaked = find_leaks(haystack, secrets)
    assert not leaked, f"leaked: {leaked}"
