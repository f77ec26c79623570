"""Replica death, Redis restarts and graceful shutdown, with real processes."""

from __future__ import annotations

import time

import redis

from tests.support.relay_clients import (
    clients_fixture,  # noqa: F401 - fixture
    pair,
)
from tests.support.servers import wait_for

HB = ["--heartbeat-seconds", "1.5"]


def test_dead_replica_members_are_pruned(redis_server, relay_factory, clients):
    r1 = relay_factory(redis_server.url, extra_args=HB)
    r2 = relay_factory(redis_server.url, extra_args=HB)
    a, b = pair(clients, r1.url, r2.url, "ghost")
    # Without pruning the room stays "full" forever: a third client is refused now...
    assert (
        clients(r2.url, {"room": "ghost", "name": "carol"}).try_connect()["data"]["code"]
        == "room_full"
    )
    r1.kill()  # SIGKILL: no goodbye, alice's membership stays behind in Redis
    assert b.wait_for("peer_left", timeout=10) == [{"name": "alice"}]
    c = clients(r2.url, {"room": "ghost", "name": "carol"}).connect()
    assert c.wait_for("KEY_EXCHANGE") == [1]
    c.emit("message", "hello bob")
    b.wait_for_payload("received_message", "hello bob")
    status, text = r2.get("/metrics")
    assert "parley_relay_pruned_members_total 1.0" in text


def test_redis_restart_503_then_recovery(redis_server, relay_factory, clients):
    # A lease long enough to outlive the restart: the replicas keep their clients (a
    # replica whose lease runs out fences them instead: test_relay_fencing.py).
    hb = ["--heartbeat-seconds", "10"]
    r1 = relay_factory(redis_server.url, extra_args=hb)
    r2 = relay_factory(redis_server.url, extra_args=hb)
    a, b = pair(clients, r1.url, r2.url, "rr")
    redis_server.stop()
    wait_for(lambda: r1.health()["_status"] == 503, timeout=10, what="503 from r1")
    h = r2.health()
    assert h["_status"] == 503 and h["redis"] == "down" and h["status"] == "unavailable"
    # A join needs Redis: refused clearly with `unavailable`, nothing half-done.
    err = clients(r1.url, {"room": "other", "name": "late"}).try_connect()
    assert err["data"]["code"] == "unavailable"
    # A message that needs Redis is refused clearly, and the relay keeps running.
    assert a.call("message", "while down") == {"ok": False, "code": "unavailable"}
    assert a.wait_for("error")[0]["code"] == "unavailable"
    redis_server.start()  # same port, empty data set
    for r in (r1, r2):
        wait_for(lambda r=r: r.health()["_status"] == 200, timeout=15, what="recovery")
    assert r1.health()["redis"] == "ok"
    # Membership was re-registered from the replicas: the pair still works both ways...
    wait_for(lambda: a.call("message", "after restart")["ok"], timeout=10, what="ack ok")
    b.wait_for_payload("received_message", "after restart")
    b.emit("message", "back")
    a.wait_for_payload("received_message", "back")
    # ...and the room is still full in Redis (strangers wait out the resync window first).
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    wait_for(lambda: raw.hlen("parley:room:rr") == 2, timeout=10, what="resync")
    wait_for(lambda: not raw.exists("parley:resync"), timeout=20, what="resync window end")
    assert (
        clients(r1.url, {"room": "rr", "name": "eve"}).try_connect()["data"]["code"] == "room_full"
    )


def test_sigterm_is_graceful(redis_server, relay_factory, clients):
    r1 = relay_factory(redis_server.url, extra_args=HB)
    r2 = relay_factory(redis_server.url, extra_args=HB)
    a, b = pair(clients, r1.url, r2.url, "bye")
    replica = r1.health()["replica"]
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert raw.sismember("parley:replicas", replica)
    # SIGTERM. No bound on how long the drain takes on a loaded machine: what matters is
    # that it finishes by itself (exit 0, not our SIGKILL after 60 s) and what it leaves.
    r1.stop(timeout=60)
    assert r1.proc.returncode == 0, r1.log()
    assert a.disconnected.wait(5)
    assert b.wait_for("peer_left", timeout=5) == [{"name": "alice"}]
    assert raw.hkeys("parley:room:bye") == [b.sio.get_sid()]
    assert not raw.sismember("parley:replicas", replica)
    assert not raw.exists(f"parley:alive:{replica}")
    # The seat is free at once, no waiting for a heartbeat to expire.
    c = clients(r2.url, {"room": "bye", "name": "carol"}).connect()
    assert c.wait_for("KEY_EXCHANGE") == [1]
    log = r1.log()
    assert '"event": "shutdown_complete"' in log
    assert "Traceback" not in log


def test_idle_subscription_survives_socket_timeouts(two_relays, clients):
    """redis-py 8 defaults to a 5 s socket timeout; an idle pub/sub connection must neither
    time out nor reconnect in a loop (DESIGN.md section 8)."""
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url, "idle")
    time.sleep(12)  # well past the 5 s default timeout and two listener polls
    a.emit("message", "after the quiet")
    b.wait_for_payload("received_message", "after the quiet")
    for relay in (r1, r2):
        log = relay.log()
        assert log.count('"event": "redis_subscribed"') == 1, log
        assert "redis_subscription_lost" not in log
