"""Membership stores: the in-memory one and the Redis one obey the same rules.

The Redis store runs against a real redis-server (the `redis_server` fixture).
"""

from __future__ import annotations

import threading

import pytest
import redis

from parley_relay.redis_store import PREFIX, RedisStore, make_client
from parley_relay.store import Member, MemoryStore


@pytest.fixture(params=["memory", "redis"])
def make_store(request):
    """Factory for stores that share one backend (one per replica id)."""
    if request.param == "memory":
        shared = MemoryStore(replica="A")

        def factory(replica: str = "A"):
            return shared

        yield factory
        return
    server = request.getfixturevalue("redis_server")
    clients = []

    def factory(replica: str = "A"):
        client = make_client(server.url, max_connections=16)
        clients.append(client)
        store = RedisStore(client, replica, heartbeat_seconds=30)
        store.heartbeat()
        return store

    yield factory
    for client in clients:
        client.close()


def m(sid, name, replica="A"):
    return Member(sid=sid, name=name, replica=replica)


def test_two_join_third_is_refused(make_store):
    store = make_store()
    assert store.join("r", m("s1", "alice")).joined
    second = store.join("r", m("s2", "bob"))
    assert second.joined
    assert {x.sid for x in second.members} == {"s1", "s2"}
    third = store.join("r", m("s3", "carol"))
    assert not third.joined
    assert {x.name for x in third.members} == {"alice", "bob"}
    # The refusal changed nothing.
    assert {x.sid for x in store.join("r", m("s2", "bob")).members} == {"s1", "s2"}


def test_rooms_are_independent(make_store):
    store = make_store()
    for sid in ("a1", "a2"):
        assert store.join("ra", m(sid, sid)).joined
    assert store.join("rb", m("b1", "b1")).joined
    assert len(store.join("rb", m("b2", "b2")).members) == 2


def test_leave_frees_the_seat_and_reports_once(make_store):
    store = make_store()
    store.join("r", m("s1", "alice"))
    store.join("r", m("s2", "bob"))
    assert store.leave("r", "s1") is True
    assert store.leave("r", "s1") is False
    assert store.leave("nowhere", "s9") is False
    assert store.join("r", m("s3", "carol")).joined


def test_same_name_replaces_stale_session_when_full(make_store):
    store = make_store()
    store.join("r", m("s1", "alice"))
    store.join("r", m("s2", "bob"))
    res = store.join("r", m("s3", "alice"))
    assert res.joined
    assert res.replaced is not None and res.replaced.sid == "s1"
    assert {x.sid for x in res.members} == {"s2", "s3"}
    assert store.leave("r", "s1") is False  # the old session is gone already


def test_anonymous_never_replaces(make_store):
    store = make_store()
    store.join("lobby", m("s1", "anonymous"))
    store.join("lobby", m("s2", "anonymous"))
    res = store.join("lobby", m("s3", "anonymous"))
    assert not res.joined and res.replaced is None


def test_duplicate_names_in_full_room_do_not_replace(make_store):
    store = make_store()
    store.join("r", m("s1", "alice"))
    store.join("r", m("s2", "alice"))
    assert not store.join("r", m("s3", "alice")).joined


def test_cross_replica_membership_and_pruning(redis_server):
    a = RedisStore(make_client(redis_server.url), "A", heartbeat_seconds=30)
    b = RedisStore(make_client(redis_server.url), "B", heartbeat_seconds=0.3)
    a.heartbeat()
    b.heartbeat()
    assert a.join("r", m("s1", "alice", "A")).joined
    assert b.join("r", m("s2", "bob", "B")).joined
    assert not a.join("r", m("s3", "carol", "A")).joined
    # B stops heartbeating: its key expires, A's janitor prunes bob and reports it.
    client = redis.Redis.from_url(redis_server.url)
    client.delete(f"{PREFIX}alive:B")
    pruned = a.prune_dead()
    assert [(p.room, p.member.sid, p.member.name) for p in pruned] == [("r", "s2", "bob")]
    assert a.prune_dead() == []  # exactly once
    assert {x.sid for x in a.members("r")} == {"s1"}
    assert a.join("r", m("s3", "carol", "A")).joined


def test_join_prunes_ghosts_even_before_the_janitor(redis_server):
    a = RedisStore(make_client(redis_server.url), "A", heartbeat_seconds=30)
    b = RedisStore(make_client(redis_server.url), "B", heartbeat_seconds=30)
    a.heartbeat()
    b.heartbeat()
    a.join("r", m("s1", "alice", "A"))
    b.join("r", m("s2", "bob", "B"))
    redis.Redis.from_url(redis_server.url).delete(f"{PREFIX}alive:B")
    assert a.join("r", m("s3", "carol", "A")).joined


def test_heartbeat_reports_lost_state(redis_server):
    store = RedisStore(make_client(redis_server.url), "A", heartbeat_seconds=30)
    assert store.heartbeat() is True  # first beat: nothing was there
    assert store.heartbeat() is False
    redis.Redis.from_url(redis_server.url).flushall()
    assert store.heartbeat() is True


def test_close_deregisters(redis_server):
    store = RedisStore(make_client(redis_server.url), "A", heartbeat_seconds=30)
    store.heartbeat()
    store.close()
    raw = redis.Redis.from_url(redis_server.url)
    assert not raw.exists(f"{PREFIX}alive:A")
    assert not raw.sismember(f"{PREFIX}replicas", "A")


def test_concurrent_joins_never_make_a_room_of_three(redis_server):
    """40 threads race for one room through separate connections: exactly two get in."""
    store = RedisStore(make_client(redis_server.url, max_connections=64), "A", 30)
    store.heartbeat()
    results = []
    barrier = threading.Barrier(40)

    def join(i):
        barrier.wait()
        results.append(store.join("race", m(f"s{i}", f"n{i}")).joined)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 2
    assert len(store.members("race")) == 2
