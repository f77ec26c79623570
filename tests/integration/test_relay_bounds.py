"""Connection and session bounds against real relays (issue 12: M2, M3, M7, L2).

Attackers are hand-driven sockets (tests/support/rawws.py), some bound to other loopback
source addresses (127.0.0.x) so per-address limits can be told apart from the honest
clients on 127.0.0.1. Counts that depend on time are derived from the measured elapsed time.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.support.rawws import RawWs, open_fds, process_status
from tests.support.relay_clients import clients_fixture, pair  # noqa: F401 - fixture
from tests.support.servers import wait_for

ATTACK_RSS_BOUND_KB = 50 * 1024
TOKEN = "a-relay-token-of-at-least-128-bits"


def peak_kb(relay) -> int:
    return process_status(relay.proc.pid, "VmHWM")


def chat_works(a, b, tag: str) -> None:
    a.emit("message", f"ping-{tag}")
    b.wait_for_payload("received_message", f"ping-{tag}", timeout=15)


# ----- M2: slow consumers -------------------------------------------------------------------
def test_a_reader_that_never_reads_is_disconnected_and_costs_bounded_memory(
    redis_server, relay_factory, clients
):
    relay = relay_factory(redis_server.url, extra_args=["--rate-limit", "off"])
    good_a, good_b = pair(clients, relay.url, relay.url, "good")
    flooder = clients(relay.url, {"room": "slow", "name": "flooder"}).connect()
    # A tiny receive window and no reads: everything the relay sends it piles up.
    slow = RawWs(relay.port, rcvbuf=4096)
    try:
        assert slow.connect_sio('{"room":"slow","name":"sleeper"}').startswith("40")
        flooder.wait_for("KEY_EXCHANGE")
        time.sleep(0.5)
        before = peak_kb(relay)
        blob = "b" * 60_000
        for _ in range(1000):  # 60 MB offered to a reader that takes nothing
            flooder.emit("message", blob)
            if flooder.named("peer_left"):
                break
        flooder.wait_for("peer_left", timeout=60)
        assert '"event": "slow_consumer"' in relay.log()
        assert slow.closed_by_peer(timeout=15)
        growth = peak_kb(relay) - before
        print(f"\nSLOW READER FIGURES: peak_before_kb={before} growth_kb={growth}")
        assert growth < ATTACK_RSS_BOUND_KB, f"peak RSS grew by {growth} kB"
        chat_works(good_a, good_b, "after-slow")
    finally:
        slow.close()


def test_graceful_shutdown_is_not_held_up_by_a_client_that_does_not_read(
    redis_server, relay_factory, clients
):
    """SIGTERM disconnects everyone; a reader stuck below the cap does not stall the drain
    (Engine.IO's waiting close gives up after CLOSE_FLUSH_SECONDS and cuts such a reader)."""
    relay = relay_factory(
        redis_server.url, extra_args=["--rate-limit", "off", "--outbound-queue-bytes", "8388608"]
    )
    flooder = clients(relay.url, {"room": "stuck", "name": "flooder"}).connect()
    slow = RawWs(relay.port, rcvbuf=4096)
    try:
        assert slow.connect_sio('{"room":"stuck","name":"sleeper"}').startswith("40")
        flooder.wait_for("KEY_EXCHANGE")
        for i in range(60):  # ~3.6 MB: the kernel buffers fill, the rest waits in the queue
            assert flooder.call("message", f"{i}" + "s" * 60_000, timeout=15)["ok"]
        started = time.monotonic()
        relay.proc.send_signal(signal.SIGTERM)
        relay.proc.wait(timeout=30)
        assert time.monotonic() - started < 15
        assert relay.proc.returncode == 0
    finally:
        slow.close()


def _poll(url: str, sid: str | None = None, body: str | None = None) -> tuple[int, str]:
    query = "EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
    data = body.encode() if body is not None else None
    req = urllib.request.Request(f"{url}/socket.io/?{query}", data=data)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback test
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_binary_over_long_polling_closes_the_session(redis_server, relay_factory):
    """M1 on the other transport: a base64 binary packet (`b...`) is refused, not kept."""
    relay = relay_factory(redis_server.url)
    _, opened = _poll(relay.url)
    sid = json.loads(opened[1:])["sid"]
    assert _poll(relay.url, sid, '40{"room":"poll","name":"p"}') == (200, "OK")
    assert _poll(relay.url, sid)[1].startswith("40")
    _poll(relay.url, sid, "bAAECAw==")  # an Engine.IO binary message: 00 01 02 03
    answers = [_poll(relay.url, sid) for _ in range(3)]
    assert any(code == 400 or text.startswith("1") for code, text in answers), answers
    assert '"error": "BinaryRefused"' in relay.log()


# ----- M3: header timeout, connection caps, silent sockets ----------------------------------
def slowloris(port: int, source: str) -> socket.socket | None:
    """An HTTP request whose headers never end."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
    except OSError:
        s.close()
        return None
    return s


def answer(s: socket.socket, timeout: float) -> bytes:
    """What the relay sent before closing (b"" for a silent close); raises on timeout."""
    s.settimeout(timeout)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_200_unfinished_request_headers_do_not_stop_a_legitimate_client(
    redis_server, relay_factory, clients
):
    # 150 file descriptors: before the fix 200 slowloris sockets exhausted them.
    args = ["--header-timeout", "3", "--max-connections-per-address", "64"]
    relay = relay_factory(redis_server.url, extra_args=args, nofile=150)
    held = [s for s in (slowloris(relay.port, "127.0.0.2") for _ in range(200)) if s]
    started = time.monotonic()
    try:
        a, b = pair(clients, relay.url, relay.url, "loris")
        chat_works(a, b, "during")
        answers = [answer(s, timeout=20) for s in held]
        elapsed = time.monotonic() - started
        refused = [x for x in answers if x.startswith(b"HTTP/1.1 429")]
        timed_out = [x for x in answers if x == b""]
        # Everything beyond the per-address cap was refused at once, with the reason...
        assert len(refused) >= 200 - 64, len(refused)
        assert b"too many connections from 127.0.0.2 (limit 64)" in refused[0]
        # ...and the rest lost their connection at the header timeout.
        assert len(refused) + len(timed_out) == 200
        assert elapsed < 20
        assert '"event": "header_timeout"' in relay.log()
        chat_works(a, b, "after")
    finally:
        for s in held:
            s.close()


def test_per_address_cap_answers_with_a_clear_refusal(redis_server, relay_factory, clients):
    relay = relay_factory(redis_server.url, extra_args=["--max-connections-per-address", "3"])
    mine = [RawWs(relay.port, source="127.0.0.3") for _ in range(3)]
    try:
        with pytest.raises(ConnectionError, match="429 Too Many Requests") as refusal:
            RawWs(relay.port, source="127.0.0.3")
        assert "too many connections from 127.0.0.3 (limit 3)" in str(refusal.value)
        pair(clients, relay.url, relay.url, "cap")  # 127.0.0.1 is another address
        mine.pop().close()
        wait_for(lambda: _upgrades(relay.port, "127.0.0.3"), timeout=10, what="a freed slot")
    finally:
        for ws in mine:
            ws.close()


def test_replica_cap_answers_503_and_frees_the_slot(redis_server, relay_factory):
    relay = relay_factory(redis_server.url, extra_args=["--max-connections", "4"])
    held = [RawWs(relay.port, source=f"127.0.0.{5 + i}") for i in range(4)]
    try:
        with pytest.raises(ConnectionError, match="503 Service Unavailable") as refusal:
            RawWs(relay.port, source="127.0.0.9")
        assert "relay at its connection limit" in str(refusal.value)
        assert '"event": "connection_refused"' in relay.log()
        held.pop().close()
        wait_for(lambda: _upgrades(relay.port, "127.0.0.9"), timeout=10, what="a freed slot")
    finally:
        for ws in held:
            ws.close()


def _upgrades(port: int, source: str) -> bool:
    try:
        RawWs(port, source=source).close()
        return True
    except ConnectionError:
        return False


def test_silent_websockets_lose_their_file_descriptors(redis_server, relay_factory):
    args = ["--ping-interval", "1", "--ping-timeout", "1", "--idle-timeout", "5"]
    relay = relay_factory(redis_server.url, extra_args=args + ["--connect-timeout", "1"])
    time.sleep(0.5)
    baseline = open_fds(relay.proc.pid)
    silent = []
    try:
        for i in range(10):  # connected to a room, then never a byte again (no pong)
            ws = RawWs(relay.port)
            assert ws.connect_sio(f'{{"room":"quiet{i}","name":"q"}}').startswith("40")
            silent.append(ws)
        for _ in range(10):  # an Engine.IO session that never sends CONNECT
            silent.append(RawWs(relay.port))
        assert open_fds(relay.proc.pid) >= baseline + 20
        wait_for(
            lambda: open_fds(relay.proc.pid) <= baseline + 2,
            timeout=30,
            what="the relay to close silent sockets",
        )
        assert '"event": "connect_timeout"' in relay.log()
        assert relay.health()["connections"] == 0
    finally:
        for ws in silent:
            ws.close()


# ----- M7: connect floods -------------------------------------------------------------------
def connect_attempt(port: int, token: str, source: str) -> dict:
    """One raw CONNECT with `token`; the relay's answer (a connect error's data, or ok)."""
    ws = RawWs(port, source=source)
    try:
        reply = ws.connect_sio(json.dumps({"room": "flood", "name": "f", "token": token}))
        if reply.startswith("40"):
            return {"code": "ok"}
        assert reply.startswith("44"), reply
        error = json.loads(reply[2:])
        # The session is closed after a refusal: no second guess on the same socket.
        with contextlib.suppress(OSError):  # the relay may have gone already
            ws.send_text("40" + json.dumps({"token": token}))
        assert ws.closed_by_peer(timeout=10)
        return error["data"]
    finally:
        ws.close()


def test_a_connect_flood_is_rate_limited_with_bounded_logs(redis_server, relay_factory):
    rate, burst = 5.0, 20
    relay = relay_factory(
        redis_server.url,
        extra_args=["--connect-rate", f"{rate:g},{burst}"],
        env={"PARLEY_RELAY_TOKEN": TOKEN},
    )
    log_before = relay.log().count('"connect_refused"')
    started = time.monotonic()
    codes = [connect_attempt(relay.port, f"wrong-{i}", "127.0.0.4")["code"] for i in range(150)]
    elapsed = time.monotonic() - started
    allowed = burst + rate * elapsed + 1
    assert codes.count("unauthorized") <= allowed, (codes.count("unauthorized"), elapsed)
    assert codes.count("unauthorized") >= burst
    assert codes.count("rate_limited") >= 150 - allowed
    assert set(codes) == {"unauthorized", "rate_limited"}
    # Refusal logs are sampled (2 lines/s, bursts of 10), not one line per attempt.
    lines = relay.log().count('"connect_refused"') - log_before
    assert lines <= 10 + 2 * (time.monotonic() - started) + 1, lines
    # Once the flood stops, attempts are answered again (a token refills in 1/rate s); the
    # first refusal line after the quiet spell says how many lines were left out.
    time.sleep(1.0)
    assert connect_attempt(relay.port, "wrong-again", "127.0.0.4")["code"] == "unauthorized"
    assert '"suppressed"' in relay.log()
    time.sleep(2 / rate)
    assert connect_attempt(relay.port, TOKEN, "127.0.0.4") == {"code": "ok"}


# ----- L2: sizes on the forwarded form ------------------------------------------------------
def test_64_kib_of_emoji_is_forwarded_as_64_kib_not_196(redis_server, relay_factory, clients):
    relay = relay_factory(redis_server.url)
    sender = clients(relay.url, {"room": "emoji", "name": "s"}).connect()
    receiver = RawWs(relay.port)
    try:
        assert receiver.connect_sio('{"room":"emoji","name":"r"}').startswith("40")
        sender.wait_for("KEY_EXCHANGE")
        emoji = "😀" * 16384  # 65,536 bytes of UTF-8: exactly the limit
        assert sender.call("message", emoji)["ok"] is True
        while True:
            packet = receiver.recv_text()
            if packet.startswith('42["received_message"'):
                break
        assert json.loads(packet[2:]) == ["received_message", emoji]
        assert len(packet.encode()) < 65536 + 100, len(packet.encode())
        # Escapes count: 20,000 NULs are 120,000 bytes of JSON, over the limit.
        assert sender.call("message", "\x00" * 20000) == {
            "ok": False,
            "code": "payload_too_large",
        }
    finally:
        receiver.close()
