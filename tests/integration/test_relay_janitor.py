"""The janitor's decisions against real relays and a real redis-server (issues 10 and 12).

* a connection whose seat was vacated behind its replica's back is told `unavailable` (its
  client retries and resumes by secret), never the final `room_full`;
* a heartbeat whose "you were presumed dead" reply was lost still ends in fencing;
* after a Redis restart, a NEW replica that beats first grants only provisional seats: the
  old replica's restores evict the strangers who raced in, the members keep their seats;
* the `_JOIN` script's cross-replica rejoin: a seat resumed on the other replica while the
  old connection is still live on the first moves there, and the old one hears nothing.
"""

from __future__ import annotations

import os
import signal
import time

import redis

from parley_relay.redis_store import RESYNC_KEY, RedisStore, make_client
from tests.support.relay_clients import (
    RelayClient,
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    seat_auth,
    seat_sids,
)
from tests.support.servers import wait_for

# Short, so prune and fencing happen within seconds; a live relay the machine holds up
# keeps its lease for 2 s (renewals every 1 s).
HEARTBEAT = 3
SHORT = ["--heartbeat-seconds", str(HEARTBEAT), "--connect-rate", "off"]


def error_codes(client: RelayClient) -> list[str]:
    return [e.get("code") for e in client.named("error") if isinstance(e, dict)]


def as_replica(relay, redis_url: str) -> RedisStore:
    """A store acting under `relay`'s replica id, to do to Redis what that replica's own
    requests would (the relay itself never learns)."""
    return RedisStore(
        make_client(redis_url), relay.health()["replica"], heartbeat_seconds=HEARTBEAT
    )


def paired(clients, url_a: str, url_b: str, room: str):
    """alice (on url_a) and bob (on url_b), both with seat secrets, after KEY_EXCHANGE."""
    a_secret, a_inst = new_secret(), new_instance()
    alice = clients(url_a, seat_auth(room, "alice", a_secret, a_inst)).connect()
    bob = clients(url_b, seat_auth(room, "bob", new_secret(), new_instance())).connect()
    alice.wait_for("KEY_EXCHANGE")
    bob.wait_for("KEY_EXCHANGE")
    return alice, bob, (a_secret, a_inst)


def test_a_seat_vacated_behind_the_replicas_back_drops_with_unavailable(
    redis_server, relay_factory, clients
):
    """Before: reconcile dropped it with room_full, and a Parley client stops for good on
    room_full although the room had its seat reserved for it."""
    relay = relay_factory(redis_server.url, extra_args=SHORT)
    alice, _bob, (secret, inst) = paired(clients, relay.url, relay.url, "jan1")
    sid = alice.sio.get_sid()
    # What another replica's prune does when it presumes this one dead: the seat stays
    # reserved for alice's secret, her connection is no longer listed.
    assert as_replica(relay, redis_server.url).leave("jan1", sid).removed
    assert alice.disconnected.wait(15), relay.log()
    assert error_codes(alice) == ["unavailable"], alice.named("error")
    assert "reconnect" in alice.named("error")[0]["message"]
    again = clients(relay.url, seat_auth("jan1", "alice", secret, inst)).connect()
    assert again.sio.get_sid() in seat_sids(redis_server.url, "jan1")


def test_a_lost_expired_reply_still_fences_the_replica(redis_server, relay_factory, clients):
    r1 = relay_factory(redis_server.url, extra_args=SHORT)
    r2 = relay_factory(redis_server.url, extra_args=SHORT)
    alice, bob, _ = paired(clients, r1.url, r2.url, "jan2")
    stand_in = as_replica(r1, redis_server.url)
    os.kill(r1.proc.pid, signal.SIGSTOP)
    try:
        assert bob.wait_for("peer_left", timeout=30) == [{"name": "alice"}]  # r1 pruned
        # r1's next beat reaches Redis but its "expired" reply is lost: the lease exists
        # again when r1 beats for real. Before: r1 then thought all was well.
        stand_in.heartbeat()
    finally:
        os.kill(r1.proc.pid, signal.SIGCONT)
    assert alice.disconnected.wait(20), r1.log()
    wait_for(lambda: '"event": "fenced"' in r1.log(), timeout=10, what="fenced log line")
    assert "room_full" not in error_codes(alice), alice.named("error")
    assert alice.named("received_message") == []


def test_strangers_racing_a_new_replica_after_a_redis_restart_lose_their_seats(
    redis_server, relay_factory, clients
):
    """Redis restarts empty while the members' replica is paused; a new replica starts and
    beats first, so it knows no older epoch and (before) opened no resync window: strangers
    took both seats and the members were then dropped with room_full."""
    old = relay_factory(redis_server.url, extra_args=["--heartbeat-seconds", "20"])
    alice, bob, _ = paired(clients, old.url, old.url, "gap")
    want = {alice.sio.get_sid(), bob.sio.get_sid()}
    os.kill(old.proc.pid, signal.SIGSTOP)
    strangers = []
    try:
        redis_server.restart()  # same port, empty data set
        new = relay_factory(redis_server.url)  # healthy = its first heartbeat is done
        for name in ("alice", "bob"):
            auth = seat_auth("gap", name, new_secret(), new_instance())
            strangers.append(clients(new.url, auth).connect())
    finally:
        os.kill(old.proc.pid, signal.SIGCONT)
    raw = redis.Redis.from_url(redis_server.url)
    wait_for(
        lambda: set(seat_sids(redis_server.url, "gap")) == want,
        timeout=40,
        what="the members' seats restored",
    )
    for s in strangers:
        assert s.disconnected.wait(15), new.log()
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()
    assert "room_full" not in error_codes(alice) + error_codes(bob)
    alice.emit("message", "after the restart")
    bob.wait_for_payload("received_message", "after the restart")
    # Once the window is over, a stranger meets two owned seats.
    wait_for(lambda: not raw.exists(RESYNC_KEY), timeout=40, what="resync window over")
    late = clients(new.url, seat_auth("gap", "eve", new_secret(), new_instance()))
    assert late.try_connect()["data"]["code"] == "room_full"
    assert all(s.named("received_message") == [] for s in strangers)


def test_a_seat_resumed_on_the_other_replica_while_the_old_connection_lives(
    two_relays, redis_server, clients
):
    """Issue 10: `_JOIN`'s cross-replica rejoin. alice's client lost its link to r1 (r1 did
    not notice) and resumes on r2 with the same secret and instance."""
    r1, r2 = two_relays
    alice, bob, (secret, inst) = paired(clients, r1.url, r2.url, "xr")
    stale = alice.sio.get_sid()
    moved = clients(r2.url, seat_auth("xr", "alice", secret, inst)).connect()
    assert moved.wait_for("KEY_EXCHANGE") == [1]
    assert alice.disconnected.wait(15), r1.log()  # r2 told r1 to drop it
    assert seat_sids(redis_server.url, "xr").count(moved.sio.get_sid()) == 1
    assert stale not in seat_sids(redis_server.url, "xr")
    wait_for(lambda: r1.health()["connections"] == 0, timeout=10, what="r1 holding nothing")
    bob.emit("message", "to the resumed alice")
    moved.wait_for_payload("received_message", "to the resumed alice")
    moved.emit("message", "from r2")
    bob.wait_for_payload("received_message", "from r2")
    assert alice.named("received_message") == []
    assert "peer_left" not in bob.names()  # the seat moved, nobody left
    assert '"replaced"' in r2.log() and stale in r2.log()
    time.sleep(0.5)
    assert bob.named("received_message") == ["from r2"]
