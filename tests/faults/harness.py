"""Pieces of the fault-injection soak: a cuttable TCP proxy and real `parley` batch processes.

The proxy sits between one client and the relays so the harness can cut *that client only*:
`stall()` stops forwarding in both directions without closing anything (a network outage as
TCP sees it: bytes wait, timers run), `reset()` drops every connection and refuses new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]


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


class ParleyProcess:
    """A real `python -m parley_client --batch --json` fed line by line by the harness.

    Every stdout line is kept with the harness's clock at the moment it was read, so delivery
    delay is measured from "written to the sender's stdin" to "printed by the receiver".
    """

    def __init__(self, name: str, room: str, relays: list[str], home: Path, *extra: str):
        self.name = name
        self.args = [
            sys.executable, "-m", "parley_client", "--batch", "--json",
            "--name", name, "--room", room, "--relay", ",".join(relays),
            "--home", str(home), *extra,
        ]  # fmt: skip
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        fd, path = tempfile.mkstemp(prefix=f"parley-soak-{name}-", suffix=".err")
        os.close(fd)
        self.stderr_path = Path(path)
        self.proc: subprocess.Popen | None = None
        self.stdin_broken = False

    def start(self) -> ParleyProcess:
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                env=self.env, cwd=REPO,
            )  # fmt: skip
        threading.Thread(target=self._read, daemon=True, name=f"out-{self.name}").start()
        return self

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append((time.time(), line))

    def events(self) -> list[tuple[float, dict]]:
        """(read time, parsed JSON) for every stdout line that is a JSON object."""
        out = []
        with self._lock:
            lines = list(self.lines)
        for at, line in lines:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append((at, obj))
        return out

    def non_json_lines(self) -> list[str]:
        with self._lock:
            lines = [line for _, line in self.lines]
        bad = []
        for line in lines:
            try:
                if isinstance(json.loads(line), dict):
                    continue
            except ValueError:
                pass
            bad.append(line)
        return bad

    def of(self, kind: str) -> list[dict]:
        return [e for _, e in self.events() if e.get("event") == kind]

    def write(self, line: str) -> None:
        """Feed one stdin line; a dead process is recorded, not raised."""
        if self.stdin_broken:
            return
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.stdin_broken = True

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.stderr_path.unlink()


class Timeline:
    """Timestamped notes of what the harness did, printed with the figures."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.notes: list[tuple[float, str]] = []

    def note(self, text: str) -> None:
        at = time.monotonic() - self.t0
        self.notes.append((at, text))
        print(f"[soak {at:7.2f}s] {text}", flush=True)
