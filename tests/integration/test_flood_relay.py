"""A flooding client is rate-limited while a well-behaved pair on the same replica stays fast.

The flooder runs in its own process (`python -m tests.integration.test_flood_relay`) so its
busy loop cannot steal the measuring process's CPU time slices or GIL: it emits `message` as
fast as a Socket.IO client can and counts the `rate_limited` errors it gets back. Meanwhile a
good pair on the same relay replica exchanges 300 messages and the test asserts their p99
one-way latency (sender's emit -> receiver's handler, same clock) is under 100 ms.

This asserts a latency bound under load on purpose: it is the acceptance criterion of the
reliability issue. 300 samples keep one unlucky scheduler hiccup from deciding the p99.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import socketio

from tests.support.servers import wait_for

REPO = Path(__file__).resolve().parents[2]
SAMPLES = 300
P99_LIMIT_S = 0.100


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]


class Receiver:
    """A raw socketio.Client that timestamps every received_message on arrival."""

    def __init__(self, url: str, room: str, name: str):
        self.arrivals: list[tuple[str, float]] = []
        self.key_exchange = threading.Event()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("received_message", self._on_message)
        self.sio.on("KEY_EXCHANGE", lambda *_: self.key_exchange.set())
        self.sio.connect(url, auth={"room": room, "name": name}, transports=["websocket"])

    def _on_message(self, data):
        self.arrivals.append((data, time.perf_counter()))


def test_flooder_is_rate_limited_while_good_pair_keeps_p99_under_100ms(relay_factory, redis_server):
    relay = relay_factory(redis_server.url)  # default limit: 50 events/s, burst 200
    alice = Receiver(relay.url, "calm", "alice")
    bob = Receiver(relay.url, "calm", "bob")
    flooder = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_flood_relay", relay.url, "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    try:
        assert alice.key_exchange.wait(10) and bob.key_exchange.wait(10)
        assert flooder.stdout.readline().strip() == "flooding", flooder.stderr.read()
        time.sleep(1.0)  # let the flood reach its steady state first
        sent_at: dict[str, float] = {}
        for i in range(SAMPLES):
            text = f"calm-{i}"
            sent_at[text] = time.perf_counter()
            alice.sio.emit("message", text)
            time.sleep(0.025)  # 40/s: inside the default limit of 50/s
        wait_for(lambda: len(bob.arrivals) >= SAMPLES, timeout=10, what="good pair messages")
        out, err = flooder.communicate(timeout=30)
    finally:
        if flooder.poll() is None:
            flooder.kill()
        alice.sio.disconnect()
        bob.sio.disconnect()
    flood = json.loads(out.strip().splitlines()[-1])
    latencies = [at - sent_at[text] for text, at in bob.arrivals]
    figures = {
        "samples": len(latencies),
        "p50_ms": round(1000 * sorted(latencies)[len(latencies) // 2], 2),
        "p99_ms": round(1000 * p99(latencies), 2),
        "max_ms": round(1000 * max(latencies), 2),
        **flood,
    }
    print("\nFLOOD FIGURES:", json.dumps(figures))
    assert [text for text, _ in bob.arrivals] == list(sent_at)  # all, once, in order
    # The flooder was throttled: most of what the relay handled from it was refused, and its
    # peer only ever received what the bucket allows (burst 200 + 50/s over the flood).
    handled = flood["rate_limited"] + flood["peer_received"]
    assert flood["rate_limited"] > 0.5 * handled, flood
    assert flood["peer_received"] <= 200 + 50 * (flood["window_s"] + 1), flood
    assert figures["p99_ms"] < P99_LIMIT_S * 1000, figures
    assert relay.get("/healthz")[0] == 200


def flood(url: str, seconds: float) -> dict:
    """Emit `message` as fast as possible for `seconds`; count what came back."""
    counts = {"rate_limited": 0, "other_errors": 0, "peer_received": 0}
    seen_at: list[float] = []  # when the relay's answers arrived: the window it handled us
    ready = threading.Event()
    sender = socketio.Client(reconnection=False)
    peer = socketio.Client(reconnection=False)

    def on_error(data):
        code = data.get("code") if isinstance(data, dict) else None
        counts["rate_limited" if code == "rate_limited" else "other_errors"] += 1
        seen_at.append(time.monotonic())

    def on_peer_message(_data):
        counts["peer_received"] += 1
        seen_at.append(time.monotonic())

    sender.on("error", on_error)
    sender.on("KEY_EXCHANGE", lambda *_: ready.set())
    peer.on("received_message", on_peer_message)
    sender.connect(url, auth={"room": "flood", "name": "flooder"}, transports=["websocket"])
    peer.connect(url, auth={"room": "flood", "name": "victim"}, transports=["websocket"])
    ready.wait(10)
    print("flooding", flush=True)
    emitted = 0
    start = time.monotonic()
    end = start + seconds
    payload = "f" * 200
    outgoing = sender.eio.queue  # as fast as the socket takes them, not into an endless queue
    while time.monotonic() < end:
        if outgoing.qsize() < 500:
            sender.emit("message", payload)
            emitted += 1
        else:
            time.sleep(0.001)
    time.sleep(1.0)  # collect the last answers
    sender.disconnect()
    peer.disconnect()
    window = (max(seen_at) - start) if seen_at else 0.0
    return {"emitted": emitted, "seconds": seconds, "window_s": round(window, 2), **counts}


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="flooding Socket.IO client for the flood test")
    cli.add_argument("url")
    cli.add_argument("seconds", type=float)
    opts = cli.parse_args()
    print(json.dumps(flood(opts.url, opts.seconds)), flush=True)
