"""Replica death, Redis restarts and graceful shutdown, with real processes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

import pytest
import redis
import socketio

from parley_relay.redis_store import LEASES_KEY, RESYNC_KEY, replica_key, room_key
from tests.support.relay_clients import (
    clients_fixture,  # noqa: F401 - fixture
    pair,
    seat_sids,
)
from tests.support.servers import wait_for
from tests.support.tap import tapped_relay_fixture  # noqa: F401 - fixture

# Short, so a killed replica is found dead within seconds; 2 s of margin before a live one
# that the machine held up loses its lease (renewals every 1 s).
HB = ["--heartbeat-seconds", "3"]


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
    assert b.wait_for("peer_left", timeout=30) == [{"name": "alice"}]  # after about 4 s
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
    wait_for(lambda: raw.hlen(room_key("rr", "seats")) == 2, timeout=10, what="resync")
    wait_for(lambda: not raw.exists(RESYNC_KEY), timeout=20, what="resync window end")
    assert (
        clients(r1.url, {"room": "rr", "name": "eve"}).try_connect()["data"]["code"] == "room_full"
    )


def test_sigterm_is_graceful(redis_server, relay_factory, clients):
    r1 = relay_factory(redis_server.url, extra_args=HB)
    r2 = relay_factory(redis_server.url, extra_args=HB)
    a, b = pair(clients, r1.url, r2.url, "bye")
    replica = r1.health()["replica"]
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert raw.hexists(LEASES_KEY, replica)
    # SIGTERM. No bound on how long the drain takes on a loaded machine: what matters is
    # that it finishes by itself (exit 0, not our SIGKILL after 60 s) and what it leaves.
    r1.stop(timeout=60)
    assert r1.proc.returncode == 0, r1.log()
    assert a.disconnected.wait(5)
    assert b.wait_for("peer_left", timeout=5) == [{"name": "alice"}]
    assert raw.hkeys(room_key("bye", "seats")) == [b.sio.get_sid()]
    assert not raw.hexists(LEASES_KEY, replica)
    assert not raw.exists(replica_key(replica, "conns"))
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


def test_resync_drops_members_whose_seats_were_taken_while_redis_forgot_them(
    redis_server, relay_factory, clients
):
    """Redis loses everything; r1 stays frozen past the resync window (in which strangers
    are refused: test_relay_fencing.py), so carol and dave take the room through r2. r1's
    resync must then refuse its two (room_full) and disconnect them, not leave four members
    in a two-seat room."""
    # A liveness TTL that r2's heartbeat (every 2 s) renews with room to spare.
    slow = ["--heartbeat-seconds", "6"]
    r1 = relay_factory(redis_server.url, extra_args=slow)
    r2 = relay_factory(redis_server.url, extra_args=slow)
    a, b = pair(clients, r1.url, r1.url, "taken")
    # Frozen, r1 cannot resync before the seats are taken: no race with its heartbeat.
    os.kill(r1.proc.pid, signal.SIGSTOP)
    try:
        redis_server.restart()  # same port, empty
        wait_for(lambda: r2.health()["_status"] == 200, timeout=30, what="r2 recovered")
        # Until r2 heartbeats again its members look like ghosts (its liveness key is gone
        # with the rest) and r1's resync would rightly evict them: wait for it.
        raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
        r2_id = r2.health()["replica"]
        wait_for(lambda: raw.hexists(LEASES_KEY, r2_id), timeout=30, what="r2's heartbeat")
        wait_for(lambda: not raw.exists(RESYNC_KEY), timeout=30, what="resync window end")
        c, d = pair_named(clients, r2.url, "taken", "carol", "dave")
    finally:
        os.kill(r1.proc.pid, signal.SIGCONT)
    wait_for(lambda: a.named("error") and b.named("error"), timeout=30, what="room_full")
    for old in (a, b):
        assert old.named("error")[0]["code"] == "room_full"
        assert old.disconnected.wait(10)
    assert set(seat_sids(redis_server.url, "taken")) == {c.sio.get_sid(), d.sio.get_sid()}
    c.emit("message", "the room is ours")
    d.wait_for_payload("received_message", "the room is ours")
    assert not c.named("peer_left") and not d.named("peer_left")
    assert '"event": "membership_resynced"' in r1.log()


def test_leave_while_redis_is_unreachable_frees_the_seat_once_it_is_back(
    redis_server, relay_factory, clients
):
    """alice leaves while Redis is frozen (its data kept): the leave fails on r1 and is
    logged; once Redis answers again her seat must not stay taken by a ghost."""
    # A lease longer than the freeze (the leave waits out a 5 s socket timeout): a replica
    # whose lease lapses fences its clients instead (test_relay_fencing.py).
    long = ["--heartbeat-seconds", "20"]
    r1 = relay_factory(redis_server.url, extra_args=long)
    r2 = relay_factory(redis_server.url, extra_args=long)
    a, b = pair(clients, r1.url, r2.url, "gone")
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        a.close()
        wait_for(lambda: "leave_failed" in r1.log(), timeout=30, what="leave_failed")
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    for r in (r1, r2):
        wait_for(lambda r=r: r.health()["_status"] == 200, timeout=30, what="recovery")
    wait_for(
        lambda: seat_sids(redis_server.url, "gone") == [b.sio.get_sid()],
        timeout=30,
        what="alice's seat released",
    )
    c = clients(r1.url, {"room": "gone", "name": "carol"}).connect()
    assert c.wait_for("KEY_EXCHANGE") == [1]
    c.emit("message", "a new peer")
    b.wait_for_payload("received_message", "a new peer")
    assert "Traceback" not in r1.log() + r2.log()


def test_graceful_drain_answers_503_shutting_down_and_refuses_new_connections(
    tapped_relay, clients
):
    """While the drain runs (held at its first peer_left by the tap), /healthz on an open
    keep-alive connection says 503 shutting_down, and new connections are refused."""
    relay = tapped_relay()
    release = threading.Event()
    held = threading.Event()

    def hold_drain(e):
        if e.event == "peer_left" and not held.is_set():
            held.set()
            release.wait(10)  # the relay's drain waits on this emit meanwhile
        return None

    a, b = pair(clients, relay.url, relay.url, "drain")
    health = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
    try:
        health.request("GET", "/healthz")
        first = health.getresponse()
        assert first.status == 200 and json.loads(first.read())["status"] == "ok"
        relay.tap.policy = hold_drain
        relay.proc.send_signal(signal.SIGTERM)
        assert held.wait(30), "the drain never reached peer_left"
        health.request("GET", "/healthz")
        during = health.getresponse()
        assert during.status == 503
        assert json.loads(during.read())["status"] == "shutting_down"
        err = clients(relay.url, {"room": "late", "name": "late"})
        with pytest.raises(socketio.exceptions.ConnectionError):
            err.connect(timeout=5)
        assert relay.get("/healthz")[0] == 0  # the listener is closed: nothing answers
    finally:
        release.set()
        health.close()
    assert relay.proc.wait(timeout=60) == 0, relay.log()
    assert '"event": "shutdown_complete"' in relay.log()


def pair_named(clients, url: str, room: str, first: str, second: str):
    x = clients(url, {"room": room, "name": first}).connect()
    y = clients(url, {"room": room, "name": second}).connect()
    assert x.wait_for("KEY_EXCHANGE") == [1] and y.wait_for("KEY_EXCHANGE") == [1]
    return x, y
