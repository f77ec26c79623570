"""Relay benchmark on a real Redis Cluster: a replica sweep (1, 2, 4 Parley replicas).

Starts a 3-master + 3-replica cluster of redis-server processes (tests/support/cluster.py)
and, for each replica count N, N Parley relays on it; drives a paced load of real Socket.IO
pairs (tests/support/relay_load.py), each pair's members on two different replicas (both on
the one replica when N = 1), and measures CPU per forwarded message of the relays and of
the six Redis nodes, from /proc. Same offered rate for every N, so the figures compare; the
target is flat CPU per message from 2 to 4 replicas (within 20 %). Called by
`python bench/relay.py --cluster`, or directly:

    python bench/cluster.py [--replicas 1,2,4] [--pairs 20] [--rate 500] [--seconds 5]

Last line: `cluster cpu_us_per_msg_<N>=<x> ... redis_us_per_msg_<N>=<x> ... load=<x>`.
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
sys.path.insert(0, str(ROOT))
from tests.support.load_stats import merge, summarize  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _generators(relays, args, tag: str) -> list[subprocess.Popen]:
    """One load generator per pair of replicas (r0,r1), (r2,r3)...; (r0,r0) for one."""
    urls = [r.url for r in relays]
    pairs = [(urls[i], urls[i + 1]) for i in range(0, len(urls) - 1, 2)] or [(urls[0], urls[0])]
    rate = args.rate / len(pairs)
    per_generator = max(1, args.pairs // len(pairs))  # pairs of the bench in each generator
    per_member = max(1, int(rate * args.seconds / (2 * per_generator)))
    procs = []
    for i, (a, b) in enumerate(pairs):
        cmd = [
            sys.executable,
            "-m",
            "tests.support.relay_load",
            "--url-a",
            a,
            "--url-b",
            b,
            "--pairs",
            str(per_generator),
            # Each generator its own share of the paced phases (one even stream over all).
            "--first-pair",
            str(i * per_generator),
            "--all-pairs",
            str(len(pairs) * per_generator),
            "--messages",
            str(per_member),
            "--size",
            str(args.size),
            "--window",
            "50",
            "--rate",
            str(rate),
            "--tag",
            f"{tag}g{i}",
            "--wait-for-go",
            "--samples",  # raw samples: p50/p99 over all generators' messages
        ]
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        )
    return procs


def run_sweep_point(cluster, relay_factory, n: int, args) -> dict:
    """Start `n` relays, drive the paced load, return throughput, latency and CPU figures."""
    relays = [relay_factory(cluster.url) for _ in range(n)]
    procs = _generators(relays, args, tag=f"n{n}")
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if "connected" not in line:
                raise RuntimeError(f"load generator did not connect: {line!r}")
        time.sleep(1.0)  # let joins and KEY_EXCHANGEs settle before measuring
        redis_pids = [node.proc.pid for node in cluster.nodes]
        before = [cpu_seconds(r.proc.pid) for r in relays], [cpu_seconds(p) for p in redis_pids]
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        raws = [json.loads(proc.stdout.read().strip().splitlines()[-1])["raw"] for proc in procs]
        relay_cpu = sum(cpu_seconds(r.proc.pid) for r in relays) - sum(before[0])
        redis_cpu = sum(cpu_seconds(p) for p in redis_pids) - sum(before[1])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for relay in relays:
            relay.cleanup()
    merged = summarize(merge(raws))  # pooled samples, not the max of per-process p99s
    received = max(1, merged["received"])
    return {
        "replicas": n,
        "received": received,
        "lost": merged["lost"],
        "out_of_order": merged["out_of_order"],
        "p50_ms": merged["p50_ms"] or 0,
        "p99_ms": merged["p99_ms"] or 0,
        "relay_us_per_msg": round(relay_cpu * 1e6 / received, 1),
        "redis_us_per_msg": round(redis_cpu * 1e6 / received, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Parley relay on a Redis Cluster: replica sweep")
    p.add_argument("--replicas", default="1,2,4", help="comma list of replica counts")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--rate", type=float, default=500.0, help="offered msgs/s in total")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--size", type=int, default=1024)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.support.cluster import RedisCluster
    from tests.support.servers import RelayProcess

    started: list[RelayProcess] = []

    def relay_factory(url: str) -> RelayProcess:
        relay = RelayProcess(
            redis_url=url,
            extra_args=["--rate-limit", "1000000,1000000", "--log-level", "WARNING"],
        )
        started.append(relay)
        return relay.start()

    counts = [int(x) for x in args.replicas.split(",") if x.strip()]
    print(
        f"cluster bench: 3 masters + 3 replicas, {args.pairs} pairs, {args.rate:.0f} msg/s "
        f"offered for {args.seconds:.0f} s, {args.size} B, replicas {counts}",
        flush=True,
    )
    cluster = RedisCluster().start()
    points = []
    try:
        for n in counts:
            r = run_sweep_point(cluster, relay_factory, n, args)
            points.append(r)
            print(
                f"replicas {n}: {r['received']} forwarded, lost {r['lost']}, out-of-order "
                f"{r['out_of_order']}, p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms, "
                f"CPU per message: relays {r['relay_us_per_msg']:.1f} us + Redis "
                f"{r['redis_us_per_msg']:.1f} us",
                flush=True,
            )
    finally:
        for relay in started:
            relay.cleanup()
        cluster.cleanup()
    load = os.getloadavg()
    averages = " ".join(f"{x:.2f}" for x in load)
    print(f"load average at the end: {averages} on {os.cpu_count()} CPUs (shared machine)")
    fields = [
        f"cpu_us_per_msg_{r['replicas']}={r['relay_us_per_msg'] + r['redis_us_per_msg']:.1f}"
        for r in points
    ]
    fields += [f"redis_us_per_msg_{r['replicas']}={r['redis_us_per_msg']:.1f}" for r in points]
    print("cluster " + " ".join(fields) + f" load={load[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
