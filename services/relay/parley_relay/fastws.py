"""Cheaper incoming-frame handling for gevent-websocket (measured: most of the relay's CPU).

Profiling the relay under load showed gevent-websocket spending more time per message than
everything else together, in two pure-Python byte loops per incoming text frame:

* `Header.unmask_payload` XORs the client's mask into the payload one byte at a time;
* `WebSocket.validate_utf8` runs a pure-Python UTF-8 state machine over every frame and
  then again over the whole message (wsaccel's C validator is not installed) - although
  `_decode_bytes` right after it decodes the message with `bytes.decode("utf-8")`, which
  validates in C and closes the socket with 1007 on invalid UTF-8 anyway.

`install()` swaps in an XOR done on whole integers, with the same result, and drops the
redundant validation pass (invalid UTF-8 is still refused, by the decode). It patches the
library's classes once per process and is called from `server.run()` only.
"""

from __future__ import annotations

from geventwebsocket import handler as _handler
from geventwebsocket import websocket as _ws


def unmask(mask: bytes, payload: bytes) -> bytes:
    """XOR `payload` with the repeating 4-byte `mask` (RFC 6455 section 5.3), in C speed."""
    n = len(payload)
    if n == 0:
        return b""
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _header_unmask(self, payload):
    return unmask(self.mask, payload)


class FastWebSocket(_ws.WebSocket):
    """gevent-websocket's WebSocket without the redundant pure-Python UTF-8 pass."""

    __slots__ = ()

    def validate_utf8(self, payload):
        # Deliberately empty: read_message() ends in _decode_bytes(), whose C-level
        # bytes.decode("utf-8") rejects invalid UTF-8 and closes the socket with 1007.
        return None


_installed = False


def install() -> None:
    """Patch gevent-websocket (idempotent)."""
    global _installed
    if _installed:
        return
    _ws.Header.unmask_payload = _header_unmask
    _handler.WebSocket = FastWebSocket
    _installed = True
