"""Seat stores: one contract suite, run against the in-memory store and the Redis one.

The Redis store runs against a real redis-server (the `redis_server` fixture). Time: the
memory store gets a fake clock; for Redis (whose scripts read Redis's own clock) a test
that needs a reservation to expire uses a short TTL and waits past it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time

import pytest
import redis

from parley_relay.redis_store import (
    LEASES_KEY,
    RESYNC_KEY,
    RedisStore,
    make_client,
    replica_key,
    room_key,
)
from parley_relay.store import Conn, Held, JoinRequest, JoinResult, MemoryStore, Pruned

LONG = 3600.0


class Backend:
    """Stores sharing one backend (one per replica), plus a way to let time pass."""

    def __init__(self, kind: str, redis_url: str | None):
        self.kind, self.url = kind, redis_url
        self.now = 1000.0
        self.shared: dict = {}
        self.clients: list = []

    def store(self, replica: str = "A", seat_ttl: float = LONG):
        if self.kind == "memory":
            # One process has one replica: all "replicas" share the rooms dict.
            return MemoryStore(
                replica=replica, seat_ttl=seat_ttl, clock=lambda: self.now, rooms=self.shared
            )
        client = make_client(self.url, max_connections=64)
        self.clients.append(client)
        store = RedisStore(client, replica, heartbeat_seconds=30, seat_ttl=seat_ttl)
        store.heartbeat()
        return store

    def pass_time(self, seconds: float) -> None:
        if self.kind == "memory":
            self.now += seconds
        else:
            time.sleep(seconds)


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request):
    """The same contract on memory, one Redis and a real Redis Cluster (whose nodes refuse
    any script touching keys of two slots: CROSSSLOT)."""
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    elif request.param == "cluster":
        cluster = request.getfixturevalue("shared_redis_cluster")
        cluster.flush()
        url = cluster.url
    b = Backend(request.param, url)
    yield b
    for c in b.clients:
        c.close()


def secret(n: int) -> str:
    return hashlib.sha256(f"secret-{n}".encode()).hexdigest()


def req(sid, name="alice", h="", inst="", replica="A"):
    return JoinRequest(sid=sid, replica=replica, name=name, secret_hash=h, instance=inst)


def test_two_join_third_is_room_full_and_changes_nothing(backend):
    store = backend.store()
    assert store.join("r", req("s1", "alice", secret(1), "i1")).joined
    second = store.join("r", req("s2", "bob", secret(2), "i2"))
    assert second.joined and second.peers == (Conn("A", "s1"),)
    assert store.join("r", req("s3", "carol", secret(3), "i3")).status == "room_full"
    assert store.join("r", req("s4", "carol")).status == "room_full"
    assert {h.sid for h in store.held()} == {"s1", "s2"}


def test_name_never_decides_a_seat(backend):
    """H1: a stranger with the member's name (and no or another secret) gets room_full."""
    store = backend.store()
    store.join("r", req("s1", "alice", secret(1), "i1"))
    store.join("r", req("s2", "bob", secret(2), "i2"))
    for attempt in (req("s3", "alice"), req("s4", "alice", secret(9), "i1")):
        res = store.join("r", attempt)
        assert res.status == "room_full" and res.replaced is None
    assert {h.sid for h in store.held()} == {"s1", "s2"}


def test_same_secret_same_instance_resumes_and_replaces(backend):
    store = backend.store("A")
    other = backend.store("B")
    store.join("r", req("s1", "alice", secret(1), "i1"))
    store.join("r", req("s2", "bob", secret(2), "i2"))
    res = other.join("r", req("s9", "alice", secret(1), "i1", replica="B"))
    assert res.joined and res.replaced == Conn("A", "s1")
    assert res.peers == (Conn("A", "s2"),)
    # The old connection no longer holds anything; its leave changes nothing.
    assert store.leave("r", "s1").removed is False
    assert {h.sid for h in store.held() + other.held()} == {"s2", "s9"}


def test_same_secret_other_instance_while_live_is_already_connected(backend):
    store = backend.store()
    store.join("r", req("s1", "alice", secret(1), "i1"))
    res = store.join("r", req("s2", "alice", secret(1), "i2"))
    assert res.status == "already_connected" and res.holder == "alice"
    assert [h.sid for h in store.held()] == ["s1"]


def test_disconnected_secret_seat_is_reserved_then_resumed_by_any_instance(backend):
    store = backend.store()
    store.join("r", req("s1", "alice", secret(1), "i1"))
    store.join("r", req("s2", "bob", secret(2), "i2"))
    left = store.leave("r", "s1")
    assert left.removed and left.name == "alice" and left.peers == (Conn("A", "s2"),)
    assert store.join("r", req("s3", "mallory")).status == "room_full"
    assert store.join("r", req("s4", "alice", secret(5), "i5")).status == "room_full"
    res = store.join("r", req("s5", "alice", secret(1), "new-process"))
    assert res.joined and res.replaced is None and res.peers == (Conn("A", "s2"),)


def test_reservation_expires_after_seat_ttl(backend):
    store = backend.store(seat_ttl=0.2)
    store.join("r", req("s1", "alice", secret(1), "i1"))
    store.join("r", req("s2", "bob", secret(2), "i2"))
    store.leave("r", "s1")
    backend.pass_time(0.6)
    assert store.join("r", req("s3", "carol", secret(3), "i3")).joined


def test_leave_with_release_frees_a_secret_seat_and_reports_once(backend):
    store = backend.store()
    store.join("r", req("s1", "alice", secret(1), "i1"))
    store.join("r", req("s2", "bob", secret(2), "i2"))
    assert store.leave("r", "s1", release=True).removed
    assert store.leave("r", "s1").removed is False
    assert store.leave("nowhere", "s9").removed is False
    assert store.join("r", req("s3", "carol", secret(3), "i3")).joined


def test_no_secret_seat_is_freed_on_leave_and_never_displaces(backend):
    store = backend.store()
    store.join("lobby", req("s1", "anonymous"))
    store.join("lobby", req("s2", "anonymous"))
    assert store.join("lobby", req("s3", "anonymous")).status == "room_full"
    left = store.leave("lobby", "s1")
    assert left.removed and left.peers == (Conn("A", "s2"),)
    # Freed at once, and a secret joiner takes it; the secret seat is never displaced.
    assert store.join("lobby", req("s4", "alice", secret(1), "i1")).joined
    assert store.join("lobby", req("s5", "anonymous")).status == "room_full"


def test_rejoin_of_the_same_connection_is_idempotent(backend):
    store = backend.store()
    store.join("r", req("s1", "x"))
    store.join("r", req("s2", "y", secret(2), "i2"))
    assert store.join("r", req("s1", "x")).joined
    assert store.join("r", req("s2", "y", secret(2), "i2")).joined
    assert len(store.held()) == 2


def test_rooms_are_independent(backend):
    store = backend.store()
    for sid in ("a1", "a2"):
        assert store.join("ra", req(sid)).joined
    assert store.join("rb", req("b1")).joined
    assert store.join("rb", req("b2")).peers == (Conn("A", "b1"),)


def test_held_lists_only_this_replicas_live_seats(backend):
    a, b = backend.store("A"), backend.store("B")
    a.join("r", req("s1", "alice", secret(1), "i1"))
    b.join("r", req("s2", "bob", secret(2), "i2", replica="B"))
    held = a.held()
    if backend.kind == "memory":  # one process, one replica: both are "ours"
        held = [h for h in held if h.sid == "s1"]
    assert [(h.room, h.sid, h.peers) for h in held] == [("r", "s1", (Conn("B", "s2"),))]
    a.leave("r", "s1")
    assert all(h.sid != "s1" for h in a.held())


def test_held_of_each_replica_lists_only_its_own_connections(backend):
    a, b = backend.store("A"), backend.store("B")
    a.join("r", req("s1", "alice", secret(1), "i1"))
    b.join("r", req("s2", "bob", secret(2), "i2", replica="B"))
    assert [h.sid for h in a.held()] == ["s1"]
    assert [h.sid for h in b.held()] == ["s2"]  # "A" sorts before "B": not a range check


def test_a_connection_is_seated_once_whatever_the_sid_order(backend):
    """Seat creation checks for this very sid, not for any sid ordering: "z" then "a" are two
    seats, and "b" re-joining a full room it sits in is still joined."""
    store = backend.store()
    assert store.join("r", req("z", "first")).joined
    assert store.join("r", req("a", "second")).joined
    assert sorted(h.sid for h in store.held()) == ["a", "z"]
    store.leave("r", "z")
    assert store.join("r", req("b", "third")).joined  # room now holds "a" and "b"
    again = store.join("r", req("b", "third"))
    assert again.joined and again.peers == (Conn("A", "a"),)
    assert sorted(h.sid for h in store.held()) == ["a", "b"]


def test_leave_takes_only_its_own_seat_never_a_reservation(backend):
    """A reserved seat has no sid; leaving must find the leaver's seat, not the first one."""
    store = backend.store()
    store.join("r", req("s1", "alice", secret(1), "i1"))
    store.leave("r", "s1")  # alice's seat is now reserved
    store.join("r", req("s2", "bob", secret(2), "i2"))
    left = store.leave("r", "s2")
    assert left.removed and left.name == "bob"
    assert store.held() == []
    assert store.join("r", req("s3", "alice", secret(1), "i9")).joined  # alice's reservation
    assert store.join("r", req("s4", "bob", secret(2), "i9")).joined  # and bob's


def test_leave_on_another_replica_takes_nothing(backend):
    a, b = backend.store("A"), backend.store("B")
    a.join("r", req("s1", "alice", secret(1), "i1"))
    b.join("r", req("s2", "bob", secret(2), "i2", replica="B"))
    assert not b.leave("r", "s1").removed  # "s1" lives on A
    assert not a.leave("r", "s2").removed  # "s2" lives on B
    assert sorted(h.sid for h in a.held() + b.held()) == ["s1", "s2"]


def test_replica_names_compare_by_value(backend):
    name = "".join(["rep", "lica-1"])  # equal to the literal, another object
    store = backend.store(name)
    store.join("r", req("s1", "alice", secret(1), "i1", replica="replica-1"))
    assert [h.sid for h in store.held()] == ["s1"]
    assert store.leave("r", "s1").removed


def test_resume_and_already_connected_whatever_the_sid_order(backend):
    """The seat rules compare sids for equality only: a newer connection whose sid sorts
    before the old one's is refused (other instance) or replaces it (same instance)."""
    store = backend.store()
    store.join("r", req("s9", "alice", secret(1), "i1"))
    refused = store.join("r", req("s1", "alice", secret(1), "i2"))
    assert refused.status == "already_connected" and refused.joined is False
    resumed = store.join("r", req("s1", "alice", secret(1), "i1"))
    assert resumed.joined and resumed.replaced == Conn("A", "s9")
    # The same connection again, its sid another (equal) str object as the network gives:
    # never told to drop itself, never its own peer.
    again = store.join("r", req("".join(["s", "1"]), "alice", secret(1), "i1"))
    assert again.joined and again.replaced is None and again.peers == ()
    plain = store.join("r", req("".join(["s", "7"]), "bob"))
    assert plain.peers == (Conn("A", "s1"),)
    assert store.join("r", req("".join(["s", "7"]), "bob")).peers == (Conn("A", "s1"),)
    # its own sid under another instance is still this connection: joined, not refused
    assert store.join("r", req("".join(["s", "1"]), "alice", secret(1), "i0")).joined
    assert store.leave("r", "".join(["s", "7"])).removed  # leave finds it by value too


def test_instances_compare_for_equality_whatever_their_order(backend):
    store = backend.store()
    store.join("r", req("s1", "alice", secret(1), "i2"))
    refused = store.join("r", req("s2", "alice", secret(1), "i1"))  # "i1" sorts first
    assert refused.status == "already_connected"
    same = "".join(["i", "2"])  # the same instance as another str object, as JSON gives it
    resumed = store.join("r", req("s3", "alice", secret(1), same))
    assert resumed.joined and resumed.replaced == Conn("A", "s1")


def test_memory_store_is_always_healthy_and_close_forgets_the_rooms():
    """/healthz asks ping(); the memory store has no backend that could be down."""
    store = MemoryStore(replica="A")
    assert store.ping() is True and store.heartbeat() == "ok" and store.prune_dead() == []
    store.join("r", req("s1"))
    store.close()
    assert store.held() == [] and store.seats("r") == []


def test_memory_store_default_reservation_lasts_seven_days():
    """PARLEY_SEAT_TTL's default: a mailbox keeps messages as long (services/relay/README.md)."""
    now = [0.0]
    store = MemoryStore(replica="A", clock=lambda: now[0])
    store.join("r", req("s1", "alice", secret(1), "i1"))
    store.join("r", req("s2", "bob", secret(2), "i2"))
    store.leave("r", "s1")
    now[0] = 7 * 24 * 3600.0 - 0.5
    assert store.join("r", req("s3", "carol", secret(3), "i3")).status == "room_full"
    now[0] = 7 * 24 * 3600.0  # the reservation ends at exactly the TTL
    assert store.join("r", req("s3", "carol", secret(3), "i3")).joined


def test_joined_is_a_boolean_the_relay_can_branch_on(backend):
    """The relay refuses on `not result.joined`: a refusal must read False, not a method."""
    store = backend.store()
    assert store.join("r", req("s1")).joined is True
    assert store.join("r", req("s2")).joined is True
    assert store.join("r", req("s3")).joined is False
    for status in ("already_connected", "room_full", "recovering"):  # sorting around "joined"
        assert JoinResult(status).joined is False
    assert JoinResult("".join(["jo", "ined"])).joined is True  # as decoded from a script reply


def test_store_results_are_immutable(backend):
    store = backend.store()
    joined = store.join("r", req("s1"))
    left = store.leave("r", "s1")
    pruned, held = Pruned("r", "alice", ()), Held("r", "s1", ())
    objects = [(joined, "status"), (left, "removed"), (pruned, "name"), (held, "sid")]
    objects += [(Conn("A", "s1"), "sid"), (req("s1"), "secret_hash")]
    for obj, attr in objects:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, "changed")


# -- Redis-only behaviour: leases, pruning, epochs, TTLs ---------------------------------------


def expire_lease(url, replica):
    """Make `replica`'s lease look run out (as if it stopped renewing it long ago)."""
    raw = redis.Redis.from_url(url)
    time.sleep(0.01)  # after the seats were taken (a lease ends after its seats' joins)
    sec, usec = raw.time()
    raw.hset(LEASES_KEY, replica, sec * 1000 + usec // 1000 - 1)


def rs(url, replica, hb=30.0, seat_ttl=LONG):
    store = RedisStore(make_client(url, max_connections=64), replica, hb, seat_ttl=seat_ttl)
    return store


def test_dead_replica_seats_are_vacated_secret_ones_stay_reserved(redis_server):
    a, b = rs(redis_server.url, "A"), rs(redis_server.url, "B")
    a.heartbeat(), b.heartbeat()
    a.join("r", req("s1", "alice", secret(1), "i1"))
    b.join("r", req("s2", "bob", secret(2), "i2", replica="B"))
    a.join("lobby", req("s3", "anonymous"))
    b.join("lobby", req("s4", "anonymous", replica="B"))
    expire_lease(redis_server.url, "B")
    a.heartbeat()  # learns that B's lease ran out
    pruned = sorted(a.prune_dead(), key=lambda p: p.room)
    assert [(p.room, p.name, p.peers) for p in pruned] == [
        ("lobby", "anonymous", (Conn("A", "s3"),)),
        ("r", "bob", (Conn("A", "s1"),)),
    ]
    assert a.prune_dead() == []  # exactly once
    # bob's seat is reserved for his secret: a stranger is refused, bob resumes.
    assert a.join("r", req("s5", "bob")).status == "room_full"
    assert a.join("r", req("s6", "bob", secret(2), "other")).joined
    assert a.join("lobby", req("s7", "anonymous")).joined  # no-secret seat was freed


def test_join_cleans_dead_connections_before_the_pruner(redis_server):
    a, b = rs(redis_server.url, "A"), rs(redis_server.url, "B")
    a.heartbeat(), b.heartbeat()
    a.join("lobby", req("s1", "anonymous"))
    b.join("lobby", req("s2", "anonymous", replica="B"))
    expire_lease(redis_server.url, "B")
    a.heartbeat()
    assert a.join("lobby", req("s3", "anonymous")).joined


def test_heartbeat_statuses(redis_server):
    raw = redis.Redis.from_url(redis_server.url)
    a, b = rs(redis_server.url, "A"), rs(redis_server.url, "B")
    assert a.heartbeat() == "ok" and a.heartbeat() == "ok"
    raw.hdel(LEASES_KEY, "A")  # presumed dead while Redis kept its data
    assert a.heartbeat() == "expired"
    assert a.heartbeat() == "ok"
    raw.flushall()  # Redis lost everything
    assert a.heartbeat() == "resync"
    assert raw.exists(RESYNC_KEY)
    assert b.heartbeat() == "ok"  # a replica that never knew the old epoch


def test_an_expired_reply_lost_on_the_way_is_reported_again(redis_server):
    """The lease was gone (presumed dead) and the beat that found out lost its reply: the
    next beat must still say "expired", or the replica serves seats others vacated."""
    raw = redis.Redis.from_url(redis_server.url)
    a = rs(redis_server.url, "A")
    assert a.heartbeat() == "ok"
    raw.hdel(LEASES_KEY, "A")
    lost = rs(redis_server.url, "A")  # the same beat, whose reply never reached A
    lost.epoch, lost.lease_token = a.epoch, a.lease_token
    assert lost.heartbeat() == "expired"
    assert a.heartbeat() == "expired"  # before: "ok" (the lost beat had renewed the lease)
    assert a.heartbeat() == "ok"


def test_first_start_opens_no_window_that_refuses_joins(redis_server):
    """A fresh data set's first replica cannot tell a first start from a Redis restart:
    its joins are granted (provisionally), never kept waiting."""
    a = rs(redis_server.url, "A")
    assert a.heartbeat() == "ok"
    assert a.join("r", req("s1", "alice", secret(1), "i1")).joined
    assert a.join("r", req("s2", "bob")).joined


def test_restore_evicts_seats_taken_before_the_resync_window_opened(redis_server):
    """M5 gap: after a Redis restart a NEW replica beat first (it knows no older epoch, so
    it opened no resync window) and strangers joined through it; the old replica's
    restores must win those seats back."""
    raw = redis.Redis.from_url(redis_server.url)
    old = rs(redis_server.url, "O")
    old.heartbeat()
    old.join("r", req("s1", "alice", secret(1), "i1"))
    old.join("r", req("s2", "bob", secret(2), "i2"))
    raw.flushall()  # Redis restarted empty
    new = rs(redis_server.url, "N")
    assert new.heartbeat() == "ok"
    eve = new.join("r", req("e1", "alice", secret(7), "i7", replica="N"))
    mallory = new.join("r", req("e2", "bob", replica="N"))
    assert eve.joined and mallory.joined
    assert old.heartbeat() == "resync"
    first = old.join("r", req("s1", "alice", secret(1), "i1", replica="O"), restore=True)
    assert first.joined and first.peers == ()  # not paired with a stranger, not even briefly
    assert set(first.evicted) == {Conn("N", "e1"), Conn("N", "e2")}
    second = old.join("r", req("s2", "bob", secret(2), "i2", replica="O"), restore=True)
    assert second.joined and second.peers == (Conn("O", "s1"),) and second.evicted == ()
    assert sorted(s["sid"] for s in old.seats("r")) == ["s1", "s2"]
    assert new.held() == []
    assert new.join("r", req("e3", "eve", secret(9), "i9", replica="N")).status == "recovering"
    raw.delete(RESYNC_KEY)
    assert new.join("r", req("e3", "eve", secret(9), "i9", replica="N")).status == "room_full"


def test_join_refused_while_the_epoch_is_unknown_or_resyncing(redis_server):
    """M5: after Redis lost its data, strangers wait; restores of known connections win."""
    raw = redis.Redis.from_url(redis_server.url)
    a = rs(redis_server.url, "A")
    a.heartbeat()
    a.join("r", req("s1", "alice", secret(1), "i1"))
    raw.flushall()
    assert a.join("r", req("s9", "eve")).status == "recovering"  # no epoch yet
    assert a.heartbeat() == "resync"
    assert a.join("r", req("s9", "eve")).status == "recovering"
    assert a.join("r", req("s8", "eve", secret(8), "i8")).status == "recovering"
    assert a.join("r", req("s1", "alice", secret(1), "i1"), restore=True).joined
    # A resume of the restored seat is fine (the member reconnecting)...
    assert a.join("r", req("s2", "alice", secret(1), "i1")).joined
    # ...a restore never takes a seat from the connection now holding it.
    assert a.join("r", req("s1", "alice", secret(1), "i1"), restore=True).status == "room_full"
    raw.delete(RESYNC_KEY)
    assert a.join("r", req("s9", "eve")).joined


def test_every_key_has_a_ttl_or_an_owner(redis_server):
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    a = rs(redis_server.url, "A")
    a.heartbeat()
    a.join("r", req("s1", "alice", secret(1), "i1"))
    a.leave("r", "s1")
    owned = {replica_key("A", "conns")}
    for key in raw.keys("parley:*"):
        assert key in owned or raw.pttl(key) > 0, key
    a.close()
    assert not raw.exists(replica_key("A", "conns")) and not raw.hexists(LEASES_KEY, "A")


def test_only_the_hash_of_the_secret_is_stored(redis_server):
    raw = redis.Redis.from_url(redis_server.url)
    a = rs(redis_server.url, "A")
    a.heartbeat()
    h = secret(1)
    a.join("r", req("s1", "alice", h, "i1"))
    dump = b"".join(raw.hvals(room_key("r", "seats")))
    assert h.encode() in dump  # the relay is handed the hash; the secret never reaches it


def test_concurrent_joins_never_make_a_room_of_three(redis_server):
    """40 threads race for one room through separate connections: exactly two get in."""
    store = rs(redis_server.url, "A")
    store.heartbeat()
    results = []
    barrier = threading.Barrier(40)

    def join(i):
        barrier.wait()
        results.append(store.join("race", req(f"s{i}", f"n{i}", secret(i), "x")).joined)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 2
    assert len(store.seats("race")) == 2


def test_versions_order_seat_changes(backend):
    """Peer updates carry the version of the seat state they describe; later changes have
    larger versions, so a replica can drop an update that crossed a newer one."""
    store = backend.store()
    first = store.join("r", req("s1", "alice", secret(1), "i1")).version
    second = store.join("r", req("s2", "bob", secret(2), "i2")).version
    resumed = store.join("r", req("s3", "alice", secret(1), "i1")).version
    left = store.leave("r", "s2").version
    assert 0 < first < second < resumed < left
