"""Real servers for integration tests: a redis-server and parley-relay processes on free ports.

Every process started here is stopped again by the fixture that owns it, also when a test
fails. Nothing assumes a fixed port.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

TAP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "relay_tap.py"


# Ports for the servers tests start lie below the kernel's ephemeral range. A port bind(0)
# hands out comes from that range, the one outgoing connections take their own port from:
# between the check and the server's bind, a client socket of a test running beside it could
# take it (seen in a shuffled run: a relay exited with `Address already in use`). Below the
# range only another free_port() call can pick the same port, one chance in thousands.
LOWEST_TEST_PORT = 15000
_pick = random.SystemRandom()  # not the seedable global generator: each worker its own ports


def ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port that is free on 127.0.0.1 right now and that no outgoing connection will take."""
    high = ephemeral_low() - 1
    if high - LOWEST_TEST_PORT < 1000:  # a machine with a wide ephemeral range: the old way
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(1000):
        port = _pick.randint(LOWEST_TEST_PORT, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {LOWEST_TEST_PORT}-{high} on 127.0.0.1")


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class RedisServer:
    """A throwaway redis-server on a free port (with `password`: requirepass).

    No persistence, unless `appendonly`: then AOF with `appendfsync everysec`, as compose runs
    it, in `workdir`, which survives `restart()`.
    """

    port: int = field(default_factory=free_port)
    password: str | None = None
    appendonly: bool = False
    proc: subprocess.Popen | None = None
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="parley-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "everysec",
                "--dir",
                self.workdir,
                "--protected-mode",
                "no",
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self.ping, timeout=60, what=f"redis-server on port {self.port}")
        except TimeoutError:
            self.stop()  # never leave a half-started server behind
            raise
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                s.sendall(auth + b"PING\r\n")
                return s.recv(64).endswith(b"+PONG\r\n")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            _stop(self.proc, sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


PER_ADDRESS_LIMITS_OFF = {"PARLEY_MAX_CONNECTIONS_PER_ADDRESS": "off", "PARLEY_CONNECT_RATE": "off"}


@dataclass
class RelayProcess:
    """A real `parley-relay` process (python -m parley_relay) on a free port."""

    redis_url: str | None = None
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    # Open-file limit for the relay process (RLIMIT_NOFILE), e.g. to show fd exhaustion.
    nofile: int | None = None
    # Set: run under scripts/relay_tap.py, controlled by a tests.support.tap.Tap on this port.
    tap_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> RelayProcess:
        entry = ["-m", "parley_relay"] if self.tap_port is None else [str(TAP_SCRIPT)]
        args = [
            sys.executable,
            *entry,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        if self.redis_url:
            args += ["--redis-url", self.redis_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        # Tests and benches run hundreds of clients from the one loopback address, which is
        # what the per-address limits refuse; test_relay_bounds.py sets them by flag.
        env.update(PER_ADDRESS_LIMITS_OFF)
        env.update(self.env)
        if self.tap_port is not None:
            env["RELAY_TAP_CONTROL"] = str(self.tap_port)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="parley-relay-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=self._limits
        )
        log.close()
        try:
            wait_for(self._healthy, timeout=timeout, what=f"relay on port {self.port}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"relay did not become healthy; log:\n{self.log()}") from None
        return self

    def _limits(self) -> None:
        if self.nofile is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"relay exited with {self.proc.returncode}; log:\n{self.log()}")
        status, _ = self.get("/healthz")
        return status == 200

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 2
    ) -> tuple[int, str]:
        """GET a relay URL; returns (status, body), status 0 when unreachable or not answered
        within `timeout` s."""
        request = urllib.request.Request(self.url + path, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def health(self) -> dict:
        status, body = self.get("/healthz")
        data = json.loads(body) if body else {}
        data["_status"] = status
        return data

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the relay and wait up to `timeout` s before SIGKILL (exit status -9)."""
        if self.proc is not None:
            _stop(self.proc, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
