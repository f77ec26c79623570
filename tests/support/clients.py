"""Helpers for client integration tests: real ``parley`` batch processes.

Hostile relays are the real relay with a tap: tests/support/tap.py and attacks.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without PARLEY_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(extra)
    return env


class BatchClient:
    """A real ``python -m parley_client --batch --json`` process with its output parsed
    (``python``: another interpreter with the client installed; default: the suite's own)."""

    def __init__(self, name: str, room: str, relays, home, *args: str, env=None, python=None):
        self.name = name
        relay_arg = relays if isinstance(relays, str) else ",".join(relays)
        self.args = [
            python or sys.executable,
            "-m",
            "parley_client",
            "--batch",
            "--json",
            "--name",
            name,
            "--room",
            room,
            "--relay",
            relay_arg,
            "--home",
            str(home),
            *args,
        ]
        self.env = clean_env(**(env or {}))
        self.events: list[dict] = []
        self.raw: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        fd, path = tempfile.mkstemp(prefix=f"parley-{name}-", suffix=".err")
        os.close(fd)
        self.stderr_path = Path(path)
        self.proc: subprocess.Popen | None = None

    def start(self) -> BatchClient:
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=self.env,
                cwd=REPO,
            )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.raw.append(line)
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:  # the process closed its output: a wait for more can end now
            self._eof = True
            self._cond.notify_all()

    def send(self, *lines: str) -> None:
        for line in lines:
            self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def of(self, kind: str) -> list[dict]:
        with self._cond:
            return [e for e in self.events if e.get("event") == kind]

    def received(self) -> list[str]:
        """Texts shown to this user, in order (duplicates would show up here)."""
        return [e["text"] for e in self.of("message")]

    def wait_event(self, predicate, timeout: float = 30.0, what: str = "event") -> dict:
        """Wait until some parsed event satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._more()):
                    raise TimeoutError(
                        f"{self.name}: no {what}; last output:\n"
                        + "\n".join(self.raw[-15:])
                        + f"\nstderr:\n{self.stderr()}"
                    )
                self._cond.wait(min(left, 0.2))

    def _more(self) -> bool:
        """Output may still come (the reader has not seen its end)."""
        return not self._eof

    def wait_secure(self, timeout: float = 30.0) -> dict:
        return self.wait_event(lambda e: e.get("event") == "secure", timeout, "secure event")

    def wait_received(self, count: int, timeout: float = 30.0) -> list[str]:
        self.wait_event(lambda e: len(self.received()) >= count, timeout, f"{count} messages")
        return self.received()

    def wait(self, timeout: float = 60.0) -> int:
        """Close stdin, wait for exit, return the exit status."""
        self.close_stdin()
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def pause(self, seconds: float) -> None:
        """Freeze the process (SIGSTOP) for `seconds`, then let it go on (SIGCONT)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

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


@contextlib.contextmanager
def client_pool(tmp_path):
    """Yield ``start(name, room, relays, *args, home=None, env=None, python=None)`` which runs
    BatchClient processes (homes under tmp_path); every one is stopped when the block ends."""
    started: list[BatchClient] = []

    def start(name, room, relays, *args, home=None, env=None, python=None) -> BatchClient:
        home = home or tmp_path / name
        client = BatchClient(name, room, relays, home, *args, env=env, python=python)
        started.append(client)
        return client.start()

    try:
        yield start
    finally:
        for client in started:
            client.cleanup()
