"""DESIGN.md section 8: a burst of well over 100 concurrent publishes per replica loses nothing.

redis-py's default pool raises MaxConnectionsError past 100 connections; the stock
RedisManager then rebuilds its subscription and silently drops messages. 150 senders per
replica each fire all their messages at once (no window), through real relay processes.

That the burst really has 150 publishes per replica waiting at once is made certain, not
hoped for: Redis is frozen (SIGSTOP) for STALL_S while the burst starts, so every publish the
relays issue meanwhile waits. The relay's BatchingPublisher queues them behind the pipeline on
the wire and sends them together, so they need one publishing connection, not one each (the
test checks that too: a publish per pool connection would need over 100). The stall stays
well inside the publish pool's 5 s socket timeout, so no publish may fail because of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
PAIRS = 150  # per replica: 150 connections, each with a publish waiting during the stall
STOCK_POOL = 100  # redis-py's default max_connections
STALL_S = 2.0


def test_burst_over_100_concurrent_publishes_per_replica_loses_nothing(redis_server, relay_factory):
    args = ["--rate-limit", "off"]
    r1 = relay_factory(redis_server.url, extra_args=args)
    r2 = relay_factory(redis_server.url, extra_args=args)
    load = subprocess.Popen(
        [sys.executable, "-m", "tests.support.relay_load", "--url-a", r1.url, "--url-b", r2.url,
         "--pairs", str(PAIRS), "--messages", "10", "--window", "10", "--settle", "1",
         "--tag", "burst", "--wait-for-go"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    stopped = False
    try:
        assert json.loads(load.stdout.readline() or "{}") == {"phase": "connected"}, (
            load.stderr.read()[-3000:]
        )
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        stopped = True
        load.stdin.write("go\n")
        load.stdin.flush()
        time.sleep(STALL_S)  # a floor, not a bet: publishes pile up for at least this long
        os.kill(redis_server.proc.pid, signal.SIGCONT)
        stopped = False
        out, err = load.communicate(timeout=180)
    finally:
        if stopped:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        if load.poll() is None:
            load.kill()
            load.wait(timeout=10)
    assert load.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["expected"] == 2 * PAIRS * 10
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0 and result["out_of_order"] == 0, result
    # The 150 waiting publishes per replica went out batched: each replica's publishing pool
    # (connections named after the replica) never needed anywhere near the stock pool's 100.
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    per_pool = Counter(c["name"] for c in raw.client_list() if c["name"].endswith("-pub"))
    assert len(per_pool) == 2 and max(per_pool.values()) < STOCK_POOL // 10, per_pool
    for relay in (r1, r2):
        log = relay.log()
        assert "MaxConnections" not in log and "forward_failed" not in log
        assert relay.health()["_status"] == 200
