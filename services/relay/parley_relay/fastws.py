"""gevent-websocket's frame layer, bounded, strict and cheaper (most of the relay's CPU).

Bounds (issue 12, H4/M1/L1). The stock reader takes a frame's declared length from its header
and reads that many bytes before anyone looks at the size: one 200 MB frame right after the
upgrade cost 1 GB of RSS. `BoundedWebSocket` checks every length from the header before it
reads the payload, caps a fragmented message's total, reads and unmasks in bounded chunks,
and closes with a status code on the wire (RFC 6455 section 7.4):

* 1009 a frame or message longer than `max_message_bytes` (Settings.max_frame_bytes);
* 1003 a binary frame (Parley is JSON text only);
* 1002 an unmasked client frame (section 5.1 says the server MUST close), reserved bits,
  fragmented or oversized control frames, bad opcode sequences;
* 1007 invalid UTF-8 (by the C decoder, see below).

Every check is O(1) integer work on the frame header. A close waits `CLOSE_GRACE_SECONDS`
for the peer's close and then shuts the TCP socket down, so a silent peer cannot keep the
file descriptor and the reader greenlet forever (M3).

Speed. The stock `Header.unmask_payload` XORs one byte at a time and `validate_utf8` runs a
pure-Python UTF-8 state machine; here the XOR is done on whole integers and the validation is
left to `bytes.decode("utf-8")` in `_decode_bytes`, which refuses invalid UTF-8 in C.

`install(max_message_bytes)` swaps the handler's WebSocket class once per process; it is called
from `server.run()` only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct

import gevent
from geventwebsocket import handler as _handler
from geventwebsocket import websocket as _ws
from geventwebsocket.exceptions import ProtocolError, WebSocketError

from .logs import LOGGER_NAME, log_event

# Unmasking works on this many bytes at a time (a multiple of 4, so the mask stays aligned):
# the temporary integers stay small whatever the frame length.
UNMASK_CHUNK = 65536
# After our close frame, how long the peer gets to answer before the TCP socket is shut down.
CLOSE_GRACE_SECONDS = 2.0
# RFC 6455 section 5.5: control frames carry at most 125 bytes and are never fragmented.
MAX_CONTROL_PAYLOAD = 125
# A close reason must fit a control frame together with the 2-byte status code.
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2
# A reader yields to the other greenlets after this many control frames in a row: reading
# never blocks while bytes are waiting, so a client sending empty PINGs or PONGs back to back
# held the whole replica (/healthz, pings, every other client) for as long as it went on.
CONTROL_FRAMES_PER_YIELD = 16

# What a websocket's WSGI environ keeps once upgraded: the peer's address (logs, per-address
# limits, the Socket.IO CONNECT handler) and gevent-websocket's entries. The request headers
# as strings, the input stream and the server fields (~1.5 kB per connection, held for hours)
# were needed for the handshake only.
KEPT_ENVIRON = frozenset(
    {
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "REQUEST_METHOD",
        "PATH_INFO",
        "QUERY_STRING",
        "wsgi.websocket",
        "wsgi.websocket_version",
    }
)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_log = logging.getLogger(LOGGER_NAME)


class FrameRefused(ProtocolError):
    """A frame we refuse; `code` is the close status sent to the peer."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(mask: bytes, payload: bytes) -> bytes:
    """XOR `payload` with the repeating 4-byte `mask` (RFC 6455 section 5.3), in C speed."""
    n = len(payload)
    if n == 0:
        return b""
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _header_unmask(self, payload):
    return unmask(self.mask, payload)


def text_frame(data: bytes) -> bytes:
    """One unmasked, final text frame (server to client, RFC 6455 section 5.2)."""
    n = len(data)
    if n < 126:
        return bytes((0x80 | OP_TEXT, n)) + data
    if n < 65536:
        return struct.pack("!BBH", 0x80 | OP_TEXT, 126, n) + data
    return struct.pack("!BBQ", 0x80 | OP_TEXT, 127, n) + data


def _read_exact(read, n: int) -> bytes:
    data = read(n)
    if len(data) != n:
        raise WebSocketError("Unexpected EOF while reading a frame")
    return data


def shutdown_socket(sock) -> None:
    """Shut a TCP socket down both ways, waking every greenlet blocked on it; never raises."""
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed: nothing left to wake
        sock.shutdown(socket.SHUT_RDWR)


class _NoApp:
    """What `current_app` gives: gevent-websocket calls on_close() on it; nothing listens."""

    @staticmethod
    def on_close(*_args) -> None:
        return None


class BoundedWebSocket(_ws.WebSocket):
    """gevent-websocket's WebSocket with header-first limits, strict RFC 6455 and close codes.

    `sock` is the TCP socket once the connection is detached from its pywsgi handler
    (`use_socket`, wsidle.py); until then the handler's socket is used."""

    __slots__ = ("sock",)

    # Set by install(): the largest message (one frame or all its fragments) we will read.
    max_message_bytes = 3 * 65536 + 4096

    def __init__(self, environ, stream, handler):
        self.sock = None
        super().__init__(environ, stream, handler)

    @property
    def current_app(self):
        # The stock property looks up handler.server.application.current_app, which the
        # relay's WSGI app does not have (it built a throw-away class each time), and a
        # detached websocket has no handler at all.
        return _NoApp

    def use_socket(self, sock, read) -> None:
        """Read with `read(n)` and write to `sock` directly; forget the pywsgi handler and
        its stream (they held the request state and the 2 kB read buffer)."""
        self.sock = sock
        self.raw_read = read
        self.raw_write = sock.sendall
        self.stream = None
        self.handler = None

    def tcp_socket(self):
        """The connection's TCP socket (None once the handler let go of it)."""
        sock = getattr(self, "sock", None)  # unset on an instance built without __init__
        if sock is not None:
            return sock
        return getattr(self.handler, "socket", None) if self.handler else None

    def validate_utf8(self, payload):
        # Deliberately empty: read_message() ends in _decode_bytes(), whose C-level
        # bytes.decode("utf-8") rejects invalid UTF-8 and closes the socket with 1007.
        return None

    # -- reading ------------------------------------------------------------------------

    def read_frame(self, budget: int | None = None):
        """Read one frame; refuse it from its header alone when it breaks a rule.

        `budget` is how many payload bytes the current message may still take.
        """
        read = self.raw_read
        b0, b1 = _read_exact(read, 2)
        opcode, fin, length = b0 & 0x0F, bool(b0 & 0x80), b1 & 0x7F
        if b0 & 0x70:
            raise FrameRefused(1002, "reserved bits set")
        if not b1 & 0x80:
            raise FrameRefused(1002, "client frames must be masked")
        if opcode >= OP_CLOSE:
            if not fin or length > MAX_CONTROL_PAYLOAD:
                raise FrameRefused(1002, "bad control frame")
        elif opcode == OP_BINARY:
            raise FrameRefused(1003, "binary frames are not accepted")
        if length == 126:
            (length,) = struct.unpack("!H", _read_exact(read, 2))
        elif length == 127:
            (length,) = struct.unpack("!Q", _read_exact(read, 8))
        if opcode < OP_CLOSE and length > (self.max_message_bytes if budget is None else budget):
            raise FrameRefused(1009, "message too big")
        mask = _read_exact(read, 4)
        header = _ws.Header(fin=fin, opcode=opcode, length=length)
        if length <= UNMASK_CHUNK:
            return header, unmask(mask, _read_exact(read, length))
        parts = []
        for start in range(0, length, UNMASK_CHUNK):
            parts.append(unmask(mask, _read_exact(read, min(UNMASK_CHUNK, length - start))))
        return header, b"".join(parts)

    def read_message(self):
        """The next text message, its fragments' total kept within max_message_bytes."""
        opcode = None
        message = bytearray()
        controls = 0
        while True:
            header, payload = self.read_frame(self.max_message_bytes - len(message))
            f_opcode = header.opcode
            if f_opcode == OP_TEXT:
                if opcode is not None:
                    raise FrameRefused(1002, "new message inside a fragmented one")
                opcode = f_opcode
            elif f_opcode == OP_CONT:
                if opcode is None:
                    raise FrameRefused(1002, "continuation without a message")
            elif f_opcode in (OP_PING, OP_PONG):
                if f_opcode == OP_PING:
                    self.handle_ping(header, payload)
                controls += 1
                if controls % CONTROL_FRAMES_PER_YIELD == 0:
                    gevent.sleep(0)
                continue
            elif f_opcode == OP_CLOSE:
                self.handle_close(header, payload)
                return None
            else:
                raise FrameRefused(1002, "unknown opcode")
            message += payload
            if header.fin:
                return self._decode_bytes(bytes(message))

    def receive(self):
        """The next message, or None once the socket is closed (each refusal with its code)."""
        if self.closed:
            raise WebSocketError(_ws.MSG_ALREADY_CLOSED)
        try:
            return self.read_message()
        except FrameRefused as refused:
            log_event(
                _log,
                "ws_refused",
                logging.WARNING,
                code=refused.code,
                reason=refused.reason,
                peer=self._peer(),
            )
            self.close(refused.code, refused.reason)
        except UnicodeError:
            self.close(1007, "invalid UTF-8")
        except ProtocolError:
            self.close(1002, "protocol error")
        except OSError:
            self.close(1001)  # EOF, reset or idle timeout: the peer is gone or going
        return None

    def _peer(self) -> str | None:
        environ = self.environ or {}
        return environ.get("REMOTE_ADDR")

    # -- writing ------------------------------------------------------------------------

    def send_texts(self, texts: list[str]) -> None:
        """Several text messages, one frame each, in one socket write: a burst queued for
        one client costs one syscall instead of one per message."""
        if self.closed or self.raw_write is None:
            raise WebSocketError(_ws.MSG_ALREADY_CLOSED)
        frames = b"".join([text_frame(text.encode("utf-8")) for text in texts])
        try:
            self.raw_write(frames)
        except OSError as exc:
            raise WebSocketError(_ws.MSG_SOCKET_DEAD) from exc

    # -- closing ------------------------------------------------------------------------

    def close(self, code=1000, message=b""):
        """Send a close frame carrying `code` (RFC 6455 5.5.1), then shut TCP down soon."""
        if self.closed:
            return
        reason = message.encode("utf-8") if isinstance(message, str) else bytes(message or b"")
        try:
            self.send_frame(struct.pack("!H", code) + reason[:MAX_CLOSE_REASON], OP_CLOSE)
        except (WebSocketError, OSError):
            pass  # the peer is gone: nothing to tell it
        finally:
            self.closed = True
            sock = self.tcp_socket()
            if sock is not None:
                gevent.spawn_later(CLOSE_GRACE_SECONDS, shutdown_socket, sock)
            self.stream = None
            self.raw_write = None
            self.raw_read = None
            self.environ = None

    def abort(self) -> None:
        """Drop the connection now: used for slow consumers (no close handshake to wait for)."""
        self.closed = True
        shutdown_socket(self.tcp_socket())


def slim_websocket(ws) -> None:
    """After the upgrade: drop what only the handshake needed (memory per idle connection).

    The environ is emptied and refilled in place (every holder shares that dict, and clear()
    frees its table), the parsed request headers go, and so does the UTF-8 validator this
    class never uses (bytes.decode validates)."""
    environ = ws.environ
    if environ:
        kept = {k: v for k, v in environ.items() if k in KEPT_ENVIRON}
        environ.clear()
        environ.update(kept)
    ws.utf8validator = None
    handler = ws.handler
    if handler is not None and hasattr(handler, "headers"):
        handler.headers = None


# Kept for existing imports: the frame class used to be called FastWebSocket.
FastWebSocket = BoundedWebSocket

_installed = False


def install(max_message_bytes: int) -> None:
    """Use BoundedWebSocket for every upgrade in this process (limits: last call wins)."""
    global _installed
    BoundedWebSocket.max_message_bytes = max_message_bytes
    if _installed:
        return
    _ws.Header.unmask_payload = _header_unmask
    _handler.WebSocket = BoundedWebSocket
    _installed = True
