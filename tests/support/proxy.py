"""A cuttable TCP proxy: the network between one client and its relay, under test control.

`stall()` stops forwarding in both directions without closing anything (a network outage as
TCP sees it: bytes wait, timers run); `cut()` drops every connection and refuses new ones;
`restore()` undoes either.

`buffer_bytes` pins the kernel buffers of both legs (no autotuning): on loopback they grow
to megabytes, so a stall would otherwise swallow a backlog of that size before the sender
feels it, and a test about a sender blocked by a stalled reader would depend on the kernel.
"""

from __future__ import annotations

import contextlib
import socket
import threading

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
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

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

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(self.buffer_bytes or 65536)
                if not data:
                    break
                self._flowing.wait()  # a stall holds what was read until restore()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
