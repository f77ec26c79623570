"""Baseline relays for the benchmarks, run beside parley-relay in the same process tree.

`python` (`serve_baseline`, run as `python bench/baselines.py --serve-baseline PORT REDIS_URL`):
a bare python-socketio + RedisManager forwarder on the same server stack as parley-relay.

`node`: Node's socket.io 4 + @socket.io/redis-adapter (bench/node/relay.js), the relay a user
would pick instead of Parley's. Its packages come from the npm registry with `npm ci` (the
versions pinned by bench/node/package-lock.json) into bench/node/node_modules, which is
git-ignored and installed on first use only.

    from baselines import start_node_relays
    relays = start_node_relays(redis_url, count=2)   # objects with .url, .proc, .cleanup()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = Path(__file__).resolve().parent / "node"
# npm ci downloads ~40 small packages; a slow registry mirror gets this long.
NPM_TIMEOUT_SECONDS = 300

sys.path.insert(0, str(ROOT))
from tests.support.servers import RelayProcess, wait_for  # noqa: E402


def ensure_node_modules() -> None:
    """`npm ci` into bench/node/node_modules unless it is already there and current."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the node baseline needs `node` and `npm` on PATH")
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    print("installing the node baseline's packages (npm ci) ...", flush=True)
    proc = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_SECONDS,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"npm ci failed in {NODE_DIR}:\n{proc.stderr[-2000:]}")


@dataclass
class NodeRelay(RelayProcess):
    """One `node relay.js PORT REDIS_URL` process; same .url/.get/.cleanup as RelayProcess."""

    def start(self, timeout: float = 30.0) -> NodeRelay:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="parley-node-relay-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / "relay.js"), str(self.port), self.redis_url or ""],
            cwd=NODE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._limits,
        )
        log.close()
        try:
            wait_for(self._healthy, timeout=timeout, what=f"node relay on port {self.port}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"node relay did not become healthy; log:\n{self.log()}") from None
        return self


def start_node_relays(redis_url: str, count: int = 2, nofile: int | None = None) -> list:
    """`count` Node baseline replicas sharing `redis_url`, started and healthy."""
    ensure_node_modules()
    relays = []
    try:
        for _ in range(count):
            relays.append(NodeRelay(redis_url=redis_url, nofile=nofile).start())
    except BaseException:
        for relay in relays:
            relay.cleanup()
        raise
    return relays


# -- the baseline relay (runs in its own process) ----------------------------------------------


def serve_baseline(port: int, redis_url: str) -> None:
    """A minimal forwarder: join the auth room on connect, emit to the room minus the sender.

    The same server stack as Parley's relay (gevent, gevent-websocket, RedisManager), with
    the stock manager given a pool large enough not to run dry (else it loses messages).
    """
    from gevent import monkey

    monkey.patch_all()
    import socketio
    from gevent.pywsgi import WSGIServer
    from geventwebsocket.handler import WebSocketHandler

    mgr = socketio.RedisManager(redis_url, redis_options={"max_connections": 10_000})
    sio = socketio.Server(async_mode="gevent", client_manager=mgr)
    rooms: dict[str, str] = {}

    @sio.event
    def connect(sid, environ, auth=None):
        room = (auth or {}).get("room", "lobby")
        rooms[sid] = room
        sio.enter_room(sid, room)

    @sio.event
    def disconnect(sid, reason=None):
        rooms.pop(sid, None)

    @sio.on("message")
    def message(sid, data):
        sio.emit("received_message", data, room=rooms.get(sid), skip_sid=sid)

    def http(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status":"ok"}']

    app = socketio.WSGIApp(sio, http)
    WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None).serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] != ["--serve-baseline"] or len(sys.argv) != 4:
        sys.exit("usage: baselines.py --serve-baseline PORT REDIS_URL")
    serve_baseline(int(sys.argv[2]), sys.argv[3])
