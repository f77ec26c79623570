"""Pieces of the fault-injection soak: real `parley` batch processes and a timeline.

The cuttable proxy (one per client and relay, so the harness can cut *that client only*)
lives in tests/support/proxy.py.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from tests.support.clients import BatchClient


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
