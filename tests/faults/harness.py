"""Pieces of the fault-injection soak: a cuttable TCP proxy and real `parley` batch processes.

The proxy sits between one client and the relays so the harness can cut *that client only*:
`stall()` stops forwarding in both directions without closing anything (a network outage as
TCP sees it: bytes wait, timers run), `reset()` drops every connection and refuses new ones.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

from tests.support.clients import BatchClient
from tests.support.servers import free_port


class CutProxy:
    """TCP forwarder 127.0.0.1:port -> 127.0.0.1:target_port that can be stalled or reset."""

    def __init__(self, target_port: int):
        self.target_port = target_port
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

    def reset(self) -> None:
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
        self.reset()
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
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
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


class ParleyProcess(BatchClient):
    """A real `parley --batch --json` process (the shared test helper) fed line by line by the
    harness, which also keeps the harness's clock at the moment each stdout line was read:
    delivery delay runs from "written to the sender's stdin" to "printed by the receiver"."""

    def __init__(self, name: str, room: str, relays: list[str], home: Path, *extra: str):
        super().__init__(name, room, relays, home, *extra)
        self.lines: list[tuple[float, str]] = []
        self.stdin_broken = False

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.raw.append(line)
                self.lines.append((time.time(), line))
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))
                self._cond.notify_all()

    def timed_events(self) -> list[tuple[float, dict]]:
        """(read time, parsed JSON) for every stdout line that is a JSON object."""
        out = []
        with self._cond:
            lines = list(self.lines)
        for at, line in lines:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append((at, obj))
        return out

    def non_json_lines(self) -> list[str]:
        with self._cond:
            lines = list(self.raw)
        return [line for line in lines if not line.startswith("{")]

    def write(self, line: str) -> None:
        """Feed one stdin line; a dead process is recorded, not raised."""
        if self.stdin_broken:
            return
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.stdin_broken = True


class Timeline:
    """Timestamped notes of what the harness did, printed with the figures."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.notes: list[tuple[float, str]] = []

    def note(self, text: str) -> None:
        at = time.monotonic() - self.t0
        self.notes.append((at, text))
        print(f"[soak {at:7.2f}s] {text}", flush=True)
