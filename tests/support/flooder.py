"""A flooding Socket.IO client, run in its own process (`python -m tests.support.flooder URL
SECONDS`) so its busy loop cannot steal the measuring process's CPU slices or GIL.

It emits `message` as fast as the socket takes them for at least SECONDS, and keeps going
until it has emitted well over what the relay's default bucket allows in the time it ran
(so the run always exceeds the limit, however slow the machine is). It prints "flooding"
once paired, then one JSON line: emitted, seconds, window_s (when the relay's last answer
came), rate_limited, other_errors, peer_received (what its peer got), and `evicted`.

The relay answers every refused event with an error, which this process reads on a thread
its own busy loop starves of the GIL. Left unchecked, more than the relay's outbound cap
(1 MiB, plus the kernel's buffers) sat unread within about 6 s and the relay dropped the
flooder as a slow consumer (every run on a fresh machine, python-socketio 5.18): the flood
then ended before the good pair's last lines. So the flooder keeps at most
`MAX_UNANSWERED` events without an answer (about 0.4 MB of refusals): it still sends as fast
as the relay can refuse, for the whole run. Should the relay drop it all the same (a stall),
that is the relay defending itself: the flooder stops and reports `evicted: true`.

Used by tests/integration/test_flood_relay.py and bench/flood.py.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import socketio
from socketio.exceptions import BadNamespaceError

# The relay's default limit (PARLEY_RATE_LIMIT=50,200): 50 events/s, burst 200.
DEFAULT_RATE, DEFAULT_BURST = 50, 200
HARD_STOP_S = 60.0  # a flooder slower than the limit gives up rather than run forever
MAX_UNANSWERED = 5_000  # events sent that neither a refusal nor the peer has answered yet


def allowance(seconds: float, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> float:
    """Most events a token bucket can accept over `seconds` (the +1 s covers clock skew)."""
    return burst + rate * (seconds + 1)


def flood(url: str, seconds: float) -> dict:
    """Emit `message` as fast as possible; count what came back."""
    counts = {"rate_limited": 0, "other_errors": 0, "peer_received": 0, "evicted": False}
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

    def on_sender_gone(*_reason):
        counts["evicted"] = True

    sender.on("error", on_error)
    sender.on("disconnect", on_sender_gone)
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
        if counts["evicted"]:
            break
        answered = counts["rate_limited"] + counts["other_errors"] + counts["peer_received"]
        if outgoing.qsize() < 500 and emitted - answered < MAX_UNANSWERED:
            try:
                sender.emit("message", payload)
            except BadNamespaceError:  # dropped before the handler ran
                counts["evicted"] = True
                break
            emitted += 1
        else:
            time.sleep(0.001)
    ran = time.monotonic() - start
    time.sleep(1.0)  # collect the last answers
    evicted = counts["evicted"]  # our own disconnect below fires the handler too
    sender.disconnect()
    peer.disconnect()
    window = (max(seen_at) - start) if seen_at else 0.0
    return {
        "emitted": emitted,
        "seconds": round(ran, 2),
        "window_s": round(window, 2),
        **counts,
        "evicted": evicted,
    }


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="flooding Socket.IO client")
    cli.add_argument("url")
    cli.add_argument("seconds", type=float)
    opts = cli.parse_args()
    print(json.dumps(flood(opts.url, opts.seconds)), flush=True)
