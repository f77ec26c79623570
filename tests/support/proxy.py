"""A cuttable TCP proxy: the network between one client and its relay, under test control.

`stall()` stops forwarding in both directions without closing anything (a network outage as
TCP sees it: bytes wait, timers run); `cut()` drops every connection and refuses new ones;
`restore()` undoes either. `cut_after(marker)` lets the next bytes from the server that hold
`marker` through and closes that one connection right behind them (a link that dies at one
exact step of a handshake), optionally sending `then` bytes of its own first, in the same
write (what a hostile relay or a man in the middle of a plain link can send); later
connections pass. `hold_back(marker, seconds)` forwards the next request from the client
that holds `marker` that much later (a server slow to answer one call: that connection waits,
the others flow), and `watch(marker)` records when requests holding `marker` went through.

`buffer_bytes` pins the kernel buffers of both legs (no autotuning): on loopback they grow
to megabytes, so a stall would otherwise swallow a backlog of that size before the sender
feels it, and a test about a sender blocked by a stalled reader would depend on the kernel.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.support.servers import free_port


class TcpProxy:
    """TCP forwarder 127.0.0.1:port -> 127.0.0.1:target_port that can be stalled or reset."""

    def __init__(self, target_port: int, buffer_bytes: int | None = None):
        self.target_port = target_port
        self.buffer_bytes = buffer_bytes
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._refusing = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        self._cut_markers: list[tuple[bytes, bytes]] = []
        self._hold_markers: list[tuple[bytes, float]] = []
        self._watched: dict[bytes, list[float]] = {}
        self.holds: list[tuple[float, float]] = []  # (start, end) of each hold, monotonic
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        """Stop moving bytes either way; connections stay open, data waits in buffers."""
        self._flowing.clear()

    def cut(self) -> None:
        """Drop every connection (RST-like close) and refuse new ones until `restore()`."""
        self._refusing = True
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def cut_after(self, marker: bytes, times: int = 1, then: bytes = b"") -> None:
        """Close each of the next `times` connections right after forwarding a chunk from the
        server that contains `marker` (the chunk arrives whole, `then` right behind it)."""
        with self._lock:
            self._cut_markers += [(marker, then)] * times

    @property
    def cuts_pending(self) -> int:
        with self._lock:
            return len(self._cut_markers)

    def hold_back(self, marker: bytes, seconds: float, times: int = 1) -> None:
        """Forward each of the next `times` chunks from the client that contain `marker`
        `seconds` late (later bytes of that connection wait behind it); each hold done is
        appended to `holds`."""
        with self._lock:
            self._hold_markers += [(marker, seconds)] * times

    def watch(self, marker: bytes) -> list[float]:
        """The (growing) list of times at which a chunk from the client holding `marker`
        was forwarded."""
        with self._lock:
            return self._watched.setdefault(marker, [])

    def restore(self) -> None:
        self._refusing = False
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            self._pin_buffers(client)
            with self._lock:
                self._socks += [client, upstream]
            for src, dst, from_server in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pipe, args=(src, dst, from_server), daemon=True
                ).start()

    def _connect_upstream(self) -> socket.socket:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._pin_buffers(upstream)  # before connect: the window is agreed at the handshake
            upstream.settimeout(5)
            upstream.connect(("127.0.0.1", self.target_port))
            upstream.settimeout(None)
        except OSError:
            upstream.close()
            raise
        return upstream

    def _pin_buffers(self, sock: socket.socket) -> None:
        if self.buffer_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_bytes)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer_bytes)

    def _pipe(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(self.buffer_bytes or 65536)
                if not data:
                    break
                self._flowing.wait()  # a stall holds what was read until restore()
                if not from_server:
                    self._hold_and_watch(data)
                cut = self._take_cut(data) if from_server else None
                if cut is not None:
                    dst.sendall(data + cut)
                    break  # the finally below closes both legs right behind this chunk
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def _hold_and_watch(self, data: bytes) -> None:
        with self._lock:
            hold = next((h for h in self._hold_markers if h[0] in data), None)
            if hold is not None:
                self._hold_markers.remove(hold)
        if hold is not None:
            start = time.monotonic()
            time.sleep(hold[1])
            self.holds.append((start, time.monotonic()))
        now = time.monotonic()
        with self._lock:
            for marker, times in self._watched.items():
                if marker in data:
                    times.append(now)

    def _take_cut(self, data: bytes) -> bytes | None:
        """The bytes to send behind `data` before cutting, or None to go on forwarding."""
        with self._lock:
            for i, (marker, then) in enumerate(self._cut_markers):
                if marker in data:
                    del self._cut_markers[i]
                    return then
        return None
