"""A hand-driven websocket over a plain TCP socket, for tests that break the rules on purpose.

websocket-client cannot send an unmasked frame, a 200 MB frame it never holds in memory, or
choose its source address; this can. Server frames are parsed just enough to read Engine.IO
text and the close status code.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import time

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
EIO_PATH = "/socket.io/?EIO=4&transport=websocket"


def frame_header(opcode: int, length: int, *, fin: bool = True, mask: bytes | None = b"\0" * 4,
                 rsv: int = 0) -> bytes:  # fmt: skip
    """The header of a client frame; a zero mask keeps the payload bytes as they are."""
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes([first, bit | length])
    elif length < 1 << 16:
        head = bytes([first, bit | 126]) + struct.pack("!H", length)
    else:
        head = bytes([first, bit | 127]) + struct.pack("!Q", length)
    return head + (mask or b"")


def frame(opcode: int, payload: bytes, **kw) -> bytes:
    """A whole client frame (zero-masked unless mask=None)."""
    return frame_header(opcode, len(payload), **kw) + payload


def text(data: str) -> bytes:
    return frame(OP_TEXT, data.encode())


class RawWs:
    """One TCP connection upgraded to a websocket by hand."""

    def __init__(self, port: int, *, source: str | None = None, rcvbuf: int | None = None,
                 path: str = EIO_PATH, timeout: float = 10.0):  # fmt: skip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the upgrade: {self.buf[:200]!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = head.split(b"\r\n", 1)[0].decode()
        if " 101 " not in self.status + " ":
            with contextlib.suppress(OSError):
                while chunk := self.sock.recv(4096):  # the refusal's body, up to the close
                    self.buf += chunk
            self.sock.close()
            answer = head + b"\r\n\r\n" + self.buf
            raise ConnectionError(f"upgrade refused: {answer[:400].decode('latin-1')}")

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame."""
        b0, b1 = self._need(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._need(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._need(8))
        return b0 & 0x0F, self._need(length)

    def recv_text(self) -> str:
        """The next text frame's content (pings answered on the way)."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == OP_TEXT:
                return payload.decode()
            if opcode == OP_CLOSE:
                raise ConnectionError(f"closed with {close_code(payload)}")

    def send_text(self, data: str) -> None:
        self.sock.sendall(text(data))

    def connect_sio(self, auth: str = '{"room":"raw","name":"r"}') -> str:
        """Engine.IO open, then Socket.IO CONNECT; returns the relay's answer packet."""
        assert self.recv_text().startswith("0{")
        self.send_text("40" + auth)
        return self.recv_text()

    def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the relay's close frame, answer it; its status code (None: no frame)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                opcode, payload = self.recv_frame()
            except (ConnectionError, OSError):
                return None
            if opcode == OP_CLOSE:
                with contextlib.suppress(OSError):  # the closing handshake (RFC 6455 5.5.1)
                    self.sock.sendall(frame(OP_CLOSE, payload[:2]))
                return close_code(payload)
        raise TimeoutError("no close frame")

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True once the relay has closed the TCP connection (EOF or reset).

        A close frame on the way is answered, as a well-behaved client would.
        """
        self.sock.settimeout(timeout)
        try:
            while True:
                opcode, payload = self.recv_frame()
                if opcode == OP_CLOSE:
                    with contextlib.suppress(OSError):
                        self.sock.sendall(frame(OP_CLOSE, payload[:2]))
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def process_status(pid: int, field: str) -> int:
    """A kB figure from /proc/PID/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
