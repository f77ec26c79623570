"""Hostile input against a running relay: random and malformed Socket.IO traffic.

A real relay process (with a real Redis) gets, for a bounded number of hypothesis cases, fuzz
connections with junk auth and junk events (random names, wrong types, nested junk, huge
strings, binary, several arguments), raw Engine.IO/Socket.IO frames over a plain
WebSocket, and websocket frames that break RFC 6455 or the size limits (declared lengths up to
2**62, hundreds of fragments, binary, unmasked, reserved bits, junk headers; sent by hand with
tests/support/rawws.py). The frame fuzz may add at most FRAME_FUZZ_PEAK_KB to the relay's peak
RSS (VmHWM, against the same run's peak just before it). Throughout, a well-behaved pair
keeps exchanging messages. Afterwards:

* the relay process is alive, /healthz answers 200 and no handler failed;
* no room slot leaked: every room the fuzz clients used is empty in Redis and two fresh
  clients can pair in it; only the good pair is still counted as connected;
* the relay holds exactly the per-connection state it held after the warm-up (Engine.IO
  sockets, environs, Socket.IO rooms, connections: counted inside the real relay process by
  the tap, scripts/relay_tap.py), and its count of live Python objects grew by less than
  OBJECTS_PER_CASE per fuzz case: a leak of anything per connection fails, allocator noise
  (RSS) cannot. RSS is reported, and only a gross blow-up (RSS_BLOWUP x) fails.

PARLEY_FUZZ_EXAMPLES sets the number of cases per strategy (default 150).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
import socketio
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_relay.redis_store import room_key
from tests.support.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawWs,
    frame,
    frame_header,
    process_status,
)
from tests.support.relay_clients import RelayClient
from tests.support.servers import wait_for
from tests.support.tap import tapped_relay_fixture  # noqa: F401 - fixture

FUZZ_ROOMS = [f"fz{i}" for i in range(4)]
VALID_EVENTS = ["ELGAMAL_PK", "DEFF_HELLMAN_PK", "DIFF_HELLMAN_PK", "message"]
RESERVED = ["connect", "disconnect", "connect_error", "KEY_EXCHANGE", "error", "peer_left",
            "received_message", "ELGAMAL_PK_BC", "__proto__", ""]  # fmt: skip
# Live-object growth allowed per fuzz case: a connection leaked whole holds hundreds of
# objects (socket, environ, greenlet, rooms); interpreter caches warmed by new junk need far
# less than one per case.
OBJECTS_PER_CASE = 3
# RSS depends on the allocator and on the 300 kB strings in flight; only a blow-up fails.
RSS_BLOWUP = 2.0
# The frame fuzz declares frames of up to 2**62 bytes; the relay must refuse them from the
# header, so its peak RSS may not grow by more than this over the whole frame fuzz.
FRAME_FUZZ_PEAK_KB = 50 * 1024
STATS = {"cases": 0, "raw_cases": 0, "frame_cases": 0, "refused": 0, "dropped": 0, "acks": 0}


def examples() -> int:
    return int(os.environ.get("PARLEY_FUZZ_EXAMPLES") or 150)


# ----- strategies ---------------------------------------------------------------------------
huge_text = st.builds(
    lambda n, ch: ch * n,
    st.sampled_from([65_000, 65_537, 70_000, 300_000]),
    st.sampled_from(["x", "é", "😀", "\x00"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=64),
)
junk = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=15,
)
# Auth travels in the CONNECT packet, which cannot carry binary: JSON-only junk there.
json_junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40)),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=15,
)
payload = st.one_of(junk, huge_text, st.binary(min_size=60_000, max_size=70_000))
event_name = st.one_of(st.sampled_from(VALID_EVENTS + RESERVED), st.text(max_size=30))
args = st.one_of(payload.map(lambda p: (p,)), st.lists(junk, max_size=3).map(tuple))
auth = st.one_of(
    st.none(),
    json_junk,
    st.fixed_dictionaries(
        {"room": st.sampled_from(FUZZ_ROOMS), "name": st.sampled_from(["m1", "m2", "m3"])}
    ),
    st.dictionaries(
        st.sampled_from(["room", "name", "token", "x"]),
        st.one_of(json_junk, st.sampled_from(FUZZ_ROOMS), huge_text),
        max_size=4,
    ),
)
raw_frame = st.one_of(
    st.sampled_from(
        [
            "42",
            "42[",
            "42[]",
            "42[1]",
            '42["message"',
            "42{}",
            '42["message",{"_placeholder":true,"num":3}]',
            '451-["message",{"_placeholder":true,"num":0}]',
            "41",
            "43",
            "44",
            "49[]",
            "4",
            "9",
            "6",
            "3",
            "2probe",
            "40/nope,",
            '42/nope,["message","x"]',
            "4-1",
            "42" + "[" * 5000,
            '42["message","' + "y" * 200_000 + '"]',
            '42["message",' + "9" * 5000 + "]",
        ]
    ),  # fmt: skip
    st.text(max_size=200).map(lambda t: "42" + t),
    st.text(max_size=200).map(lambda t: "4" + t),
    st.binary(max_size=300),
)

ws_frame = st.one_of(
    # A length past the limit in the header, followed by a little of the payload.
    st.sampled_from([200_705, 10**6, 200 << 20, 1 << 62]).map(
        lambda n: frame_header(OP_TEXT, n) + b"\0" * 4096
    ),
    # Many fragments of one message, small or large (the total is capped).
    st.tuples(st.integers(1, 300), st.sampled_from([1, 1024, 4096])).map(
        lambda t: (
            frame(OP_TEXT, b'42["message","', fin=False)
            + frame(OP_CONT, b"x" * t[1], fin=False) * t[0]
            + frame(OP_CONT, b'"]')
        )
    ),
    st.binary(max_size=64).map(lambda b: frame(OP_BINARY, b)),
    st.binary(max_size=64).map(lambda b: frame(OP_TEXT, b, mask=None)),
    st.tuples(st.sampled_from([0x10, 0x20, 0x40]), st.binary(max_size=32)).map(
        lambda t: frame(OP_TEXT, t[1], rsv=t[0])
    ),
    st.binary(max_size=200).map(lambda b: frame(OP_PING, b)),  # > 125 is a protocol error
    st.binary(min_size=1, max_size=20),  # junk where a header should be
    st.sampled_from(
        [
            frame(OP_CONT, b"x"),
            frame(0x3, b""),
            frame(OP_CLOSE, b"\x03\xe8bye"),
            frame(OP_CLOSE, b"\x00"),
            frame(OP_TEXT, b"\xff\xfe"),
        ]
    ),  # fmt: skip
)


# ----- fixtures -----------------------------------------------------------------------------
@pytest.fixture
def relay(redis_server, tapped_relay):
    """The real relay with the tap attached in pass-through mode (for `tap.inspect()`)."""
    return tapped_relay(redis_server.url)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class GoodPair:
    """alice and bob exchange numbered messages every 50 ms for the whole fuzz run."""

    def __init__(self, url: str):
        self.a = RelayClient(url, {"room": "good", "name": "alice"}).connect()
        self.b = RelayClient(url, {"room": "good", "name": "bob"}).connect()
        self.a.wait_for("KEY_EXCHANGE")
        self.b.wait_for("KEY_EXCHANGE")
        self.sent: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> GoodPair:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.05):
            n += 1
            text = f"good-{n}"
            self.sent.append(text)
            try:
                ack = self.a.call("message", text, timeout=5)
            except Exception as e:  # noqa: BLE001 - recorded and asserted on
                self.failures.append(f"{text}: {type(e).__name__}")
                continue
            if not (isinstance(ack, dict) and ack.get("ok")):
                self.failures.append(f"{text}: ack {ack}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def received(self) -> list[str]:
        return self.b.named("received_message")

    def close(self) -> None:
        self.a.close()
        self.b.close()


def fuzz_connection(url: str, auth_obj, calls: list[tuple[str, tuple]]) -> None:
    """One hostile Socket.IO connection: connect with `auth_obj`, emit every call, leave."""
    sio = socketio.Client(reconnection=False)
    try:
        sio.connect(url, auth=auth_obj, transports=["websocket"], wait_timeout=2)
    except socketio.exceptions.ConnectionError:
        STATS["refused"] += 1
        return
    try:
        for event, data in calls:
            if not sio.connected:
                STATS["dropped"] += 1
                return
            with contextlib.suppress(socketio.exceptions.BadNamespaceError):
                sio.emit(event, data if len(data) != 1 else data[0])
        # A barrier: once this ack arrives the relay has handled everything before it. A
        # connection the relay dropped (absurdly large packet) ends the wait at once.
        done = threading.Event()
        sio.on("disconnect", lambda *_: done.set())

        def acked(*_):
            STATS["acks"] += 1
            done.set()

        with contextlib.suppress(Exception):
            sio.emit("message", "barrier", callback=acked)
            done.wait(5)
    finally:
        with contextlib.suppress(Exception):
            sio.disconnect()


def raw_connection(port: int, frames: list) -> None:
    """Speak Engine.IO v4 by hand over a WebSocket and send junk frames after connecting."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=5
    )
    try:
        ws.recv()  # the Engine.IO OPEN packet
        ws.send('40{"room":"fz0","name":"raw"}')
        for frame in frames:
            if isinstance(frame, bytes):
                ws.send_binary(frame)
            else:
                ws.send(frame)
    except (OSError, websocket.WebSocketException):
        STATS["dropped"] += 1
    finally:
        with contextlib.suppress(Exception):
            ws.close()


def ws_connection(port: int, frames: list[bytes]) -> None:
    """Connect by hand, then send rule-breaking websocket frames; the relay may close."""
    ws = None
    try:
        ws = RawWs(port, timeout=5)
        ws.connect_sio('{"room":"fz1","name":"ws"}')
        ws.sock.sendall(b"".join(frames))
        ws.closed_by_peer(timeout=1)
    except (OSError, ConnectionError, AssertionError):
        STATS["dropped"] += 1
    finally:
        if ws is not None:
            ws.close()


def warm_up(url: str, port: int) -> None:
    """Deterministic junk so lazy imports, caches and pools exist before RSS is measured."""
    rnd = random.Random(7)
    for i in range(40):
        data = rnd.choice([None, 1, "x" * rnd.choice([10, 70_000]), {"a": [1, {"b": None}]}])
        fuzz_connection(
            url,
            {"room": FUZZ_ROOMS[i % len(FUZZ_ROOMS)], "name": "m1"},
            [(rnd.choice(VALID_EVENTS + ["zzz"]), (data,))] * 3,
        )
        raw_connection(port, ["42[", b"\x00\x01", '42["message","x"]'])


def assert_alive(relay) -> None:
    assert relay.proc.poll() is None, relay.log()[-3000:]


# ----- the tests ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame", ["42[", '42["message"', "49", "4-1", b"\x00\x01", "42" + "[" * 5000]
)
def test_undecodable_packet_closes_only_that_connection_with_one_log_line(relay, frame):
    good = GoodPair(relay.url)
    try:
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{relay.port}/socket.io/?EIO=4&transport=websocket", timeout=5
        )
        ws.recv()  # OPEN
        ws.send('40{"room":"junk","name":"raw"}')
        assert ws.recv().startswith("40")  # CONNECT accepted
        ws.send_binary(frame) if isinstance(frame, bytes) else ws.send(frame)
        with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
            for _ in range(10):  # anything still queued (KEY_EXCHANGE, pings), then closed
                if ws.recv() in ("", b""):
                    raise websocket.WebSocketConnectionClosedException("closed")
        wait_for(lambda: relay.health()["connections"] == 2, timeout=5, what="raw client gone")
        assert good.a.call("message", "still fine") == {"ok": True, "id": ANY_ID}
        log = relay.log()
        # A binary frame is refused by the websocket layer (close 1003), text junk by Socket.IO.
        assert '"bad_packet"' in log or '"ws_refused"' in log
        assert "Traceback" not in log, log[-3000:]
    finally:
        good.close()


def test_binary_attachment_closes_only_the_sender(relay):
    """Parley is JSON only: a Socket.IO binary packet costs its sender the connection."""
    good = GoodPair(relay.url)
    sender = RelayClient(relay.url, {"room": "bin", "name": "bin"}).connect()
    try:
        sender.emit("message", {"blob": b"\x00\xff"})
        assert sender.disconnected.wait(10)
        assert good.a.call("message", "after") == {"ok": True, "id": ANY_ID}
        good.b.wait_for_payload("received_message", "after")
        assert '"handler_error"' not in relay.log()
    finally:
        sender.close()
        good.close()


@pytest.mark.parametrize("payload", ["\ud800", {"k": ["\udfff"]}])
def test_payload_json_cannot_carry_is_bad_request_not_an_internal_error(relay, payload):
    good = GoodPair(relay.url)
    try:
        assert good.a.call("message", payload) == {"ok": False, "code": "bad_request"}
        assert good.a.wait_for("error")[0]["code"] == "bad_request"
        assert good.a.call("message", "after") == {"ok": True, "id": ANY_ID}
        good.b.wait_for_payload("received_message", "after")
        assert good.b.named("received_message") == ["after"]  # the bad one was not forwarded
        assert '"handler_error"' not in relay.log()
    finally:
        good.close()


class _AnyId:
    def __eq__(self, other):
        return isinstance(other, str) and len(other) >= 16  # opaque, random (no counter)


ANY_ID = _AnyId()


@pytest.mark.timeout(180 + examples())  # ~0.25 s per case, plus the 25 s settle
def test_relay_survives_fuzzing_without_leaks(relay, redis_server):
    url, port = relay.url, relay.port
    good = GoodPair(url).start()
    try:
        warm_up(url, port)
        wait_for(lambda: relay.health()["connections"] == 2, timeout=10, what="warm-up gone")
        baseline = relay.tap.inspect()
        rss_before = rss_kb(relay.proc.pid)

        @settings(
            max_examples=examples(),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(auth=auth, calls=st.lists(st.tuples(event_name, args), min_size=1, max_size=6))
        def fuzz_events(auth, calls):
            STATS["cases"] += 1
            fuzz_connection(url, auth, calls)
            assert_alive(relay)

        @settings(
            max_examples=max(20, examples() // 3),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(frames=st.lists(raw_frame, min_size=1, max_size=6))
        def fuzz_raw(frames):
            STATS["raw_cases"] += 1
            raw_connection(port, frames)
            assert_alive(relay)

        @settings(
            max_examples=max(20, examples() // 3),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(frames=st.lists(ws_frame, min_size=1, max_size=4))
        def fuzz_frames(frames):
            STATS["frame_cases"] += 1
            ws_connection(port, frames)
            assert_alive(relay)

        started = time.monotonic()
        fuzz_events()
        fuzz_raw()
        peak_before_frames = process_status(relay.proc.pid, "VmHWM")
        fuzz_frames()
        frame_peak_growth = process_status(relay.proc.pid, "VmHWM") - peak_before_frames
        elapsed = time.monotonic() - started
        assert relay.get("/healthz")[0] == 200
        good.stop()
        # Every good message arrived, once, in order, while the fuzz was running.
        wait_for(lambda: len(good.received()) >= len(good.sent), timeout=10, what="good pair")
        assert good.received() == good.sent
        assert not good.failures, good.failures[:5]
        assert len(good.sent) > 20

        # No leaked room slot: Redis forgets every fuzz member, fresh pairs fit in every room.
        r = redis.Redis.from_url(redis_server.url, decode_responses=True)
        wait_for(
            lambda: all(r.hlen(room_key(room, "seats")) == 0 for room in FUZZ_ROOMS),
            timeout=10,
            what="fuzz rooms to empty",
        )
        wait_for(lambda: relay.health()["connections"] == 2, timeout=10, what="only 2 left")
        for room in FUZZ_ROOMS:
            x = RelayClient(url, {"room": room, "name": "fresh1"}).connect()
            y = RelayClient(url, {"room": room, "name": "fresh2"}).connect()
            try:
                x.wait_for("KEY_EXCHANGE")
                y.wait_for("KEY_EXCHANGE")
            finally:
                x.close()
                y.close()
        wait_for(
            lambda: all(r.hlen(room_key(room, "seats")) == 0 for room in FUZZ_ROOMS),
            timeout=10,
            what="fresh pairs to leave",
        )

        # Engine.IO's per-socket ping task outlives its socket by up to one ping interval
        # (25 s), and a closed socket leaves Socket.IO's rooms and Engine.IO's table only
        # after its disconnect handler's Redis calls (Redis already shows the seat empty: r10
        # counted the last fresh client there): poll until both are back to the baseline
        # instead of betting on when. A leak stays for the whole minute.
        def per_connection(counts: dict) -> dict:
            return {k: v for k, v in counts.items() if k != "objects"}

        def settled():
            now = relay.tap.inspect()
            grown = now["objects"] - baseline["objects"]
            same = per_connection(now) == per_connection(baseline)
            return now if same and grown < OBJECTS_PER_CASE * cases else None

        cases = STATS["cases"] + STATS["raw_cases"] + STATS["frame_cases"]
        try:
            state = wait_for(settled, timeout=60, interval=2, what="relay objects to settle")
        except TimeoutError:
            state = relay.tap.inspect(types=True)
        rss_after = rss_kb(relay.proc.pid)
        log = relay.log()
        figures = {
            **STATS,
            "baseline": baseline,
            "after": state,
            "good_messages": len(good.sent),
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 1),
            "fuzz_seconds": round(elapsed, 1),
            "frame_fuzz_peak_growth_kb": frame_peak_growth,
            "handler_errors": log.count('"handler_error"'),
        }
        print("\nRELAY FUZZ FIGURES:", json.dumps(figures))
        out = Path(tempfile.gettempdir()) / "parley-soak"
        out.mkdir(parents=True, exist_ok=True)
        (out / "fuzz-relay.json").write_text(json.dumps(figures, indent=2))
        (out / "fuzz-relay.log").write_text(log)
        assert "Traceback" not in log, log[-4000:]
        assert figures["handler_errors"] == 0, log[-4000:]
        assert per_connection(state) == per_connection(baseline), figures
        assert state["objects"] - baseline["objects"] < OBJECTS_PER_CASE * cases, figures
        assert rss_after <= rss_before * RSS_BLOWUP, figures
        assert frame_peak_growth < FRAME_FUZZ_PEAK_KB, figures
    finally:
        good.stop()
        good.close()
