"""Load generator for the relay: N pairs split over two relay URLs, each member sending M
messages of a given size to the other, with at most W of its messages in flight.

Runs in its own process with gevent (every client is a greenlet, not a thread), so it can
drive hundreds of real `socketio.Client`s. Prints one JSON object with the results:
sent, received, lost, duplicates, out_of_order, elapsed, msgs_per_s, send_s, offered_per_s
(the rate it managed to send at), p50_ms, p99_ms (tests/support/load_stats.py).

    python -m tests.support.relay_load --url-a URL --url-b URL --pairs 50 --messages 100
    python -m tests.support.relay_load --urls URL1,URL2,URL3 ...   # pair i: URLi -> URLi+1

Several processes can share one load (bench/relay.py `--load-procs`): each takes a slice of
the pairs (`--first-pair`, `--pairs`) and its share of `--rate`, waits for a start time on
stdin (`--wait-for-go`) and adds its raw samples (`--samples`) for `load_stats.merge`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import socketio  # noqa: E402

from tests.support.load_stats import send_phases, summarize  # noqa: E402


class Side:
    """One client of a pair: sends to its peer, checks what it receives."""

    def __init__(self, url: str, room: str, name: str, token: str | None, stats: dict):
        self.url, self.room, self.name, self.token = url, room, name, token
        self.stats = stats
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("received_message", self.on_message)
        self.received = 0
        self.last_seq = -1
        self.progress = gevent.event.Event()
        self.peer: Side | None = None
        self.sent = 0
        self.last_tx = 0.0  # perf_counter of the last emit
        self.phase = 0.0  # paced: seconds after the start of this sender's first slot

    def connect(self) -> None:
        auth = {"room": self.room, "name": self.name}
        if self.token:
            auth["token"] = self.token
        self.sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=20)

    def on_message(self, data) -> None:
        now = time.perf_counter()
        try:
            seq_text, stamp, _ = data.split("|", 2)
            seq = int(seq_text)
        except (AttributeError, ValueError):
            self.stats["garbled"] += 1
            return
        if seq <= self.last_seq:
            self.stats["duplicates" if seq == self.last_seq else "out_of_order"] += 1
        self.last_seq = max(self.last_seq, seq)
        self.received += 1
        self.stats["latencies"].append(now - float(stamp))
        self.stats["last_rx"] = now
        self.progress.set()

    def send_all(
        self, count: int, size: int, window: int, interval: float = 0.0, phase: float = 0.0
    ) -> None:
        """Send `count` messages; with `interval`, paced at one per `interval` seconds, the
        first `phase` seconds after the start (each sender its own phase, so the senders
        together offer an even stream instead of one burst per interval)."""
        pad = "x" * size
        peer = self.peer
        self.phase = phase
        start = time.perf_counter() + phase
        for seq in range(count):
            if interval:
                gevent.sleep(max(0.0, start + seq * interval - time.perf_counter()))
            while self.sent - peer.received >= window:
                peer.progress.clear()
                peer.progress.wait(5)
            head = f"{seq}|{time.perf_counter():.6f}|"
            self.sio.emit("message", head + pad[len(head) :])
            self.sent += 1
            self.last_tx = time.perf_counter()


def wait_for_go() -> None:
    """Say the pairs are connected, then wait for the caller's line on stdin. A line holding
    a number is a start time (`time.time()`) shared by several generators: sleep until it."""
    print(json.dumps({"phase": "connected"}), flush=True)
    line = sys.stdin.readline().strip()
    try:
        start_at = float(line)
    except ValueError:
        return  # a plain "go": start now
    gevent.sleep(max(0.0, start_at - time.time()))


def run(args) -> dict:
    stats = {"latencies": [], "duplicates": 0, "out_of_order": 0, "garbled": 0, "last_rx": 0.0}
    pairs = []
    # --urls: pair i's members on replicas i and i+1 (mod n), so with n > 1 every message
    # crosses replicas and every replica carries the same share; one URL: both on it.
    urls = args.urls.split(",") if args.urls else [args.url_a, args.url_b]
    n = len(urls)
    for i in range(args.first_pair, args.first_pair + args.pairs):
        url_a, url_b = (urls[i % n], urls[(i + 1) % n]) if args.urls else urls
        a = Side(url_a, f"load-{args.tag}-{i}", "a", args.token, stats)
        b = Side(url_b, f"load-{args.tag}-{i}", "b", args.token, stats)
        a.peer, b.peer = b, a
        pairs.append((a, b))
    sides = [s for p in pairs for s in p]
    # Connect in modest batches: a connect storm is not what we measure.
    for start in range(0, len(sides), 20):
        gevent.joinall(
            [gevent.spawn(s.connect) for s in sides[start : start + 20]], raise_error=True
        )
    time.sleep(args.settle)
    if args.wait_for_go:
        # The caller prepares the scene (e.g. stalls Redis) and then writes one line.
        wait_for_go()
    t0 = time.perf_counter()
    # --rate: the offered load in messages per second over all senders (0: as fast as allowed).
    interval = len(sides) / args.rate if args.rate else 0.0
    phases = send_phases(
        interval,
        2 * args.first_pair,
        len(sides),
        2 * (args.all_pairs or args.first_pair + args.pairs),
    )
    senders = [
        gevent.spawn(s.send_all, args.messages, args.size, args.window, interval, phase)
        for s, phase in zip(sides, phases, strict=True)
    ]
    gevent.joinall(senders, raise_error=True)
    expected = len(sides) * args.messages
    deadline_idle = args.idle_timeout
    last_total, last_change = -1, time.monotonic()
    while True:
        total = sum(s.received for s in sides)
        if total >= expected:
            break
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > deadline_idle:
            break
        time.sleep(0.05)
    received = sum(s.received for s in sides)
    for s in sides:
        with contextlib.suppress(Exception):  # best effort at the end of a run
            s.sio.disconnect()
    return {
        "sent": sum(s.sent for s in sides),
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "duplicates": stats["duplicates"],
        "out_of_order": stats["out_of_order"],
        "garbled": stats["garbled"],
        "latencies": stats["latencies"],
        "elapsed": (stats["last_rx"] or time.perf_counter()) - t0,
        # Each message owns one send slot of `interval` seconds: a sender on time spans
        # exactly messages x interval, so sent / send_s is the offered rate when kept up.
        "send_s": max((s.last_tx - (t0 + s.phase) + interval for s in sides), default=0.0)
        if args.messages
        else 0.0,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url-a")
    p.add_argument("--url-b")
    p.add_argument("--urls", help="comma-separated relay URLs instead of --url-a/--url-b")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument(
        "--first-pair", type=int, default=0, help="index of the first pair (rooms, replicas)"
    )
    p.add_argument(
        "--all-pairs", type=int, default=0,
        help="pairs over all the generators sharing the load (paced phases; default: this one's)",
    )  # fmt: skip
    p.add_argument("--messages", type=int, default=100)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=20, help="max in-flight messages per sender")
    p.add_argument("--token", default=None)
    p.add_argument("--tag", default="x", help="room name prefix, to keep runs apart")
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--idle-timeout", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=0.0, help="offered msgs/s in total (0: unpaced)")
    p.add_argument(
        "--wait-for-go",
        action="store_true",
        help='print {"phase": "connected"} once paired, send after a line on stdin',
    )
    p.add_argument(
        "--samples", action="store_true", help='add the raw result ("raw": every sample)'
    )
    args = p.parse_args(argv)
    if not args.urls and not (args.url_a and args.url_b):
        p.error("give --url-a and --url-b, or --urls")
    raw = run(args)
    result = summarize(raw)
    if args.samples:
        result["raw"] = raw
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
