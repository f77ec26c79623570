"""Stored-and-forwarded load for the relay (issue 15): a slice of N pairs, B away while A
sends M messages each (kept in B's mailbox), then every B reconnects and drains its backlog.

bench/storedgen.py runs several of these processes (`--load-procs`), each with its slice of
the pairs (`--first-pair`, `--pairs`), and starts each phase in all of them at one shared
moment; every client is a greenlet. The phases, each begun by a line on stdin holding a
start time (`time.time()`):
1. (before any line) every B joins once with a seat secret (on replica 2) and leaves: its
   seat is reserved; every A connects (replica 1); prints {"phase": "ready"};
2. every A sends M messages of `size` bytes, at most W unacknowledged, each to be acked
   `stored`; prints {"phase": "stored", stored, refused, store_end};
3. every B reconnects (replica 2) at once, receives `stored_message` x M then `mailbox_done`
   and acknowledges in batches of 500 as a client does; prints the part
   tests/support/stored_stats.py merges: one record per client (entries, lost, duplicates,
   out of order, connect to mailbox_done, first entry to mailbox_done, dropped), the phase's
   end and this process's own CPU.
A B that loses its connection stops waiting at once and counts as dropped with what it got
(it used to wait out the whole drain timeout, which read as a drain rate near zero).

Each client skips websocket-client's UTF-8 check of every received text frame (pure Python,
one loop step per byte: about 70 % of a client's receive CPU for 1 kB entries in a py-spy
profile); the relay's frames are what is measured, not the client's validation.

    python -m tests.support.relay_stored_load --url-a URL --url-b URL --tag t --pairs 25
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402
import socketio  # noqa: E402

from tests.support.stored_stats import client_record  # noqa: E402

ACK_BATCH = 500  # entry ids per mailbox_ack, as the client sends them
DRAIN_TIMEOUT = 600.0  # seconds a B waits for mailbox_done (a dropped B stops at once)


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
        self.dropped = ""  # why this client lost its connection ("": it did not)
        self.entries: list = []
        self.first = 0.0  # when the first stored_message arrived

    def on_entry(self, data) -> None:
        if not self.entries:
            self.first = time.perf_counter()
        self.entries.append(data)

    def on_disconnect(self, reason=None) -> None:
        if not self.done.is_set():
            self.dropped = f"disconnected before mailbox_done ({reason})"
            self.done.set()

    def connect(self) -> socketio.Client:
        sio = socketio.Client(
            reconnection=False, websocket_extra_options={"skip_utf8_validation": True}
        )
        sio.on("stored_message", self.on_entry)
        sio.on("mailbox_done", lambda data: self.done.set())
        sio.on("disconnect", self.on_disconnect)
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


def drain(member: Member, expected: int, records: list) -> None:
    """Reconnect, wait for mailbox_done, acknowledge everything in batches; one record."""
    member.done.clear()
    member.entries.clear()
    member.dropped, member.first = "", 0.0
    start = time.perf_counter()
    sio = member.connect()
    member.done.wait(timeout=DRAIN_TIMEOUT)
    end = time.perf_counter()
    dropped = member.dropped or ("" if member.done.is_set() else "no mailbox_done in time")
    ids = [e["id"] for e in member.entries]
    try:
        for i in range(0, len(ids), ACK_BATCH):
            sio.call("mailbox_ack", {"ids": ids[i : i + ACK_BATCH]}, timeout=30)
    except (socketio.exceptions.SocketIOError, OSError):
        dropped = "dropped while acking"  # unacked entries stay: the next join sends them
    seqs = [int(e["payload"].split("|", 1)[0]) for e in member.entries]
    records.append(client_record(seqs, expected, end - start, end - (member.first or end), dropped))


def wait_for_start() -> None:
    """Sleep until the start time read from stdin (read in a thread: the hub keeps answering
    pings meanwhile)."""
    line = gevent.get_hub().threadpool.apply(sys.stdin.readline).strip()
    if not line:
        raise SystemExit("stdin closed before the start time")
    gevent.sleep(max(0.0, float(line) - time.time()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url-a", required=True)
    p.add_argument("--url-b", required=True)
    p.add_argument("--tag", default=secrets.token_hex(3), help="room names' common part")
    p.add_argument("--first-pair", type=int, default=0)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=20)
    args = p.parse_args(argv)
    indices = range(args.first_pair, args.first_pair + args.pairs)
    a_side = [Member(args.url_a, f"st-{args.tag}-{i}", "a") for i in indices]
    b_side = [Member(args.url_b, f"st-{args.tag}-{i}", "b") for i in indices]

    for b in b_side:  # 1. B joins once and leaves: seat reserved
        b.connect()
        b.done.wait(timeout=30)
        b.sio.disconnect()
    for a in a_side:
        a.connect()
    stats = {"stored": 0, "refused": 0}
    print(json.dumps({"phase": "ready"}), flush=True)
    wait_for_start()
    gevent.joinall(
        [gevent.spawn(send_stored, a, args.messages, args.size, args.window, stats) for a in a_side]
    )
    store_end = time.time()
    print(json.dumps({"phase": "stored", **stats, "store_end": store_end}), flush=True)
    for a in a_side:
        a.sio.disconnect()
    wait_for_start()
    records: list = []
    gevent.joinall([gevent.spawn(drain, b, args.messages, records) for b in b_side])
    drain_end = time.time()
    for b in b_side:
        b.sio.disconnect()
    part = {
        "phase": "drained",
        **stats,
        "store_end": store_end,
        "drain_end": drain_end,
        "clients": records,
        "client_cpu_s": cpu_seconds([os.getpid()]),
    }
    print(json.dumps(part), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
