"""DESIGN.md section 8: a burst of well over 100 concurrent publishes per replica loses nothing.

redis-py's default pool raises MaxConnectionsError past 100 connections; the stock
RedisManager then rebuilds its subscription and silently drops messages. 150 senders per
replica each fire all their messages at once (no window), through real relay processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]


def test_burst_over_100_concurrent_publishes_per_replica_loses_nothing(redis_server, relay_factory):
    args = ["--rate-limit", "off"]
    r1 = relay_factory(redis_server.url, extra_args=args)
    r2 = relay_factory(redis_server.url, extra_args=args)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.relay_load",
            "--url-a",
            r1.url,
            "--url-b",
            r2.url,
            "--pairs",
            "150",
            "--messages",
            "10",
            "--window",
            "10",
            "--settle",
            "1",
            "--tag",
            "burst",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["expected"] == 3000
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0 and result["out_of_order"] == 0, result
    # The burst really needed more than 100 publishing connections on a replica at once
    # (the blocking pool keeps them open afterwards, named after their replica).
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    per_pool = Counter(c["name"] for c in raw.client_list() if c["name"].endswith("-pub"))
    assert max(per_pool.values()) > 100, per_pool
    for relay in (r1, r2):
        log = relay.log()
        assert "MaxConnections" not in log and "forward_failed" not in log
        assert relay.health()["_status"] == 200
