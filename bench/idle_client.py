"""N idle Socket.IO clients over raw sockets, for bench/idle.py (runs in its own process).

Each client opens a TCP socket from one of several loopback source addresses (127.0.0.2 ...,
so 10,000 connections never run out of ephemeral ports on one address pair), upgrades to a
websocket at /socket.io/?EIO=4&transport=websocket, reads the Engine.IO OPEN packet, sends
the Socket.IO CONNECT with auth {"room": "<prefix>-<i>", "name": "idle"} and then only answers
the server's pings ("2" -> "3"). One gevent greenlet per client; no python-socketio objects,
so this process stays small and cheap.

Prints JSON lines: {"connected": n, "failed": m, "first_error": ...} when every client has
tried once, then holds the connections until stdin closes (the parent exits or closes it).

    python bench/idle_client.py --url http://127.0.0.1:PORT -n 2000
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

# Loopback source addresses used round-robin (each gives ~28k ephemeral ports to one target).
SOURCE_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 10)]
# Handshakes in flight at once: enough to go fast, few enough not to trip accept backlogs.
CONCURRENT_HANDSHAKES = 100
HANDSHAKE_TIMEOUT = 30.0


def _mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (RFC 6455 5.2/5.3); payloads here are < 126 bytes or not."""
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def _read_exact(rfile, n: int) -> bytes:
    data = rfile.read(n)
    if len(data) != n:
        raise EOFError("connection closed")
    return data


def _read_frame(rfile) -> tuple[int, bytes]:
    b0, b1 = _read_exact(rfile, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _read_exact(rfile, 8))
    return b0 & 0x0F, _read_exact(rfile, n) if n else b""


def _upgrade(sock: socket.socket, rfile, host: str) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    # Read the response head line by line: the OPEN frame may follow in the same segment.
    status = rfile.readline()
    if not status.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(status.decode(errors="replace").strip() or "closed")
    while rfile.readline() not in (b"\r\n", b""):
        pass


def open_client(i: int, host: str, port: int, prefix: str):
    """Connect client `i` up to the Socket.IO CONNECT answer; returns (socket, reader)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(HANDSHAKE_TIMEOUT)
    sock.bind((SOURCE_ADDRESSES[i % len(SOURCE_ADDRESSES)], 0))
    sock.connect((host, port))
    rfile = sock.makefile("rb")
    _upgrade(sock, rfile, f"{host}:{port}")
    _, opened = _read_frame(rfile)
    if not opened.startswith(b"0"):
        raise ConnectionError(f"no Engine.IO OPEN: {opened[:60]!r}")
    auth = json.dumps({"room": f"{prefix}-{i}", "name": "idle"})
    sock.sendall(_mask_frame(b"40" + auth.encode()))
    _, answer = _read_frame(rfile)
    if not answer.startswith(b"40"):
        raise ConnectionError(f"CONNECT refused: {answer[:120]!r}")
    sock.settimeout(None)
    return sock, rfile


def hold(sock: socket.socket, rfile) -> None:
    """Answer pings until the server closes; anything else is read and dropped."""
    try:
        while True:
            opcode, payload = _read_frame(rfile)
            if opcode == 0x8:
                return
            if opcode == 0x9:  # websocket ping
                sock.sendall(_mask_frame(payload, 0xA))
            elif payload == b"2":  # Engine.IO ping
                sock.sendall(_mask_frame(b"3"))
    except (OSError, EOFError):
        return


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--prefix", default="idle")
    args = p.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parts = urlsplit(args.url)
    pool = gevent.pool.Pool(CONCURRENT_HANDSHAKES)
    sockets: list[tuple] = []
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            sockets.append(open_client(i, parts.hostname, parts.port, args.prefix))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    for i in range(args.n):
        pool.spawn(one, i)
    pool.join()
    holders = [gevent.spawn(hold, s, f) for s, f in sockets]
    first = errors[0] if errors else None
    print(json.dumps({"connected": len(sockets), "failed": len(errors), "first_error": first}))
    sys.stdout.flush()
    gevent.get_hub().threadpool.spawn(sys.stdin.read).get()  # wait for the parent
    for s, _ in sockets:
        s.close()
    gevent.killall(holders, timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
