"""Drive the real docker-compose.yml from tests: one uniquely named project per test session.

Everything a `ComposeProject` starts carries its project label, and `down()` removes exactly
those containers, networks and volumes (also the one-off `run` containers). Nothing else on the
machine is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import wait_for

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("PARLEY_TEST_BASE_IMAGE", "parley-base:bookworm")
REDIS_IMAGE = os.environ.get("PARLEY_TEST_REDIS_IMAGE", "parley-redis:bookworm")
PROFILES = ("--profile", "replicas", "--profile", "client", "--profile", "lb")
SECRET_FILE = "/run/parley-secret/redis-password"


def _run(args: list[str], timeout: float, env: dict | None = None, check: bool = True):
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def docker_problem() -> str | None:
    """None when a Docker engine and Compose v2 answer here; otherwise why not, in one line."""
    if shutil.which("docker") is None:
        return "the `docker` command is not installed (run .ci/docker-setup.sh)"
    try:
        info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], 20, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers (`docker info`: {detail}); start it: .ci/docker-setup.sh"
    compose = _run(["docker", "compose", "version", "--short"], 20, check=False)
    if compose.returncode != 0:
        return "Compose v2 (`docker compose`) is missing; install it: .ci/docker-setup.sh"
    return None


def ensure_local_images() -> None:
    """Build the registry-free base and Redis images when missing (idempotent, ~80 s once)."""
    missing = [
        image
        for image in (BASE_IMAGE, REDIS_IMAGE)
        if _run(["docker", "image", "inspect", image], 30, check=False).returncode != 0
    ]
    if missing:
        env = dict(os.environ, BASE_IMAGE=BASE_IMAGE, REDIS_IMAGE=REDIS_IMAGE)
        env["DOCKER_SETUP_STEPS"] = "base redis"
        _run(["bash", str(REPO / ".ci" / "docker-setup.sh")], 600, env=env)


@dataclass
class ComposeProject:
    """One `docker compose -p NAME` project built from this checkout."""

    ports: dict[str, int]
    name: str = field(default_factory=lambda: f"parleytest{os.getpid()}{secrets.token_hex(3)}")
    env_file: str = ""
    # None: no REDIS_PASSWORD anywhere, as in the README (compose generates one). Set: written
    # to the project's .env, as an operator who chooses the password does.
    redis_password: str | None = None
    # More lines for the project's .env (e.g. {"PARLEY_SEAT_TTL": "3600"}), as an operator sets.
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Our own env file: a developer's own .env must not change what the test runs.
        fd, self.env_file = tempfile.mkstemp(prefix="parley-compose-", suffix=".env")
        with os.fdopen(fd, "w") as env_file:
            if self.redis_password is not None:
                env_file.write(f"REDIS_PASSWORD={self.redis_password}\n")
            for key, value in self.settings.items():
                env_file.write(f"{key}={value}\n")

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("PARLEY_", "COMPOSE_", "RELAY2_", "RELAY_", "BASE_IMAGE", "REDIS_", "LB_")
            )
        }
        env.update(
            BASE_IMAGE=BASE_IMAGE,
            REDIS_IMAGE=REDIS_IMAGE,
            PARLEY_PORT=str(self.ports["relay"]),
            RELAY2_PORT=str(self.ports["relay2"]),
        )
        if "lb" in self.ports:
            env["LB_PORT"] = str(self.ports["lb"])
        return env

    def cmd(self, *args: str) -> list[str]:
        return ["docker", "compose", "--env-file", self.env_file, "-p", self.name, *PROFILES, *args]

    def run(self, *args: str, timeout: float = 300, check: bool = True):
        return _run(self.cmd(*args), timeout, env=self.env, check=check)

    def build(self, *services: str) -> None:
        self.run("build", *(services or ("relay", "client")), timeout=900)

    def up(self, *services: str, timeout: int = 120) -> None:
        self.run(
            "up", "-d", "--wait", "--wait-timeout", str(timeout), *services, timeout=timeout + 60
        )

    def stop(self, service: str) -> None:
        self.run("stop", "--timeout", "10", service, timeout=60)

    @contextlib.contextmanager
    def stopped(self, service: str):
        """Stop `service` for the block; start it again and wait until healthy afterwards,
        also when the block fails, so no test depends on what an earlier one stopped."""
        self.stop(service)
        try:
            yield
        finally:
            self.up(service)

    def containers(self, service: str) -> list[dict]:
        """`docker compose ps` rows of the service's containers (Name, State, ...), by Name."""
        out = self.run("ps", "--all", "--format", "json", service).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
        return sorted(rows, key=lambda row: row.get("Name", ""))

    def _assert_ours(self, name: str) -> None:
        ours = {row["Name"] for service in ("replica", "relay", "relay2")
                for row in self.containers(service)}  # fmt: skip
        assert name in ours, f"{name} is not a relay container of project {self.name}"

    def stop_container(self, name: str) -> None:
        """`docker stop` one container of this project (e.g. one replica of a scaled service)."""
        self._assert_ours(name)
        _run(["docker", "stop", "--time", "10", name], 60)

    def start_container(self, name: str) -> None:
        """`docker start` one stopped container of this project (a test restores what it
        stopped, so the next one, in whatever order, finds the stack as the fixture made it)."""
        self._assert_ours(name)
        _run(["docker", "start", name], 60)

    def pause_container(self, name: str, paused: bool = True) -> None:
        """`docker pause` (freeze) one container of this project, or unpause it. A frozen
        process says nothing: its kernel still holds its connections open, unlike a killed one
        (whose sockets the kernel closes, which peers notice at once)."""
        self._assert_ours(name)
        _run(["docker", "pause" if paused else "unpause", name], 60)

    def wait_healthy(self, service: str, timeout: float = 90.0) -> None:
        """Wait until every running container of `service` passes its health check again
        (after a pause Docker reports it unhealthy until its next check succeeds, and a
        later `up --wait` fails on an unhealthy container)."""

        def healthy() -> bool:
            rows = [r for r in self.containers(service) if r.get("State") == "running"]
            return bool(rows) and all(r.get("Health") == "healthy" for r in rows)

        wait_for(healthy, timeout, 0.5, f"every {service} container healthy")

    def container_state(self, service: str) -> str:
        """State of the service's (first) container ("running", "exited", ...), or "absent"."""
        rows = self.containers(service)
        return rows[0].get("State", "") if rows else "absent"

    def redis_secret(self) -> str:
        """The Redis password as the relays read it from the redis-secret volume."""
        return self.run("exec", "-T", "relay", "cat", SECRET_FILE).stdout.strip()

    def redis_cli(self, *args: str, password: str | None = None, check: bool = True):
        """`redis-cli ARGS` inside the redis container, authenticated with `password` (default:
        the one in the secret file, read inside the container as the healthcheck does)."""
        auth = '"$(cat ' + SECRET_FILE + ')"' if password is None else shlex.quote(password)
        line = f"REDISCLI_AUTH={auth} redis-cli {shlex.join(args)}"
        return self.run("exec", "-T", "redis", "sh", "-c", line, check=check)

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--timestamps", check=False, timeout=60).stdout

    def client(self, *args: str) -> ClientProcess:
        """Start `docker compose run --rm -T client ARGS` with stdin/stdout pipes."""
        argv = self.cmd("run", "--rm", "-T", "--no-deps", "client", *args)
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            text=True,
            bufsize=1,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return ClientProcess(proc)

    def spawn_tty(self, *args: str, deps: bool = False):
        """`docker compose run --rm client ARGS` on a pseudo-terminal, as a person runs it.
        deps=True: exactly the README's command (compose checks and starts the dependencies)."""
        import pexpect

        argv = self.cmd("run", "--rm", *(() if deps else ("--no-deps",)), "client", *args)
        return pexpect.spawn(
            argv[0], argv[1:], cwd=str(REPO), env=self.env, encoding="utf-8", timeout=60,
            dimensions=(40, 160),
        )  # fmt: skip

    def down(self) -> None:
        """Remove everything of this project (containers incl. one-off runs, networks, volumes)."""
        with contextlib.suppress(Exception):
            self.run("down", "-v", "--remove-orphans", "--timeout", "5", timeout=120, check=False)
        label = f"label=com.docker.compose.project={self.name}"
        leftover = _run(["docker", "ps", "-aq", "--filter", label], 30, check=False).stdout.split()
        if leftover:
            _run(["docker", "rm", "-f", "-v", *leftover], 60, check=False)
        for kind in ("network", "volume"):
            ids = _run(["docker", kind, "ls", "-q", "--filter", label], 30, check=False)
            if ids.stdout.split():
                _run(["docker", kind, "rm", *ids.stdout.split()], 60, check=False)
        # Earlier builds of our own images, untagged by this build, would pile up run after run.
        for title in ("parley-relay", "parley-client", "parley-lb"):
            _run(["docker", "image", "prune", "-f", "--filter",
                  f"label=org.opencontainers.image.title={title}"], 120, check=False)  # fmt: skip
        with contextlib.suppress(OSError):
            os.unlink(self.env_file)


def healthz(port: int, path: str = "/healthz") -> dict:
    """GET a published port's /healthz as JSON; {} when it does not answer 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
            return json.loads(r.read().decode())
    except (OSError, ValueError):
        return {}


def http_status(port: int, path: str) -> int:
    """HTTP status of GET path on a published port (0: no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Peer:
    """A scripted `parley --batch --json` client container plus its output parsed as events.

    Without `home` the client image's PARLEY_HOMES applies: the home is the name's folder in
    the keys volume, as in the README."""

    def __init__(
        self,
        project: ComposeProject,
        name: str,
        room: str,
        relays: list[str],
        home: str | None = None,
    ):
        self.name = name
        self.events: list[dict] = []
        args = ["--batch", "--json", "--name", name, "--room", room]
        args += ["--relay", ",".join(relays), "--timeout", "60"]
        self.proc: ClientProcess = project.client(*args, *(("--home", home) if home else ()))

    def _drain(self) -> None:
        while True:
            try:
                line = self.proc.lines.get_nowait()
            except queue.Empty:
                return
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))

    def of(self, kind: str) -> list[dict]:
        self._drain()
        return [e for e in self.events if e.get("event") == kind]

    def received(self) -> list[str]:
        return [e["text"] for e in self.of("message")]

    def expect(self, texts: list[str], timeout: float = 60) -> None:
        """Wait until exactly `texts` (in this order) were received; fail otherwise."""
        wait_for(
            lambda: self.received() == texts or self.proc.proc.poll() is not None,
            timeout=timeout,
            interval=0.2,
            what=f"{self.name} to receive {texts}",
        )
        assert self.received() == texts, (
            f"{self.name} got {self.received()}\n" + self.proc.transcript()
        )


class ClientProcess:
    """A scripted `parley` client in a container: write lines in, read lines out."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink, q in (
            (proc.stdout, self.stdout, self.lines),
            (proc.stderr, self.stderr, None),
        ):
            threading.Thread(target=self._pump, args=(stream, sink, q), daemon=True).start()

    @staticmethod
    def _pump(stream, sink: list[str], q: queue.Queue | None) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if q is not None:
                q.put(line.rstrip("\n"))

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close_input(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def transcript(self) -> str:
        return "--- stdout\n" + "\n".join(self.stdout) + "\n--- stderr\n" + "\n".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
