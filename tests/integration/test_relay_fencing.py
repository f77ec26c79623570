"""M5: fencing after Redis loses its data, and self-fencing of a frozen replica.

Both reproduce the review's finding on the relay before seats: after a Redis restart the
first strangers to join took the members' seats; a replica frozen for longer than its
heartbeat TTL lost its members' seats to strangers using their names.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import redis
import socketio

from parley_relay.redis_store import RESYNC_KEY
from tests.support.relay_clients import (
    RelayClient,
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    seat_auth,
    seat_sids,
)
from tests.support.servers import wait_for


def _code(client: RelayClient) -> str:
    err = client.connect_errors[0] if client.connect_errors else None
    if isinstance(err, dict) and isinstance(err.get("data"), dict):
        return err["data"].get("code", "?")
    return "no-answer"


def test_m5_strangers_racing_a_redis_restart_get_no_seat(redis_server, relay_factory, clients):
    args = ["--heartbeat-seconds", "10", "--connect-rate", "off"]
    r1 = relay_factory(redis_server.url, extra_args=args)
    r2 = relay_factory(redis_server.url, extra_args=args)
    alice = clients(r1.url, seat_auth("m5", "alice", new_secret(), new_instance())).connect()
    bob = clients(r2.url, seat_auth("m5", "bob", new_secret(), new_instance())).connect()
    alice.wait_for("KEY_EXCHANGE")
    bob.wait_for("KEY_EXCHANGE")
    stop = threading.Event()
    outcomes: list[str] = []

    def stranger(i: int) -> None:
        while not stop.is_set():
            name = ("alice", "bob", "eve")[i % 3]
            auth = seat_auth("m5", name, new_secret(), new_instance()) if i % 2 else None
            c = RelayClient((r1.url, r2.url)[i % 2], auth or {"room": "m5", "name": name})
            try:
                c.connect(timeout=5)
                outcomes.append("joined")
            except socketio.exceptions.ConnectionError:
                outcomes.append(_code(c))
            finally:
                c.close()
            time.sleep(0.05)

    threads = [threading.Thread(target=stranger, args=(i,)) for i in range(4)]
    redis_server.stop()
    for t in threads:
        t.start()
    try:
        redis_server.start()  # same port, empty data set
        raw = redis.Redis.from_url(redis_server.url)
        want = {alice.sio.get_sid(), bob.sio.get_sid()}
        restored = lambda: set(seat_sids(redis_server.url, "m5")) == want  # noqa: E731
        wait_for(
            lambda: restored() and not raw.exists(RESYNC_KEY),
            timeout=40,
            what="both seats restored and the resync window over",
        )
        # Past the window the strangers keep trying, and now meet two owned seats.
        wait_for(lambda: outcomes.count("room_full") >= 4, timeout=30, what="room_full answers")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert "joined" not in outcomes, outcomes
    assert "unavailable" in outcomes  # while Redis was away or during the resync window
    assert set(seat_sids(redis_server.url, "m5")) == want
    alice.emit("message", "after the restart")
    bob.wait_for_payload("received_message", "after the restart")
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()


def test_m5_frozen_replica_keeps_seats_reserved_and_fences_itself(
    redis_server, relay_factory, clients
):
    args = ["--heartbeat-seconds", "3"]
    r1 = relay_factory(redis_server.url, extra_args=args)
    r2 = relay_factory(redis_server.url, extra_args=args)
    secret, inst = new_secret(), new_instance()
    alice = clients(r1.url, seat_auth("frz", "alice", secret, inst)).connect()
    bob = clients(r2.url, seat_auth("frz", "bob", new_secret(), new_instance())).connect()
    alice.wait_for("KEY_EXCHANGE")
    bob.wait_for("KEY_EXCHANGE")
    os.kill(r1.proc.pid, signal.SIGSTOP)
    try:
        # r2 prunes the frozen replica: alice's seat stays reserved for her secret.
        assert bob.wait_for("peer_left", timeout=30) == [{"name": "alice"}]
        for auth in (
            {"room": "frz", "name": "alice"},
            seat_auth("frz", "alice", new_secret(), new_instance()),
        ):
            assert clients(r2.url, auth).try_connect()["data"]["code"] == "room_full"
        # Her client fails over (same secret, same instance) and resumes on r2.
        alice2 = clients(r2.url, seat_auth("frz", "alice", secret, inst)).connect()
        assert alice2.wait_for("KEY_EXCHANGE") == [1]
    finally:
        os.kill(r1.proc.pid, signal.SIGCONT)
    # r1 wakes up presumed dead: it drops its stale connection instead of serving it.
    assert alice.disconnected.wait(30), r1.log()
    wait_for(lambda: '"event": "fenced"' in r1.log(), timeout=10, what="fenced log line")
    bob.emit("message", "to the live alice")
    alice2.wait_for_payload("received_message", "to the live alice")
    assert alice.named("received_message") == []
    assert seat_sids(redis_server.url, "frz").count(alice2.sio.get_sid()) == 1
