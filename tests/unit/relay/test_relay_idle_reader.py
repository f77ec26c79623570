"""Detached websockets (wsidle.py): no greenlet per idle connection, behaviour unchanged.

The relay's real WSGI server, app and frame layer run in this process (gevent, no monkey
patching needed), so the test can count the greenlets an idle connection holds: a structural
property, not an allocator figure. The clients are raw gevent sockets driven from the test's
own greenlet, so they add no greenlet either.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import struct

import engineio.socket
import gevent
import gevent.socket
import greenlet
import pytest
from geventwebsocket import handler as gws_handler

from parley_relay import eiobounds, fastws, wsidle
from parley_relay.app import make_app
from parley_relay.config import Settings
from parley_relay.guard import BoundedServer

WAIT = 20.0  # generous: the machine is shared


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _connect_frame(room: str) -> bytes:
    return _frame(b"40" + json.dumps({"room": room, "name": "idle"}).encode())


class Client:
    """A raw websocket client; `with_upgrade` goes out in the same write as the upgrade."""

    def __init__(self, port: int, room: str | None = None, with_upgrade: bytes = b""):
        self.sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.rfile = self.sock.makefile("rb")
        self.sock.sendall(_upgrade_request(port) + with_upgrade)
        assert self.rfile.readline().startswith(b"HTTP/1.1 101")
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        assert self.read()[1].startswith(b"0")  # Engine.IO OPEN
        if room is not None:
            self.sock.sendall(_connect_frame(room))
        if room is not None or with_upgrade:
            assert self.read()[1].startswith(b"40")  # Socket.IO CONNECT accepted

    def read(self) -> tuple[int, bytes]:
        head = self.rfile.read(2)
        if len(head) < 2:
            raise EOFError
        n = head[1] & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.rfile.read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.rfile.read(8))
        return head[0] & 0x0F, self.rfile.read(n)

    def close(self) -> None:
        self.rfile.close()  # else the socket's close waits for it, and no FIN goes out
        self.sock.close()


# The silent-socket test waits for this idle timeout; the others get the default (60 s), so
# no connection of theirs is closed while a slow machine is still counting it.
SHORT_IDLE_TIMEOUT = 1.5


@pytest.fixture
def relay(request):
    """The relay's server on a free port with the in-memory store; undone afterwards
    (parametrize indirectly with an idle timeout to change it)."""
    idle = getattr(request, "param", Settings.idle_timeout)
    settings = Settings(replica_id="idle-test", idle_timeout=idle, rate_limit=None)
    saved = (engineio.socket.Socket, gws_handler.WebSocket, fastws._installed)
    saved += (eiobounds._installed,)
    fastws.install(settings.max_frame_bytes)
    eiobounds.install(settings)
    app = make_app(settings)
    server = BoundedServer(("127.0.0.1", 0), app.wsgi, settings, log=None, error_log=None)
    server.start()
    try:
        yield server, app
    finally:
        server.stop(timeout=1)
        engineio.socket.Socket, gws_handler.WebSocket, fastws._installed = saved[:3]
        eiobounds._installed = saved[3]


def _started_greenlets() -> int:
    gc.collect()
    return sum(1 for g in gc.get_objects() if isinstance(g, greenlet.greenlet) and bool(g))


def _until(check, what: str) -> None:
    deadline = gevent.get_hub().loop.now() + WAIT
    while not check():
        assert gevent.get_hub().loop.now() < deadline, what
        gevent.sleep(0.02)


def test_idle_websockets_hold_no_started_greenlet(relay):
    server, app = relay
    port = server.server_port
    first = Client(port, room="warm-0")  # starts the relay's few shared loops
    gevent.sleep(0.2)
    baseline = _started_greenlets()
    clients = [Client(port, room=f"idle-{i}") for i in range(20)]
    gevent.sleep(0.3)
    assert server.active == 21
    # Before: one started greenlet per idle connection (its reader, deep in the WSGI call).
    assert _started_greenlets() - baseline <= 2
    for c in [first, *clients]:
        c.close()
    _until(lambda: server.active == 0, "connection slots released")
    assert server.by_address == {} and app.namespace.conns == {}
    _until(lambda: not app.sio.eio.sockets, "Engine.IO sessions dropped")


def test_frames_behind_the_upgrade_and_bursts_are_handled_in_order(relay):
    server, _app = relay
    # The CONNECT rides in the same TCP write as the upgrade: it sits in pywsgi's buffer.
    c = Client(server.server_port, with_upgrade=_connect_frame("burst"))
    burst = b"".join(_frame(b"42%d" % i + b'["nope",{}]') for i in range(1, 31))
    c.sock.sendall(burst)  # 30 events in one write, read from one buffer
    acks = []
    while len(acks) < 30:
        _, payload = c.read()
        if payload.startswith(b"43"):
            acks.append(int(payload[2:].split(b"[", 1)[0]))
    assert acks == list(range(1, 31))
    c.close()


@pytest.mark.parametrize("relay", [SHORT_IDLE_TIMEOUT], indirect=True)
def test_a_silent_websocket_is_closed_after_the_idle_timeout_with_1001(relay):
    server, _app = relay
    c = Client(server.server_port)  # upgraded, then says nothing at all
    started = gevent.get_hub().loop.now()
    frames = []
    while True:
        try:
            frames.append(c.read())
        except (EOFError, OSError):
            break
        if frames[-1][0] == 0x8:
            break
    assert frames[-1][0] == 0x8 and struct.unpack("!H", frames[-1][1][:2])[0] == 1001
    assert gevent.get_hub().loop.now() - started >= SHORT_IDLE_TIMEOUT - 0.5  # not before it
    c.close()
    _until(lambda: server.active == 0, "the timed-out connection's slot released")


def test_a_server_side_disconnect_closes_cleanly(relay):
    server, app = relay
    c = Client(server.server_port, room="bye")
    (sid,) = list(app.namespace.conns)
    app.sio.eio.disconnect(app.sio.manager.eio_sid_from_sid(sid, "/"))
    seen = []
    while not seen or seen[-1][0] != 0x8:
        seen.append(c.read())
    assert seen[-2] == (0x1, b"1")  # Engine.IO's CLOSE is written before the close frame
    assert struct.unpack("!H", seen[-1][1][:2])[0] == 1000
    c.sock.sendall(_frame(seen[-1][1][:2], 0x8))  # the client answers the close
    _until(lambda: server.active == 0, "slot released after the close handshake")
    assert c.rfile.read(1) == b""  # and the server closed its end
    c.close()


def test_socket_reader_serves_the_buffer_first_then_the_socket():
    a, b = gevent.socket.socketpair()
    try:
        reader = wsidle.SocketReader(a, b"abc")
        assert reader.pending() and reader.read(2) == b"ab"
        b.sendall(b"defgh")
        assert reader.read(4) == b"cdef"
        assert reader.pending()  # "gh" came with the same recv
        assert reader.read(2) == b"gh" and not reader.pending()
        b.close()
        assert reader.read(3) == b""  # end of stream: short read
    finally:
        a.close()
