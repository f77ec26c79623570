"""Stored-and-forwarded load for the relay (issue 15): N pairs, B away while A sends M
messages each (kept in B's mailbox), then every B reconnects at once and drains its backlog.

Runs in its own process with gevent (every client a greenlet). Phases:
1. every B joins once with a seat secret (on replica 2) and leaves: its seat is reserved;
2. every A (replica 1) sends M messages of `size` bytes, at most W unacknowledged; each must
   be acked `stored`; CPU of the given pids (relays + Redis) is measured over this phase;
3. every B reconnects (replica 2) at the same moment, receives `stored_message` x M then
   `mailbox_done`, and acknowledges in batches of 500 as a client does; measured per client
   (connect to mailbox_done) and the CPU of the pids over the phase.
Prints one JSON object: stored, stored_s, cpu_us_per_stored, drained, lost, out_of_order,
drain_msgs_per_s_per_client (median, min: connect to mailbox_done), stream_msgs_per_s_per_client
(first stored_message to mailbox_done), drain_s (slowest client), cpu_us_per_drained and the
load generator's own CPU (all clients run in this one process: on a small machine it is
often the bottleneck).

    python -m tests.support.relay_stored_load --url-a URL --url-b URL --pids 1,2,3
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402
import socketio  # noqa: E402

ACK_BATCH = 500


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes, from /proc (Linux)."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Member:
    """A seat owner (secret + instance) that can connect several times."""

    def __init__(self, url: str, room: str, name: str):
        self.url, self.room, self.name = url, room, name
        self.secret, self.instance = secrets.token_hex(32), secrets.token_hex(16)
        self.sio: socketio.Client | None = None
        self.done = gevent.event.Event()
        self.entries: list = []
        self.first = 0.0  # when the first stored_message arrived

    def on_entry(self, data) -> None:
        if not self.entries:
            self.first = time.perf_counter()
        self.entries.append(data)

    def connect(self) -> socketio.Client:
        sio = socketio.Client(reconnection=False)
        sio.on("stored_message", self.on_entry)
        sio.on("mailbox_done", lambda data: self.done.set())
        auth = {"room": self.room, "name": self.name, "secret": self.secret}
        auth["instance"] = self.instance
        sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=30)
        self.sio = sio
        return sio


def send_stored(member: Member, count: int, size: int, window: int, stats: dict) -> None:
    """Send `count` messages with at most `window` unacknowledged; count the stored acks."""
    slots = gevent.lock.BoundedSemaphore(window)
    pad = "x" * max(0, size - 16)

    def acked(ack):
        if isinstance(ack, dict) and ack.get("stored"):
            stats["stored"] += 1
        else:
            stats["refused"] += 1
        slots.release()

    for seq in range(count):
        slots.acquire()
        member.sio.emit("message", f"{seq}|{pad}", callback=acked)
    for _ in range(window):
        slots.acquire()


def drain(member: Member, timings: list) -> None:
    """Reconnect, wait for mailbox_done, acknowledge everything in batches."""
    member.done.clear()
    member.entries.clear()
    start = time.perf_counter()
    sio = member.connect()
    member.done.wait(timeout=300)
    end = time.perf_counter()
    # (entries, connect to mailbox_done, first entry to mailbox_done)
    timings.append((len(member.entries), end - start, end - (member.first or end)))
    ids = [e["id"] for e in member.entries]
    try:
        for i in range(0, len(ids), ACK_BATCH):
            sio.call("mailbox_ack", {"ids": ids[i : i + ACK_BATCH]}, timeout=30)
    except (socketio.exceptions.SocketIOError, OSError):
        timings[-1] = (*timings[-1], "disconnected")  # reported as lost entries


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url-a", required=True)
    p.add_argument("--url-b", required=True)
    p.add_argument("--pids", required=True, help="comma list: relays + redis-server")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=20)
    args = p.parse_args(argv)
    pids = [int(x) for x in args.pids.split(",")]
    tag = secrets.token_hex(3)
    a_side = [Member(args.url_a, f"st-{tag}-{i}", "a") for i in range(args.pairs)]
    b_side = [Member(args.url_b, f"st-{tag}-{i}", "b") for i in range(args.pairs)]

    for b in b_side:  # 1. B joins once and leaves: seat reserved
        b.connect()
        b.done.wait(timeout=30)
        b.sio.disconnect()
    for a in a_side:
        a.connect()
    stats = {"stored": 0, "refused": 0}
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    gevent.joinall(
        [gevent.spawn(send_stored, a, args.messages, args.size, args.window, stats) for a in a_side]
    )
    stored_s, cpu_store = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
    for a in a_side:
        a.sio.disconnect()

    timings: list = []
    cpu1, t1 = cpu_seconds(pids), time.perf_counter()
    gevent.joinall([gevent.spawn(drain, b, timings) for b in b_side])
    drain_s, cpu_drain = time.perf_counter() - t1, cpu_seconds(pids) - cpu1
    lost = out_of_order = 0
    for b in b_side:
        seqs = [int(e["payload"].split("|", 1)[0]) for e in b.entries]
        lost += args.messages - len(set(seqs))
        out_of_order += sum(1 for x, y in zip(seqs, seqs[1:], strict=False) if y <= x)
        b.sio.disconnect()
    rates = [t[0] / t[1] for t in timings if t[1] > 0]
    stream_rates = [t[0] / t[2] for t in timings if t[2] > 0]
    drained = sum(t[0] for t in timings)
    dropped = sum(1 for t in timings if len(t) > 3)
    print(
        json.dumps(
            {
                "stored": stats["stored"],
                "refused": stats["refused"],
                "stored_s": round(stored_s, 2),
                "store_msgs_per_s": round(stats["stored"] / stored_s, 1),
                "cpu_us_per_stored": round(cpu_store * 1e6 / max(1, stats["stored"]), 1),
                "drained": drained,
                "lost": lost,
                "out_of_order": out_of_order,
                "drain_s": round(drain_s, 2),
                "drain_msgs_per_s_per_client_median": round(statistics.median(rates), 1),
                "drain_msgs_per_s_per_client_min": round(min(rates), 1),
                "stream_msgs_per_s_per_client_median": round(statistics.median(stream_rates), 1),
                "client_cpu_s": round(cpu_seconds([os.getpid()]), 1),
                "clients_dropped": dropped,
                "cpu_us_per_drained": round(cpu_drain * 1e6 / max(1, drained), 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
