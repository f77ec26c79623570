"""The relay-bounds attacks of issue 12, run against a live relay in the middle of the soak.

Each attack is what an outsider who knows a room name can do to a replica that serves the
soak's pairs; each returns an `Attack` saying whether the relay refused it as it must, and
by how much the relay's peak RSS (VmHWM) grew meanwhile, against the same process's peak
just before (a same-run baseline; the bound is generous, the fixed relay adds a few MB):

* oversized_frame: a 200 MB text frame right after the upgrade, no CONNECT -> close 1009;
* fragment_flood: 1 MB continuation frames (200 MB announced) -> close 1009;
* slow_reader: a peer that never reads while its room-mate floods it -> disconnected
  (`slow_consumer`), the flooder is told `peer_left`;
* seat_by_name: a stranger joins a live pair's room under a member's name, without and with
  a secret of its own -> `room_full` both times (the pair must notice nothing: effects.py);
* binary: a Socket.IO binary event announcing a million attachments -> closed at once
  (`BinaryRefused`), no attachment kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import socketio

from tests.support.rawws import (
    OP_BINARY,
    OP_CONT,
    OP_TEXT,
    RawWs,
    frame,
    frame_header,
    process_status,
    text,
)
from tests.support.relay_clients import RelayClient, new_instance, new_secret, seat_auth

# What one attack may add to the relay's peak RSS; the same bound as the integration tests
# (tests/integration/test_relay_frames.py, docs/reliability.md). Before the fixes the
# 200 MB frame alone added about 1 GB.
ATTACK_RSS_BOUND_KB = 50 * 1024
MB = 1 << 20
SLOW_BLOB = "s" * 60_000  # one flood message: under the 64 KiB payload limit
SLOW_MAX_SENDS = 600  # 36 MB offered: far past the 1 MiB outbound cap plus kernel buffers
ATTACKS = ("oversized_frame", "fragment_flood", "slow_reader", "seat_by_name", "binary")


@dataclass(frozen=True)
class Attack:
    """What one attack did: `refused` is the relay's required answer, as observed."""

    name: str
    refused: bool
    growth_kb: int
    detail: str

    @property
    def bounded(self) -> bool:
        return self.growth_kb < ATTACK_RSS_BOUND_KB


def peak_kb(relay) -> int:
    return process_status(relay.proc.pid, "VmHWM")


def _log_count(relay, needle: str) -> int:
    return relay.log().count(needle)


def _push(ws: RawWs, pieces) -> threading.Thread:
    """Send every piece until the relay stops taking them (it closes the connection)."""

    def run():
        with contextlib.suppress(OSError):
            for piece in pieces:
                ws.sock.sendall(piece)

    t = threading.Thread(target=run, daemon=True, name="bounds-sender")
    t.start()
    return t


def _closed_with(ws: RawWs, pieces) -> tuple[int | None, bool]:
    sender = _push(ws, pieces)
    try:
        code = ws.close_code(timeout=30)
    except TimeoutError:
        code = None
    closed = ws.closed_by_peer(timeout=15)
    sender.join(30)
    return code, closed


def oversized_frame(relay) -> tuple[bool, str]:
    ws = RawWs(relay.port)
    try:
        code, closed = _closed_with(ws, [frame_header(OP_TEXT, 200 * MB)] + [b"\0" * MB] * 200)
    finally:
        ws.close()
    return code == 1009 and closed, f"close={code} tcp_closed={closed}"


def fragment_flood(relay) -> tuple[bool, str]:
    ws = RawWs(relay.port)
    try:
        answer = ws.connect_sio('{"room":"bounds-frag","name":"frag"}')
        chunk = b"x" * MB
        pieces = [frame(OP_TEXT, chunk, fin=False)] + [frame(OP_CONT, chunk, fin=False)] * 199
        code, closed = _closed_with(ws, pieces)
    finally:
        ws.close()
    return answer.startswith("40") and code == 1009 and closed, f"close={code} tcp_closed={closed}"


def binary(relay) -> tuple[bool, str]:
    before = _log_count(relay, '"error": "BinaryRefused"')
    ws = RawWs(relay.port)
    try:
        ws.connect_sio('{"room":"bounds-bin","name":"bin"}')
        pieces = [text('45999999-["message",{"_placeholder":true,"num":0}]')]
        pieces += [frame(OP_BINARY, b"\x04" + b"\0" * (MB - 1))] * 100
        # The close frame may be lost to the reset of a connection still receiving
        # megabytes: the closed connection and the log line are the evidence.
        _code, closed = _closed_with(ws, pieces)
    finally:
        ws.close()
    logged = _log_count(relay, '"error": "BinaryRefused"') > before
    return closed and logged, f"tcp_closed={closed} logged={logged}"


def slow_reader(relay) -> tuple[bool, str]:
    before = _log_count(relay, '"event": "slow_consumer"')
    flooder = RelayClient(relay.url, {"room": "bounds-slow", "name": "flooder"})
    slow = RawWs(relay.port, rcvbuf=4096)  # a tiny receive window, and it never reads
    sent = 0
    try:
        flooder.connect()
        slow.connect_sio('{"room":"bounds-slow","name":"sleeper"}')
        flooder.wait_for("KEY_EXCHANGE")
        while sent < SLOW_MAX_SENDS and not flooder.named("peer_left"):
            flooder.emit("message", SLOW_BLOB)
            sent += 1
            if sent % 50 == 0:
                time.sleep(0.2)  # within the rate limit's burst, not mostly refused
        told = bool(flooder.wait_for("peer_left", timeout=60))
        closed = slow.closed_by_peer(timeout=15)
    except (AssertionError, ConnectionError, OSError, socketio.exceptions.ConnectionError) as e:
        return False, f"{type(e).__name__}: {e}"[:300]
    finally:
        slow.close()
        flooder.close()
    logged = _log_count(relay, '"event": "slow_consumer"') > before
    return told and closed and logged, f"sent={sent} closed={closed} logged={logged}"


def seat_by_name(relay, room: str, victim: str) -> tuple[bool, str]:
    codes = []
    for auth in (
        {"room": room, "name": victim},  # the original client's way: no secret
        seat_auth(room, victim, new_secret(), new_instance()),  # a secret of its own
    ):
        stranger = RelayClient(relay.url, auth)
        try:
            err = stranger.try_connect()
            codes.append(err.get("data", {}).get("code") if isinstance(err, dict) else err)
        except AssertionError as e:  # accepted: the break this guards against
            codes.append(f"accepted ({e})")
        finally:
            stranger.close()
    return codes == ["room_full", "room_full"], f"codes={codes}"


def _answers(relay, timeout: float = 20.0) -> bool:
    """`/healthz` answers 200 within `timeout` (a loaded machine may be slow to answer,
    which is not what is checked here; a relay the attack broke never does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if relay.get("/healthz")[0] == 200:
            return True
        time.sleep(0.5)
    return False


def run_attack(name: str, relay, *, room: str = "", victim: str = "") -> Attack:
    """Run one attack against `relay`; never raises (a crash counts as not refused)."""
    time.sleep(0.3)  # let the previous attack's buffers go before the baseline
    before = peak_kb(relay)
    try:
        if name == "seat_by_name":
            refused, detail = seat_by_name(relay, room, victim)
        else:
            refused, detail = {
                "oversized_frame": oversized_frame,
                "fragment_flood": fragment_flood,
                "slow_reader": slow_reader,
                "binary": binary,
            }[name](relay)
    except Exception as e:  # noqa: BLE001 - reported in the soak's figures
        refused, detail = False, f"{type(e).__name__}: {e}"[:300]
    healthy = _answers(relay)
    growth = peak_kb(relay) - before
    return Attack(name, refused and healthy, growth, f"{detail} healthz_ok={healthy}")
