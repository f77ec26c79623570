"""A flooding Socket.IO client, run in its own process (`python -m tests.support.flooder URL
SECONDS`) so its busy loop cannot steal the measuring process's CPU slices or GIL.

It emits `message` as fast as the socket takes them for at least SECONDS, and keeps going
until it has emitted well over what the relay's default bucket allows in the time it ran
(so the run always exceeds the limit, however slow the machine is). It prints "flooding"
once paired, then one JSON line: emitted, seconds, window_s (when the relay's last answer
came), rate_limited, other_errors, peer_received (what its peer got).

Used by tests/integration/test_flood_relay.py and bench/flood.py.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import socketio

# The relay's default limit (PARLEY_RATE_LIMIT=50,200): 50 events/s, burst 200.
DEFAULT_RATE, DEFAULT_BURST = 50, 200
HARD_STOP_S = 60.0  # a flooder slower than the limit gives up rather than run forever


def allowance(seconds: float, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> float:
    """Most events a token bucket can accept over `seconds` (the +1 s covers clock skew)."""
    return burst + rate * (seconds + 1)


def flood(url: str, seconds: float) -> dict:
    """Emit `message` as fast as possible; count what came back."""
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
    payload = "f" * 200
    outgoing = sender.eio.queue  # as fast as the socket takes them, not into an endless queue
    while True:
        ran = time.monotonic() - start
        if ran > HARD_STOP_S or (ran >= seconds and emitted > 2 * allowance(ran)):
            break
        if outgoing.qsize() < 500:
            sender.emit("message", payload)
            emitted += 1
        else:
            time.sleep(0.001)
    ran = time.monotonic() - start
    time.sleep(1.0)  # collect the last answers
    sender.disconnect()
    peer.disconnect()
    window = (max(seen_at) - start) if seen_at else 0.0
    return {"emitted": emitted, "seconds": round(ran, 2), "window_s": round(window, 2), **counts}


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="flooding Socket.IO client")
    cli.add_argument("url")
    cli.add_argument("seconds", type=float)
    opts = cli.parse_args()
    print(json.dumps(flood(opts.url, opts.seconds)), flush=True)
