"""Idle-connection benchmark: RSS per idle websocket and live-pair latency beside them.

For parley-relay and the Node baseline (socket.io 4 + @socket.io/redis-adapter, see
bench/baselines.py), one after the other in this process tree, each as one replica on one
redis-server:

1. start the relay (open-file limit raised to hold N sockets), run a few live pairs through it
   (warm-up, and their latency with no idle connection) and read its RSS; the live senders
   offer `--rate` msg/s together (default 200), evenly paced, so their latency is the
   relay's and not a closed loop's queue (`--rate 0 --window W` for that);
2. open N idle websockets (bench/idle_client.py: raw sockets, Engine.IO + Socket.IO handshake,
   then only pong) from several 127.0.0.x source addresses, wait, read the RSS again;
3. run the live pairs again: their p50/p99 with the N idle connections present.

It also counts parley-relay's `fenced` log lines (a lease renewal held up for two thirds of
the heartbeat TTL, `--heartbeat-seconds`: the relay drops every client) and exits 1 if there
was one; the suite checks the lease loop's independence with a reconciliation held back on
purpose (tests/integration/test_relay_lease.py), this is where its cost at scale shows.

RSS per connection = (RSS with N idle - RSS before) / N. Last line:
    idle_kb_per_conn=<x> node_idle_kb_per_conn=<x> ratio_vs_node=<x> p99_ms=<x> node_p99_ms=<x>

    python bench/idle.py -n 2000
    python bench/idle.py -n 10000 --only parley
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from baselines import start_node_relays  # noqa: E402
from loadgen import PACED_WINDOW  # noqa: E402

from tests.support.servers import RedisServer, RelayProcess  # noqa: E402

# File descriptors each relay gets beyond the N idle sockets (live pairs, Redis, logs).
FD_HEADROOM = 1024
# After the last idle client connected: time for the relay to settle (buffers, GC) before RSS.
SETTLE_SECONDS = 3.0
# The live pairs (defaults of --pairs, --rate): 5 pairs offering 200 msg/s together, so
# each of the 10 senders sends one message every 50 ms.
LIVE_PAIRS = 5
LIVE_RATE = 200.0


def rss_kb(pid: int) -> int:
    """Resident set size of a process in kB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def live_pairs(url: str, args, tag: str) -> dict:
    """A few live pairs on the relay (both members on it); their latency figures. Paced
    (`--rate`), each message's latency is the relay's; unpaced (`--rate 0`), every sender
    keeps `--window` messages in flight and the latency is that closed loop's queue."""
    window = PACED_WINDOW if args.rate else args.window
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.relay_load",
            *("--url-a", url, "--url-b", url),
            *("--pairs", str(args.pairs), "--messages", str(args.messages)),
            *("--size", "1024", "--window", str(window), "--tag", tag),
            *("--rate", str(args.rate)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_relay(kind: str, redis_url: str, n: int, heartbeat: float):
    nofile = min(n + FD_HEADROOM, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    if kind == "node":
        return start_node_relays(redis_url, count=1, nofile=nofile)[0]
    return RelayProcess(
        redis_url=redis_url,
        nofile=nofile,
        env={
            "PARLEY_MAX_CONNECTIONS": str(n + FD_HEADROOM // 2),
            # Thousands of handshakes at once on a loaded machine: give each time to finish.
            "PARLEY_CONNECT_TIMEOUT": "120",
            "PARLEY_HEADER_TIMEOUT": "120",
        },
        extra_args=["--rate-limit", "1000000,1000000", "--log-level", "WARNING"]
        + ["--heartbeat-seconds", str(heartbeat)],
    ).start()


def measure(kind: str, redis_url: str, args) -> dict:
    """One relay: RSS before/after N idle connections, live-pair latency without/with."""
    relay = start_relay(kind, redis_url, args.n, args.heartbeat_seconds)
    clients = None
    fenced = 0
    try:
        quiet = live_pairs(relay.url, args, f"{kind}-warm")
        time.sleep(1.0)
        before = rss_kb(relay.proc.pid)
        started = time.monotonic()
        clients = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "idle_client.py"), "--url", relay.url]
            + ["-n", str(args.n), "--prefix", f"{kind}-idle"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        report = json.loads(clients.stdout.readline() or "{}")
        opened = time.monotonic() - started
        if not report.get("connected"):
            raise RuntimeError(f"{kind}: no idle client connected: {report}")
        time.sleep(SETTLE_SECONDS)
        after = rss_kb(relay.proc.pid)
        loaded = live_pairs(relay.url, args, f"{kind}-live")
        still = rss_kb(relay.proc.pid)
        if kind == "parley":
            fenced = relay.log().count('"fenced"')
    finally:
        if clients is not None:
            clients.stdin.close()
            clients.wait(timeout=30)
        relay.cleanup()
    per_conn = (after - before) / report["connected"]
    return {
        "kind": kind,
        "connected": report["connected"],
        "failed": report["failed"],
        "first_error": report.get("first_error"),
        "open_s": round(opened, 1),
        "rss_before_kb": before,
        "rss_idle_kb": after,
        "rss_after_live_kb": still,
        "kb_per_conn": round(per_conn, 2),
        "quiet_p50_ms": quiet["p50_ms"],
        "quiet_p99_ms": quiet["p99_ms"],
        "p50_ms": loaded["p50_ms"],
        "p99_ms": loaded["p99_ms"],
        "lost": quiet["lost"] + loaded["lost"],
        "fenced": fenced,
    }


def describe(r: dict) -> str:
    failed = f" ({r['failed']} failed: {r['first_error']})" if r["failed"] else ""
    return (
        f"{r['kind']:7s} {r['connected']} idle in {r['open_s']} s{failed}: RSS "
        f"{r['rss_before_kb'] / 1024:.1f} -> {r['rss_idle_kb'] / 1024:.1f} MB = "
        f"{r['kb_per_conn']:.1f} kB/conn; live pairs p50/p99 {r['quiet_p50_ms']:.2f}/"
        f"{r['quiet_p99_ms']:.2f} ms alone, {r['p50_ms']:.2f}/{r['p99_ms']:.2f} ms beside "
        f"the idle ones; lost {r['lost']}" + (f"; FENCED {r['fenced']}x" if r["fenced"] else "")
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="RSS per idle websocket, parley vs node")
    p.add_argument("-n", type=int, default=2000, help="idle connections")
    p.add_argument("--pairs", type=int, default=LIVE_PAIRS, help="live pairs")
    p.add_argument("--messages", type=int, default=100, help="messages per live member")
    p.add_argument(
        "--rate", type=float, default=LIVE_RATE,
        help="msg/s offered by all the live senders together, evenly paced (0: unpaced)",
    )  # fmt: skip
    p.add_argument(
        "--window", type=int, default=1, help="in-flight messages per live sender (--rate 0)"
    )
    p.add_argument(
        "--heartbeat-seconds", type=float, default=15.0,
        help="parley-relay's lease TTL (its default 15; renewals every third of it)",
    )  # fmt: skip
    p.add_argument("--only", choices=("parley", "node"), default=None)
    args = p.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the children
    if args.n + FD_HEADROOM > hard:
        print(f"note: open-file hard limit {hard} < N + {FD_HEADROOM}; relays get {hard}")
    kinds = [args.only] if args.only else ["parley", "node"]
    pace = f"{args.rate:.0f} msg/s offered" if args.rate else f"unpaced, window {args.window}"
    print(
        f"idle bench: {args.n} idle websockets + {args.pairs} live pairs ({pace}), one replica each"
    )
    redis_server = RedisServer().start()
    results = {}
    try:
        for kind in kinds:
            results[kind] = measure(kind, redis_server.url, args)
            print(describe(results[kind]), flush=True)
    finally:
        redis_server.cleanup()
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    ours, node = results.get("parley"), results.get("node")
    fields = []
    if ours:
        fields.append(f"idle_kb_per_conn={ours['kb_per_conn']:.2f}")
    if node:
        fields.append(f"node_idle_kb_per_conn={node['kb_per_conn']:.2f}")
    if ours and node:
        fields.append(f"ratio_vs_node={ours['kb_per_conn'] / max(node['kb_per_conn'], 1e-9):.2f}")
    if ours:
        fields.append(f"p99_ms={ours['p99_ms']:.2f}")
    if node:
        fields.append(f"node_p99_ms={node['p99_ms']:.2f}")
    if ours:
        fields.append(f"fenced={ours['fenced']}")
    print(" ".join(fields))
    if ours and ours["fenced"]:
        print(f"error: parley-relay fenced itself {ours['fenced']} time(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
