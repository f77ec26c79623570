"""Helpers for client integration tests: real ``parley`` batch processes, a pausable TCP proxy,
and a small scriptable Socket.IO relay (honest, replaying, reordering or man-in-the-middle).

The test relay runs as its own process: ``python -m tests.support.clients --port P --mode M``.
"""

from __future__ import annotations

import argparse
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

from tests.support.servers import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without PARLEY_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(extra)
    return env


class BatchClient:
    """A real ``python -m parley_client --batch --json`` process with its output parsed."""

    def __init__(self, name: str, room: str, relays, home, *args: str, env=None):
        self.name = name
        relay_arg = relays if isinstance(relays, str) else ",".join(relays)
        self.args = [
            sys.executable,
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
                    raise TimeoutError(f"{self.name}: no {what}; stderr:\n{self.stderr()}")
                self._cond.wait(min(left, 0.2))

    def _more(self) -> bool:
        return self.proc.stdout is not None and not self.proc.stdout.closed

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
    """Yield ``start(name, room, relays, *args, home=None, env=None)`` which runs BatchClient
    processes (homes under tmp_path); every one is stopped when the block ends."""
    started: list[BatchClient] = []

    def start(name, room, relays, *args, home=None, env=None) -> BatchClient:
        client = BatchClient(name, room, relays, home or tmp_path / name, *args, env=env)
        started.append(client)
        return client.start()

    try:
        yield start
    finally:
        for client in started:
            client.cleanup()


class FakeRelay:
    """A scriptable relay process (see :func:`serve_test_relay`)."""

    def __init__(self, mode: str = "honest", room: str = "demo"):
        self.mode = mode
        self.room = room
        self.port = free_port()
        fd, path = tempfile.mkstemp(prefix=f"parley-testrelay-{mode}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeRelay:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.support.clients",
                    "--port",
                    str(self.port),
                    "--mode",
                    self.mode,
                    "--room",
                    self.room,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=clean_env(),
            )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"test relay exited:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return True
            return False

        wait_for(up, what="test relay")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


# ----- the test relay process ---------------------------------------------------------------
SWAPS = 3
FORWARD = {
    "ELGAMAL_PK": "ELGAMAL_PK_BC",
    "DEFF_HELLMAN_PK": "DEFF_HELLMAN_PK_BC",
    "DIFF_HELLMAN_PK": "DIFF_HELLMAN_PK_BC",
    "message": "received_message",
}


def _handler(forward, event: str):
    async def handler(sid, data=None):
        return await forward(event, sid, data)

    return handler


def serve_test_relay(port: int, mode: str, room: str) -> None:
    """Run a two-member relay. Modes: ``honest``; ``replay`` (every envelope is delivered,
    then delivered again); ``reorder`` (each sender's first SWAPS pairs of envelopes are
    delivered swapped; swapping forever would be a denial of service no client can beat);
    ``mitm`` (handshakes with each side under the other side's name, with its own keys,
    and re-seals every message: it reads everything)."""
    import asyncio

    import socketio
    from aiohttp import web

    from parley_crypto import handshake, identity

    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)
    names: dict[str, str] = {}  # sid -> name
    held: dict[str, dict] = {}  # reorder: sid -> envelope waiting for its successor
    swaps: dict[str, int] = {}  # reorder: pairs swapped per sender so far
    mitm: dict[str, dict] = {}  # sid -> {"hs", "session", "early"}

    def other(sid: str) -> str | None:
        return next((s for s in names if s != sid), None)

    def log(text: str) -> None:
        print(text, flush=True)

    @sio.event
    async def connect(sid, environ, auth):
        if len(names) >= 2:
            raise socketio.exceptions.ConnectionRefusedError(
                "room full", {"code": "room_full", "message": "room is full"}
            )
        names[sid] = (auth or {}).get("name", "anonymous")
        log(f"connect {names[sid]}")
        if len(names) == 2:
            asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(pair()))

    async def pair():
        for sid in list(names):
            if mode == "mitm":
                fake = identity.Identity.generate(names[other(sid)])
                hs = handshake.Handshake(fake, room)
                mitm[sid] = {"hs": hs, "session": None, "early": []}
            await sio.emit("KEY_EXCHANGE", 1, to=sid)
        if mode == "mitm":
            for sid, state in mitm.items():
                await sio.emit("ELGAMAL_PK_BC", state["hs"].identity_payload(), to=sid)
                await sio.emit("DEFF_HELLMAN_PK_BC", state["hs"].dh_payload(), to=sid)

    @sio.event
    async def disconnect(sid, *args):
        name = names.pop(sid, None)
        mitm.pop(sid, None)
        peer = other(sid)
        if peer:
            await sio.emit("peer_left", {"name": name}, to=peer)

    async def forward(event, sid, data):
        peer = other(sid)
        if peer is None:
            return {"ok": True}
        if mode == "mitm":
            await intercept(event, sid, peer, data)
        elif event == "message" and mode == "replay":
            await sio.emit("received_message", data, to=peer)
            await sio.emit("received_message", data, to=peer)
            log("replayed an envelope")
        elif event == "message" and mode == "reorder" and swaps.get(sid, 0) < SWAPS:
            if sid in held:
                swaps[sid] = swaps.get(sid, 0) + 1
                await sio.emit("received_message", data, to=peer)
                await sio.emit("received_message", held.pop(sid), to=peer)
                log("reordered two envelopes")
            else:
                held[sid] = data
                asyncio.get_running_loop().call_later(
                    1.0, lambda: asyncio.ensure_future(release(sid, peer, data))
                )
        else:
            await sio.emit(FORWARD[event], data, to=peer)
        return {"ok": True}

    async def release(sid, peer, data):
        if held.get(sid) is data:
            del held[sid]
            await sio.emit("received_message", data, to=peer)

    async def intercept(event, sid, peer, data):
        state = mitm.get(sid)
        if state is None:
            return
        if event == "ELGAMAL_PK":
            state["hs"].receive_identity(data)
        elif event in ("DEFF_HELLMAN_PK", "DIFF_HELLMAN_PK"):
            state["session"] = state["hs"].receive_dh(data)
            log(f"mitm: session with {names.get(sid)}")
        elif event == "message" and state["session"] is not None:
            try:
                plaintext = state["session"].open(data)
            except Exception as e:  # noqa: BLE001 - a test relay logs and carries on
                log(f"mitm could not open: {e}")
                return
            log(f"mitm read: {plaintext.decode(errors='replace')}")
            target = mitm.get(peer)
            if target and target["session"] is not None:
                await sio.emit("received_message", target["session"].seal(plaintext), to=peer)

    for event in FORWARD:
        sio.on(event, _handler(forward, event))
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--mode", default="honest", choices=("honest", "replay", "reorder", "mitm"))
    cli.add_argument("--room", default="demo")
    opts = cli.parse_args()
    serve_test_relay(opts.port, opts.mode, opts.room)
