"""Relay benchmark: Parley's relay against Node's socket.io (or a bare python-socketio relay).

One redis-server; for each replica count of `--replicas` (default 2), that many replicas of
Parley's relay and of the baseline, on free ports, cleaned up at the end. N pairs of real
Socket.IO clients (tests/support/relay_load.py, gevent, split over `--load-procs` processes,
default 2, that begin sending at one shared moment and whose results merge as one process's
would: bench/loadgen.py) send 1 kB messages with at most W in flight; pair i's members sit
on replicas i and i+1, so with 2+ replicas every message crosses replicas through Redis.
Rounds alternate between Parley and the baseline so machine noise hits both alike; the best
round of each counts.

Measured, each for Parley and the baseline in the same run:
* CPU per forwarded message: user+system CPU of the relay replicas AND of redis-server
  during the round, divided by the messages received (the cost a deployment pays);
* paced latency (`--rate`, default 1,000 msg/s offered for `--rate-seconds`): p50/p99, and
  the rate the load was actually sent at; below 90 % of the offered rate one line says the
  run is NOT VALID and the last line's p50/p99 are `na` (an overloaded generator measures
  its own backlog, not the relay);
* the fan-out tax: two more replicas holding no bench member listen while the pairs send a
  paced load; their CPU per forwarded message (Parley routes by seat: target <= 10 us);
* with `--idle N`: RSS per idle websocket on one replica (bench/idle.py's measurement).

    python bench/relay.py                      # 50 pairs x 200 messages, 2 rounds, vs Node
    python bench/relay.py --quick              # 10 pairs x 50 messages, 1 round
    python bench/relay.py --replicas 1,2,4     # the sweep: CPU per message per replica count
    python bench/relay.py --rate 1000 --idle 2000 --baseline python
    python bench/relay.py --cluster            # Redis Cluster sweep 1, 2, 4 (bench/cluster.py)

The last line is always (a value this run did not measure is `na`):
    cpu_us_per_msg=<x> node_cpu_us_per_msg=<x> ratio_vs_node=<x> p50_ms=<x> p99_ms=<x>
    idle_kb_per_conn=<x> fanout_tax_us=<x>      (one line)
cpu/p50/p99 are Parley's at 2 replicas (else the first count given); the node_ and ratio_
fields need `--baseline node` (the default); p50/p99 are `na` when the paced run fell behind.

Stored-and-forwarded mode (issue 15, offline delivery): 50 pairs, B away while A sends
--stored-messages (default 1,000) each, all kept in B's mailbox in Redis; then every B
reconnects at once and drains. The clients run in `--load-procs` processes that start each
phase together (bench/storedgen.py, tests/support/relay_stored_load.py). Reports relay +
Redis CPU per stored message and per drained message, the drain rate per reconnecting
client, and every message accounted for (lost, duplicated, out of order, clients dropped
and why; exit 1 unless all are 0):

    python bench/relay.py --stored                         # 50 pairs x 1,000
    python bench/relay.py --stored --stored-messages 200   # shorter
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINES = Path(__file__).resolve().parent / "baselines.py"  # runs the python baseline
sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LOAD_PROCS, generator_cmds, run_generators  # noqa: E402
from storedgen import run_stored_load  # noqa: E402

# Replica count whose figures make the last line (the "2 replicas, 50 pairs").
MAIN_REPLICAS = 2
# A paced run whose generators sent below this share of the offered rate did not offer it
# (the generators, or the relay's back-pressure through the window, fell behind): its
# latency is not a figure at that rate and the last line says `na`.
BEHIND_FRACTION = 0.9


# -- orchestration -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_relays(kind: str, redis_url: str, count: int = 2) -> list:
    """`count` replicas of `kind` ("parley", "python" or "node"); objects with .url/.proc."""
    sys.path.insert(0, str(ROOT))
    if kind == "node":
        from baselines import start_node_relays  # Node process management lives there

        return start_node_relays(redis_url, count=count)
    from tests.support.servers import RelayProcess, free_port, wait_for

    out = []
    for _ in range(count):
        if kind == "parley":
            # Limits stay on (the token bucket runs per message) but set high enough not
            # to throttle the benchmark load.
            relay = RelayProcess(
                redis_url=redis_url,
                extra_args=["--rate-limit", "1000000,1000000", "--log-level", "WARNING"],
            ).start()
        else:
            relay = RelayProcess(redis_url=redis_url)  # reuse its port/log/cleanup helpers
            relay.port = free_port()
            log = open(os.devnull, "wb")  # noqa: SIM115 - handed to the child
            relay.proc = subprocess.Popen(
                [sys.executable, str(BASELINES), "--serve-baseline", str(relay.port), redis_url],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            wait_for(lambda r=relay: r.get("/healthz")[0] == 200, what="baseline relay")
        out.append(relay)
    return out


def run_load(
    relays: list, args, tag: str, redis_pid: int, rate: float = 0.0, seconds: float = 0.0
) -> dict:
    """One round of load over `relays` (paced at `rate` msg/s offered for `seconds` if
    given); adds relay+Redis CPU per received message (us)."""
    pids = [r.proc.pid for r in relays] + [redis_pid]
    before = [cpu_seconds(pid) for pid in pids]
    result = run_generators(generator_cmds(relays, args, tag, rate, seconds))
    cpu = sum(cpu_seconds(pid) for pid in pids) - sum(before)
    result["cpu_us_per_msg"] = round(cpu * 1e6 / max(1, result["received"]), 1)
    result["load"] = round(os.getloadavg()[0], 2)
    return result


def fell_behind(result: dict, rate: float) -> bool:
    """Whether a paced run sent below BEHIND_FRACTION of the rate it was to offer."""
    return result["offered_per_s"] < BEHIND_FRACTION * rate


def fanout_tax(pair: list, idle: list, args, tag: str, redis_pid: int) -> dict:
    """Paced load through `pair` while `idle` (replicas holding no member) only listen:
    microseconds of idle-replica CPU per forwarded message, per idle replica."""
    import socketio

    # One client per idle replica, in a room of its own: a replica serving nobody would not
    # even start python-socketio's listener, and a real replica always serves someone.
    bystanders = []
    for i, relay in enumerate(idle):
        client = socketio.Client(reconnection=False)
        client.connect(
            relay.url, auth={"room": f"idle-{tag}-{i}", "name": "idle"}, transports=["websocket"]
        )
        bystanders.append(client)
    try:
        time.sleep(1.0)
        before = [cpu_seconds(r.proc.pid) for r in idle]
        result = run_load(pair, args, tag, redis_pid, args.fanout_rate, args.fanout_seconds)
        spent = sum(cpu_seconds(r.proc.pid) for r in idle) - sum(before)
    finally:
        for client in bystanders:
            client.disconnect()
    received = max(1, result["received"])
    result["fanout_us"] = round(spent * 1e6 / received / len(idle), 2)
    return result


def run_stored(args) -> int:
    """The stored-and-forwarded bench (see the module docstring); one round, Parley only."""
    sys.path.insert(0, str(ROOT))
    from tests.support.servers import RedisServer

    print(
        f"stored bench: {args.pairs} pairs over 2 replicas + 1 Redis (AOF everysec), "
        f"{args.stored_messages} x {args.size} B stored per pair while its B is away, "
        f"{min(args.load_procs, args.pairs)} load process(es); load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    redis_server = RedisServer(appendonly=True).start()
    relays: list = []
    try:
        relays = start_relays("parley", redis_server.url)
        pids = [r.proc.pid for r in relays] + [redis_server.proc.pid]
        r = run_stored_load(relays[0].url, relays[1].url, pids, args)
        # Why a client dropped (slow_consumer, a ping timeout, drain_failed): the relays say.
        warnings = [
            line for relay in relays for line in relay.log().splitlines() if "WARNING" in line
        ]
        for line in warnings[:10]:
            print(f"relay: {line[:200]}")
        for why in r["dropped_why"]:
            print(f"client dropped: {why}")
    finally:
        for relay in relays:
            relay.cleanup()
        redis_server.cleanup()
    print(
        f"store:  {r['stored']} stored ({r['refused']} refused) in {r['stored_s']} s = "
        f"{r['store_msgs_per_s']} msgs/s; relays + Redis CPU {r['cpu_us_per_stored']} us "
        "per stored message"
    )
    print(
        f"drain:  {r['drained']} drained by {args.pairs} clients reconnecting at once in "
        f"{r['drain_s']} s; per client median {r['drain_msgs_per_s_per_client_median']} "
        f"msgs/s from connect (slowest {r['drain_msgs_per_s_per_client_min']}), "
        f"{r['stream_msgs_per_s_per_client_median']} msgs/s from the first entry; relays + "
        f"Redis CPU {r['cpu_us_per_drained']} us per drained message (acks included); lost "
        f"{r['lost']}, duplicated {r['duplicates']}, out of order {r['out_of_order']}, clients "
        f"dropped {r['clients_dropped']}; load generator CPU {r['client_cpu_s']} s over "
        f"{r['load_procs']} process(es)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        f"stored_us={r['cpu_us_per_stored']} drained_us={r['cpu_us_per_drained']} "
        f"drain_per_client={r['drain_msgs_per_s_per_client_median']} lost={r['lost']}"
    )
    faults = ("lost", "duplicates", "out_of_order", "refused", "clients_dropped")
    return 0 if all(r[key] == 0 for key in faults) else 1


def describe(name: str, r: dict) -> str:
    return (
        f"{name:9s} {r['msgs_per_s']:9.1f} msgs/s  p50 {r['p50_ms']:8.2f} ms  "
        f"p99 {r['p99_ms']:8.2f} ms  relay+Redis CPU {r['cpu_us_per_msg']:7.1f} us/msg  "
        f"lost {r['lost']}  out-of-order {r['out_of_order']}  (load {r['load']})"
    )


def paced_run(kind: str, relays: list, n: int, redis, args) -> dict:
    """The paced latency run of one relay kind; says so plainly when the load fell behind."""
    r = run_load(relays, args, f"{kind}-paced", redis.proc.pid, args.rate, args.rate_seconds)
    print(
        f"[{n} replicas] paced {args.rate:.0f} msg/s (sent at {r['offered_per_s']:.0f}) "
        + describe(kind, r),
        flush=True,
    )
    if fell_behind(r, args.rate):
        print(
            f"paced {kind}: NOT VALID: the load was sent at {r['offered_per_s']:.0f} msg/s, "
            f"below {BEHIND_FRACTION:.0%} of the {args.rate:.0f} offered, so its p50/p99 are "
            "no figures at that rate (try more --load-procs or a lower --rate)",
            flush=True,
        )
    return r


def sweep_point(n: int, kinds: list[str], redis, args) -> dict:
    """Replica count `n`: unpaced rounds (CPU per message), then at MAIN_REPLICAS the paced
    latency and the fan-out tax; returns {kind: {"cpu": us, "paced": result, ...}}."""
    out: dict[str, dict] = {k: {"rounds": []} for k in kinds}
    relays: dict[str, list] = {}
    try:
        for kind in kinds:
            relays[kind] = start_relays(kind, redis.url, n)
        for i in range(args.rounds):
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                r = run_load(relays[kind], args, f"{kind}{n}r{i}", redis.proc.pid)
                out[kind]["rounds"].append(r)
                print(f"[{n} replicas] " + describe(kind, r), flush=True)
                time.sleep(0.5)
        for kind in kinds:
            out[kind]["cpu"] = min(r["cpu_us_per_msg"] for r in out[kind]["rounds"])
        if n != args.main_n:
            return out
        if args.rate:
            for kind in kinds:
                out[kind]["paced"] = paced_run(kind, relays[kind], n, redis, args)
        if args.fanout_seconds > 0:
            for kind in kinds:
                relays[kind + "-idle"] = start_relays(kind, redis.url, 2)
                r = fanout_tax(
                    relays[kind], relays[kind + "-idle"], args, f"{kind}-fan", redis.proc.pid
                )
                out[kind]["fanout"] = r["fanout_us"]
                pace = f"{args.fanout_rate:.0f} msg/s offered" if args.fanout_rate else "unpaced"
                print(
                    f"fan-out   {kind:9s} {pace}, {r['received']} "
                    f"forwarded (lost {r['lost']}): {r['fanout_us']:.2f} us CPU per forwarded "
                    "message on each replica holding no member",
                    flush=True,
                )
    finally:
        for group in relays.values():
            for relay in group:
                relay.cleanup()
    return out


def idle_figures(redis, args, kinds: list[str]) -> dict:
    """bench/idle.py's measurement for each kind (RSS per idle websocket, one replica)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import idle

    opts = argparse.Namespace(
        n=args.idle, pairs=idle.LIVE_PAIRS, messages=100, window=1, rate=idle.LIVE_RATE
    )
    out = {}
    for kind in kinds:
        if kind in ("parley", "node"):
            out[kind] = idle.measure(kind, redis.url, opts)
            print(idle.describe(out[kind]), flush=True)
    return out


def fmt(value, digits: int = 2) -> str:
    return "na" if value is None else f"{value:.{digits}f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Parley relay vs Node socket.io / bare python-socketio")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--messages", type=int, default=200, help="messages per member")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=20, help="max in-flight messages per sender")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="10 pairs x 50 messages, 1 round")
    p.add_argument("--replicas", default=str(MAIN_REPLICAS), help="replica counts, e.g. 1,2,4")
    p.add_argument("--rate", type=float, default=1000.0, help="paced run: msg/s offered (0: off)")
    p.add_argument("--rate-seconds", type=float, default=5.0, help="length of the paced run")
    p.add_argument(
        "--load-procs",
        type=int,
        default=LOAD_PROCS,
        help=f"load-generator processes sharing the pairs (default {LOAD_PROCS})",
    )
    p.add_argument("--fanout-rate", type=float, default=1000.0, help="offered msgs/s, fan-out run")
    p.add_argument("--fanout-seconds", type=float, default=5.0, help="fan-out run (0: off)")
    p.add_argument("--idle", type=int, default=0, help="idle websockets for the RSS figure")
    p.add_argument(
        "--baseline",
        choices=("node", "python"),
        default="node",
        help="node: socket.io 4 + redis-adapter; python: bare python-socketio + RedisManager",
    )
    p.add_argument("--stored", action="store_true", help="stored-and-forwarded mode")
    p.add_argument(
        "--stored-messages", type=int, default=1000, help="messages stored per pair (--stored)"
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="on a real Redis Cluster: replica sweep 1, 2, 4 (bench/cluster.py; --quick: shorter)",
    )
    args = p.parse_args(argv)
    if args.cluster:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from cluster import main as cluster_main

        return cluster_main(["--seconds", "2", "--pairs", "10"] if args.quick else [])
    if args.load_procs < 1:
        p.error("--load-procs takes a positive count")
    if args.stored:
        return run_stored(args)
    counts = [int(x) for x in args.replicas.split(",") if x.strip()]
    if not counts or min(counts) < 1:
        p.error("--replicas takes positive counts, e.g. 1,2,4")
    args.main_n = MAIN_REPLICAS if MAIN_REPLICAS in counts else counts[0]
    if args.quick:
        args.pairs, args.messages, args.rounds = 10, 50, 1
        args.fanout_seconds = min(args.fanout_seconds, 2.0)
        args.rate_seconds = min(args.rate_seconds, 2.0)

    sys.path.insert(0, str(ROOT))
    from tests.support.servers import RedisServer

    kinds = ["parley", args.baseline]
    print(
        f"relay bench: {args.pairs} pairs, replicas {counts}, 1 Redis, {args.messages} x "
        f"{args.size} B per member, window {args.window}, {args.rounds} round(s) each, "
        f"baseline {args.baseline}, {min(args.load_procs, args.pairs)} load process(es); "
        f"load average {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    redis_server = RedisServer().start()
    points: dict[int, dict] = {}
    idle_out: dict = {}
    try:
        for n in counts:
            points[n] = sweep_point(n, kinds, redis_server, args)
        if args.idle:
            idle_out = idle_figures(redis_server, args, kinds)
    finally:
        redis_server.cleanup()

    print("relay+Redis CPU per forwarded message, best round (us):")
    for n, point in points.items():
        ours, base = point["parley"]["cpu"], point[args.baseline]["cpu"]
        print(
            f"  {n} replica(s): parley {ours:.1f}, {args.baseline} {base:.1f}, "
            f"ratio {ours / max(base, 1e-9):.2f}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    main_point = points[args.main_n]
    ours = main_point["parley"]
    node = main_point.get("node")
    paced = ours.get("paced")
    if paced and fell_behind(paced, args.rate):
        paced = None  # said above: an overloaded generator's latency is no figure
    idle_kb = idle_out["parley"]["kb_per_conn"] if "parley" in idle_out else None
    print(
        f"cpu_us_per_msg={fmt(ours['cpu'], 1)} "
        f"node_cpu_us_per_msg={fmt(node['cpu'] if node else None, 1)} "
        f"ratio_vs_node={fmt(ours['cpu'] / max(node['cpu'], 1e-9) if node else None)} "
        f"p50_ms={fmt(paced['p50_ms'] if paced else None)} "
        f"p99_ms={fmt(paced['p99_ms'] if paced else None)} "
        f"idle_kb_per_conn={fmt(idle_kb)} "
        f"fanout_tax_us={fmt(ours.get('fanout'))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
