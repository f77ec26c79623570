"""Relay benchmark: Parley's relay against a bare python-socketio + RedisManager forwarder.

Starts one redis-server and two replicas of each relay on free ports (cleaned up at the end),
then drives N pairs (member A on replica 1, member B on replica 2), each member sending M
messages of 1 kB to the other with at most W in flight, using the gevent load generator in
tests/support/relay_load.py (real socketio.Clients in one separate process). Rounds alternate
between the two relays so machine noise hits both alike; the best round of each counts.

Prints throughput, latency p50/p99 and relay CPU per message for both, then the fan-out tax:
two extra replicas of each relay that hold no bench member, while the pairs send a paced
load (--fanout-rate, default 1,000 msg/s offered); their CPU per forwarded message is what a
replica pays for conversations it has no part in (Parley routes by seat: target <= 10 us;
the stock RedisManager broadcast decodes everything everywhere). Last line:
    msgs_per_s=<x> p50_ms=<x> p99_ms=<x> baseline_msgs_per_s=<x> ratio=<x>
    fanout_us=<x> baseline_fanout_us=<x>   (the same line, continued)

    python bench/relay.py            # 50 pairs x 200 messages, 2 rounds each
    python bench/relay.py --quick    # 10 pairs x 50 messages, 1 round (development)
    python bench/relay.py --baseline node   # against Node socket.io + redis-adapter (baselines.py)
    python bench/relay.py --cluster  # Redis Cluster replica sweep 1, 2, 4 (bench/cluster.py)

Stored-and-forwarded mode (issue 15, offline delivery): 50 pairs, B away while A sends
--stored-messages (default 1,000) each, all kept in B's mailbox in Redis; then every B
reconnects at once and drains. Reports relay + Redis CPU per stored message and per drained
message, and the drain rate per reconnecting client (tests/support/relay_stored_load.py):

    python bench/relay.py --stored                         # 50 pairs x 1,000
    python bench/relay.py --stored --stored-messages 200   # shorter
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- the baseline relay (runs in its own process) ----------------------------------------------


def serve_baseline(port: int, redis_url: str) -> None:
    """A minimal forwarder: join the auth room on connect, emit to the room minus the sender.

    The same server stack as Parley's relay (gevent, gevent-websocket, RedisManager), with
    the stock manager given a pool large enough not to run dry (else it loses messages).
    """
    from gevent import monkey

    monkey.patch_all()
    import socketio
    from gevent.pywsgi import WSGIServer
    from geventwebsocket.handler import WebSocketHandler

    mgr = socketio.RedisManager(redis_url, redis_options={"max_connections": 10_000})
    sio = socketio.Server(async_mode="gevent", client_manager=mgr)
    rooms: dict[str, str] = {}

    @sio.event
    def connect(sid, environ, auth=None):
        room = (auth or {}).get("room", "lobby")
        rooms[sid] = room
        sio.enter_room(sid, room)

    @sio.event
    def disconnect(sid, reason=None):
        rooms.pop(sid, None)

    @sio.on("message")
    def message(sid, data):
        sio.emit("received_message", data, room=rooms.get(sid), skip_sid=sid)

    def http(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status":"ok"}']

    app = socketio.WSGIApp(sio, http)
    WSGIServer(("127.0.0.1", port), app, handler_class=WebSocketHandler, log=None).serve_forever()


# -- orchestration -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_relays(kind: str, redis_url: str) -> list:
    """Two replicas of `kind` ("parley", "baseline" or "node"); objects with .url/.proc."""
    sys.path.insert(0, str(ROOT))
    if kind == "node":
        from baselines import start_node_relays  # Node process management lives there

        return start_node_relays(redis_url, count=2)
    from tests.support.servers import RelayProcess, free_port, wait_for

    out = []
    for _ in range(2):
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
                [sys.executable, __file__, "--serve-baseline", str(relay.port), redis_url],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            wait_for(lambda r=relay: r.get("/healthz")[0] == 200, what="baseline relay")
        out.append(relay)
    return out


def run_load(relays: list, args, tag: str, extra: tuple[str, ...] = ()) -> dict:
    """Drive one round of load through a pair of replicas; add relay CPU per message."""
    before = [cpu_seconds(r.proc.pid) for r in relays]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.relay_load",
            "--url-a",
            relays[0].url,
            "--url-b",
            relays[1].url,
            "--pairs",
            str(args.pairs),
            "--messages",
            str(args.messages),
            "--size",
            str(args.size),
            "--window",
            str(args.window),
            "--tag",
            tag,
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = sum(cpu_seconds(r.proc.pid) for r in relays) - sum(before)
    result["relay_cpu_ms_per_msg"] = round(cpu * 1000 / max(1, result["received"]), 3)
    return result


def fanout_tax(pair: list, idle: list, args, tag: str) -> dict:
    """Paced load through `pair` while `idle` (replicas holding no member) only listen:
    microseconds of idle-replica CPU per forwarded message, per idle replica."""
    per_member = max(1, int(args.fanout_rate * args.fanout_seconds / (2 * args.pairs)))
    extra = ("--rate", str(args.fanout_rate), "--messages", str(per_member), "--window", "50")
    import socketio

    # One client per idle replica, in a room of its own: a replica serving nobody would not
    # even start python-socketio's listener, and a real replica always serves someone.
    bystanders = []
    for i, relay in enumerate(idle):
        client = socketio.Client(reconnection=False)
        client.connect(relay.url, auth={"room": f"idle-{tag}-{i}"}, transports=["websocket"])
        bystanders.append(client)
    try:
        time.sleep(1.0)
        before = [cpu_seconds(r.proc.pid) for r in idle]
        result = run_load(pair, args, tag, extra)
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
        f"{args.stored_messages} x {args.size} B stored per pair while its B is away",
        flush=True,
    )
    redis_server = RedisServer(appendonly=True).start()
    relays: list = []
    try:
        relays = start_relays("parley", redis_server.url)
        pids = [r.proc.pid for r in relays] + [redis_server.proc.pid]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.support.relay_stored_load",
                "--url-a",
                relays[0].url,
                "--url-b",
                relays[1].url,
                "--pids",
                ",".join(map(str, pids)),
                "--pairs",
                str(args.pairs),
                "--messages",
                str(args.stored_messages),
                "--size",
                str(args.size),
                "--window",
                str(args.window),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"stored load failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
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
        f"{r['lost']}, out of order {r['out_of_order']}; load generator CPU {r['client_cpu_s']} s"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        f"stored_us={r['cpu_us_per_stored']} drained_us={r['cpu_us_per_drained']} "
        f"drain_per_client={r['drain_msgs_per_s_per_client_median']} lost={r['lost']}"
    )
    return 0 if r["lost"] == 0 and r["out_of_order"] == 0 and r["refused"] == 0 else 1


def describe(name: str, r: dict) -> str:
    return (
        f"{name:9s} {r['msgs_per_s']:9.1f} msgs/s  p50 {r['p50_ms']:8.2f} ms  "
        f"p99 {r['p99_ms']:8.2f} ms  relay CPU {r['relay_cpu_ms_per_msg']:.3f} ms/msg  "
        f"lost {r['lost']}  out-of-order {r['out_of_order']}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Parley relay vs bare python-socketio relay")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--messages", type=int, default=200, help="messages per member")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=20, help="max in-flight messages per sender")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="10 pairs x 50 messages, 1 round")
    p.add_argument("--fanout-rate", type=float, default=1000.0, help="offered msgs/s, fan-out run")
    p.add_argument("--fanout-seconds", type=float, default=5.0, help="length of the fan-out run")
    p.add_argument(
        "--baseline",
        choices=("python", "node"),
        default="python",
        help="python: bare python-socketio + RedisManager; node: socket.io 4 + redis-adapter",
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
    p.add_argument(
        "--serve-baseline", nargs=2, metavar=("PORT", "REDIS_URL"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(int(args.serve_baseline[0]), args.serve_baseline[1])
        return 0
    if args.cluster:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from cluster import main as cluster_main

        return cluster_main(["--seconds", "2", "--pairs", "10"] if args.quick else [])
    if args.stored:
        return run_stored(args)
    if args.quick:
        args.pairs, args.messages, args.rounds = 10, 50, 1
        args.fanout_seconds = min(args.fanout_seconds, 2.0)

    sys.path.insert(0, str(ROOT))
    from tests.support.servers import RedisServer

    print(
        f"relay bench: {args.pairs} pairs over 2 replicas + 1 Redis, {args.messages} x "
        f"{args.size} B per member, window {args.window}, {args.rounds} round(s) each",
        flush=True,
    )
    redis_server = RedisServer().start()
    relays: dict[str, list] = {}
    try:
        relays["parley"] = start_relays("parley", redis_server.url)
        relays["baseline"] = start_relays(
            "node" if args.baseline == "node" else "baseline", redis_server.url
        )
        results: dict[str, list[dict]] = {"parley": [], "baseline": []}
        for i in range(args.rounds):
            for kind in ("parley", "baseline") if i % 2 == 0 else ("baseline", "parley"):
                r = run_load(relays[kind], args, tag=f"{kind}{i}")
                results[kind].append(r)
                print(describe(kind, r), flush=True)
                time.sleep(0.5)
        fanout: dict[str, dict] = {}
        for kind in ("parley", "baseline"):
            relays[kind + "-idle"] = start_relays(kind, redis_server.url)
            r = fanout_tax(relays[kind], relays[kind + "-idle"], args, tag=f"{kind}-fanout")
            fanout[kind] = r
            print(
                f"fan-out   {kind:9s} {args.fanout_rate:.0f} msg/s offered, {r['received']} "
                f"forwarded (lost {r['lost']}): {r['fanout_us']:.2f} us CPU per forwarded "
                "message on each replica holding no member",
                flush=True,
            )
    finally:
        for group in relays.values():
            for relay in group:
                relay.cleanup()
        redis_server.cleanup()

    best = {k: max(v, key=lambda r: r["msgs_per_s"]) for k, v in results.items()}
    ours, base = best["parley"], best["baseline"]
    ratio = ours["msgs_per_s"] / base["msgs_per_s"] if base["msgs_per_s"] else 0.0
    print(describe("best ours", ours))
    print(describe("best base", base))
    # CPU per message is steadier than throughput on a machine shared with other work.
    cpu_ours = min(r["relay_cpu_ms_per_msg"] for r in results["parley"])
    cpu_base = min(r["relay_cpu_ms_per_msg"] for r in results["baseline"])
    print(
        f"relay CPU per message (both replicas, best round): parley {cpu_ours:.3f} ms, "
        f"{args.baseline} baseline {cpu_base:.3f} ms, ratio {cpu_ours / max(cpu_base, 1e-9):.2f}"
    )
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.2f} on {os.cpu_count()} CPUs (shared machine)")
    if ours["lost"] or base["lost"]:
        print(f"WARNING: messages lost (parley {ours['lost']}, baseline {base['lost']})")
    print(
        f"msgs_per_s={ours['msgs_per_s']:.1f} p50_ms={ours['p50_ms']:.2f} "
        f"p99_ms={ours['p99_ms']:.2f} baseline_msgs_per_s={base['msgs_per_s']:.1f} "
        f"ratio={ratio:.2f} fanout_us={fanout['parley']['fanout_us']:.2f} "
        f"baseline_fanout_us={fanout['baseline']['fanout_us']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
