"""Websocket frames are bounded from their header (issue 12: H4, M1, L1).

A real relay and real Redis; the attacker is a hand-driven websocket (tests/support/rawws.py)
that sends what no honest client does. Memory is judged by the relay's peak RSS (VmHWM)
against the same run's peak just before the attack: an attack may add at most
ATTACK_RSS_BOUND_KB, whatever the machine's allocator does with the rest.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import time

import pytest

from tests.support.rawws import (
    EIO_PATH,
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWs,
    frame,
    frame_header,
    process_status,
    text,
)
from tests.support.relay_clients import clients_fixture, pair  # noqa: F401 - fixture
from tests.support.servers import wait_for

# What one hostile frame or message may add to the relay's peak RSS (docs/reliability.md).
ATTACK_RSS_BOUND_KB = 50 * 1024
MB = 1 << 20


@pytest.fixture
def relay(redis_server, relay_factory):
    return relay_factory(redis_server.url)


class HealthProbe:
    """GETs /healthz every 100 ms in a thread; records every status it got. A relay that is
    down or stuck records 0; one that is only slow because the loaded machine held it up is
    given 10 s per answer (the relay's health is what is tested here, not its latency)."""

    def __init__(self, relay):
        self.relay = relay
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            self.statuses.append(self.relay.get("/healthz", timeout=10)[0])
            if self._stop.wait(0.1):
                return

    def stop(self, at_least: int = 5) -> list[int]:
        deadline = time.monotonic() + 15
        while len(self.statuses) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)  # keep asking for a while after the attack, too
        self._stop.set()
        self._thread.join(10)
        return self.statuses


def send_in_background(ws: RawWs, pieces) -> threading.Thread:
    """Send every bytes object from `pieces` until the relay stops taking them."""

    def run():
        try:
            for piece in pieces:
                ws.sock.sendall(piece)
        except OSError:
            pass  # the relay closed the connection: expected

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def peak_kb(relay) -> int:
    return process_status(relay.proc.pid, "VmHWM")


def attack(relay, pieces, *, connect: bool = False) -> tuple[int | None, int]:
    """Send `pieces` on a fresh websocket; return (close code, peak RSS growth in kB)."""
    time.sleep(0.5)
    before = peak_kb(relay)
    ws = RawWs(relay.port)
    if connect:
        assert ws.connect_sio().startswith("40")
    probe = HealthProbe(relay)
    sender = send_in_background(ws, pieces)
    try:
        code = ws.close_code(timeout=30)
        assert ws.closed_by_peer(timeout=15), "the relay kept the TCP connection"
        sender.join(30)
    finally:
        ws.close()
        statuses = probe.stop()
    assert statuses and set(statuses) == {200}, statuses
    growth = peak_kb(relay) - before
    print(f"\nATTACK FIGURES: close={code} peak_before_kb={before} growth_kb={growth} "
          f"healthz_checks={len(statuses)}")  # fmt: skip
    return code, growth


def test_a_200_mb_frame_right_after_the_upgrade_is_refused_from_its_header(relay, clients):
    a, b = pair(clients, relay.url, relay.url, "h4")
    chunk = b"\0" * MB
    pieces = [frame_header(OP_TEXT, 200 * MB)] + [chunk] * 200
    code, growth = attack(relay, pieces)
    assert code == 1009
    assert growth < ATTACK_RSS_BOUND_KB, f"peak RSS grew by {growth} kB"
    a.emit("message", "still here")
    b.wait_for_payload("received_message", "still here")


def test_200_continuation_frames_of_1_mb_are_refused(relay):
    chunk = b"x" * MB
    pieces = [frame(OP_TEXT, chunk, fin=False)] + [frame(OP_CONT, chunk, fin=False)] * 199
    code, growth = attack(relay, pieces, connect=True)
    assert code == 1009
    assert growth < ATTACK_RSS_BOUND_KB, f"peak RSS grew by {growth} kB"


def test_small_fragments_are_capped_by_the_message_total(relay):
    """300 x 1 KiB fragments (each small) pass 200 KiB: refused once the total would."""
    chunk = b"y" * 1024
    pieces = [frame(OP_TEXT, b'42["message","', fin=False)]
    pieces += [frame(OP_CONT, chunk, fin=False)] * 300 + [frame(OP_CONT, b'"]')]
    code, _ = attack(relay, pieces, connect=True)
    assert code == 1009


def test_a_fragmented_message_within_the_limit_still_arrives(relay, clients):
    a = clients(relay.url, {"room": "frag", "name": "a"}).connect()
    ws = RawWs(relay.port)
    try:
        assert ws.connect_sio('{"room":"frag","name":"raw"}').startswith("40")
        body = '42["message","' + "z" * 3000 + '"]'
        parts = [body[:1000], body[1000:2000], body[2000:]]
        ws.sock.sendall(
            frame(OP_TEXT, parts[0].encode(), fin=False)
            + frame(OP_PING, b"hi")  # a control frame between fragments is allowed
            + frame(OP_CONT, parts[1].encode(), fin=False)
            + frame(OP_CONT, parts[2].encode())
        )
        a.wait_for_payload("received_message", "z" * 3000)
    finally:
        ws.close()


@pytest.mark.parametrize(
    "bad,code",
    [
        (frame(OP_TEXT, b'42["message","x"]', mask=None), 1002),  # unmasked (RFC 6455 5.1)
        (frame(OP_TEXT, b'42["message","x"]', rsv=0x40), 1002),  # reserved bit
        (frame(OP_BINARY, b"\x04\x00\x01"), 1003),  # binary: Parley is JSON only
        (frame(OP_PING, b"p" * 126), 1002),  # control frame over 125 bytes
        (frame(OP_CONT, b"x"), 1002),  # continuation with no message
        (frame(0x3, b"x"), 1002),  # reserved opcode
    ],
)
def test_rule_breaking_frames_close_with_their_status_code(relay, clients, bad, code):
    a, b = pair(clients, relay.url, relay.url, "l1")
    ws = RawWs(relay.port)
    try:
        assert ws.connect_sio().startswith("40")
        ws.sock.sendall(bad)
        assert ws.close_code() == code
        assert ws.closed_by_peer()
    finally:
        ws.close()
    a.emit("message", "after")
    b.wait_for_payload("received_message", "after")
    assert "Traceback" not in relay.log()


def test_a_normal_close_carries_status_1000(relay):
    """L1: the relay's own close frames carry a status code (here: client asked to close)."""
    ws = RawWs(relay.port)
    try:
        assert ws.connect_sio().startswith("40")
        ws.send_text("1")  # Engine.IO CLOSE
        assert ws.close_code() == 1000
    finally:
        ws.close()


def test_binary_attachments_are_refused_before_they_accumulate(relay, clients):
    """M1: `45999999-` announces a million attachments; the relay closes at once."""
    a, b = pair(clients, relay.url, relay.url, "m1")
    attachment = b"\x04" + b"\0" * (MB - 1)
    pieces = [text('45999999-["message",{"_placeholder":true,"num":0}]')]
    pieces += [frame(OP_BINARY, attachment)] * 100
    # The close frame may be lost to the reset of a connection still receiving megabytes:
    # what counts is that the relay closed it at the first packet, spending nothing.
    _code, growth = attack(relay, pieces, connect=True)
    assert growth < ATTACK_RSS_BOUND_KB, f"peak RSS grew by {growth} kB"
    assert '"error": "BinaryRefused"' in relay.log()
    a.emit("message", "after binary")
    b.wait_for_payload("received_message", "after binary")


@pytest.mark.parametrize("packet", ['451-["message",{"_placeholder":true,"num":0}]', "461-[]"])
def test_socketio_binary_packets_close_the_session(relay, packet):
    ws = RawWs(relay.port)
    try:
        assert ws.connect_sio().startswith("40")
        ws.send_text(packet)
        assert ws.closed_by_peer()
    finally:
        ws.close()


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
def test_a_flood_of_control_frames_does_not_stall_the_relay(relay, clients, opcode):
    """Empty PING or PONG frames sent back to back, as fast as the relay reads them: reading
    them never yields (the bytes are always there), so on the old code every other greenlet
    of the replica (/healthz, pings, other clients) waited for as long as the flood lasted."""
    alice, bob = pair(clients, relay.url, relay.url, "flood")
    ws = RawWs(relay.port)
    burst = frame(opcode, b"") * 20_000  # 120 kB of 6-byte frames per write
    flooding, writes = threading.Event(), [0]

    def flood() -> None:
        flooding.set()
        with contextlib.suppress(OSError):  # the relay may close it (CONNECT deadline)
            while flooding.is_set():
                ws.sock.sendall(burst)
                writes[0] += 1

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        wait_for(lambda: writes[0] >= 10, timeout=30, what="the flood under way")
        # While it goes on: the relay answers, and a conversation beside it goes on.
        wait_for(lambda: relay.get("/healthz")[0] == 200, timeout=30, what="/healthz answered")
        assert alice.call("message", "beside the flood")["ok"]
        bob.wait_for_payload("received_message", "beside the flood")
        assert flooder.is_alive(), "the flood ended before the relay was checked"
    finally:
        flooding.clear()
        ws.close()
        flooder.join(10)


@pytest.mark.parametrize("body", ["Content-Length: 1000000000", "Transfer-Encoding: chunked"])
def test_an_upgrade_request_with_a_body_is_refused(relay, body):
    """pywsgi would go on reading the announced body from the socket the websocket reader
    was handed: the request is refused before the upgrade, and the relay carries on."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {EIO_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{body}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"carries no body" in answer
    assert relay.get("/healthz")[0] == 200
