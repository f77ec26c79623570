"""Relay-wide bounds of the offline-delivery stores (security review findings 1-3), for the
memory store, one Redis and a Redis Cluster (the `backend` fixture of the contract suite)."""

from __future__ import annotations

import hashlib

import pytest

from parley_relay.budget import RedisBudget
from parley_relay.mailbox import Full, Limits, seat_tag
from parley_relay.redis_store import room_key
from tests.unit.relay.test_relay_mailbox_store import ALICE, BOB, TTL_MS, Backend, away_pair, join
from tests.unit.relay.test_relay_mailbox_store import backend as backend  # noqa: F401 - fixture

CAROL, DAVE = (hashlib.sha256(n.encode()).hexdigest() for n in ("carol", "dave"))


def used(box) -> int:
    return box.used if hasattr(box, "used") else box.budget.used()


def rooms(back, limits: Limits, names):
    """One seat store + mailbox; in each room, Bob's seat away and Alice live (as the
    review's attacker: one client holding both seats of several free rooms)."""
    seats, box = back.make(limits=limits)
    for room in names:
        join(seats, room, f"b-{room}", BOB, "bob")
        assert seats.leave(room, f"b-{room}").removed
        join(seats, room, f"a-{room}", ALICE, "alice")
    return seats, box


def test_budget_bounds_all_rooms_together_and_ack_frees_it(backend):
    # Per seat 1,000 bytes would allow 3,000 here; the relay-wide budget allows 250.
    limits = Limits(max_bytes=1000, total_bytes=250)
    _, box = rooms(backend, limits, ["r1", "r2", "r3"])
    stored = [box.store(r, ALICE, "x" * 10, 100) for r in ("r1", "r2", "r3")]
    assert [s.status for s in stored] == ["stored", "stored", "full"]
    assert box.counts("r3", BOB)[:2] == (0, 0)  # nothing kept for the refused one
    assert used(box) == 200
    with pytest.raises(Full):  # prekeys count too
        box.put_prekeys("r3", ALICE, {"k": "y" * 80}, [])
    assert box.ack("r1", BOB, [stored[0].id]) == 1
    assert used(box) == 100
    assert box.store("r3", ALICE, "x", 100).status == "stored"
    box.drop_seat("r2", BOB)  # a released seat gives its bytes back
    assert used(box) == 100
    assert box.put_prekeys("r2", ALICE, {"k": 1}, [{"id": "1" * 16, "dh": "ab"}]) == 1
    assert 100 < used(box) <= 250


def test_expiry_gives_the_budget_back(backend):
    _, box = rooms(backend, Limits(ttl_ms=TTL_MS, total_bytes=150), ["e1", "e2"])
    assert box.store("e1", ALICE, "x", 100).status == "stored"
    assert box.store("e2", ALICE, "x", 100).status == "full"
    backend.wait_ms(TTL_MS + 200)
    box.expire_all()
    assert used(box) == 0
    assert box.store("e2", ALICE, "x", 100).status == "stored"


def test_prekey_bytes_follow_publish_fetch_release_and_key_expiry(backend):
    seats, box = away_pair(backend, Limits(fetch_window_ms=0, total_bytes=10_000))
    keys = [{"id": f"{i:016x}", "dh": "ab" * 50} for i in range(4)]
    box.put_prekeys("r", BOB, {"b": "c" * 100}, keys)
    full = used(box)
    assert full >= 100 + 4 * 100
    box.put_prekeys("r", BOB, {"b": "c" * 100}, keys)  # a republish counts nothing twice
    assert used(box) == full
    box.fetch_prekeys("r", ALICE)
    assert full - 150 < used(box) < full - 100  # one key handed out: its bytes are free
    with pytest.raises(Full):
        box.put_prekeys("r", ALICE, {"b": "d" * 9_500}, [])
    if backend.kind == "memory":
        box.drop_seat("r", BOB)
    else:  # as the keys' own TTL would; the janitor's round notices
        tag = seat_tag(BOB)
        box.client.delete(room_key("r", f"prekeys:{tag}"), room_key("r", f"otk:{tag}"))
        box.expire_all()
    assert used(box) == 0


def test_a_redelivered_live_line_counts_and_reaches_the_seat(backend):
    seats, box = rooms(backend, Limits(total_bytes=150), ["d1"])
    res = box.deliver("d1", BOB, {"live": 1}, 100)  # Bob away: into his mailbox
    assert res.status == "stored" and used(box) == 100
    assert [e.payload for e in box.backlog("d1", BOB)] == [{"live": 1}]
    assert box.deliver("d1", BOB, {"live": 2}, 100).status == "full"
    join(seats, "d1", "b2", BOB, "bob")
    live = box.deliver("d1", BOB, {"live": 3}, 100)
    assert live.status == "live" and live.peer.sid == "b2"
    assert box.deliver("d1", CAROL, "x", 1).status == "none"  # no such seat


def test_one_asker_gets_the_same_one_time_key_within_the_window(backend):
    _, box = away_pair(backend, Limits(fetch_window_ms=TTL_MS))
    keys = [{"id": f"{i:016x}", "dh": "aa"} for i in range(5)]
    box.put_prekeys("r", BOB, {"b": 1}, keys)
    got = [box.fetch_prekeys("r", ALICE).one_time for _ in range(50)]
    assert got == [keys[0]] * 50  # a fetch loop takes one key, not all of them
    assert box.counts("r", BOB)[2] == 4
    backend.wait_ms(TTL_MS + 100)
    assert box.fetch_prekeys("r", ALICE).one_time == keys[1]


def test_memory_prekeys_expire_with_the_seat_ttl():
    """(Redis keys carry their own TTL: test_redis_keys_live_in_the_rooms_slot_and_expire.)"""
    memory = Backend("memory", None)
    seats, box = memory.make()
    join(seats, "m", "b1", BOB)
    box.put_prekeys("m", BOB, {"b": 1}, [{"id": "2" * 16, "dh": "ab"}])
    assert box.used > 0
    memory.wait_ms(int(seats.seat_ttl * 1000) + 1)
    box.expire_all()
    assert box.used == 0 and not box.bundles and not box.one_time


def test_redis_budget_buckets_expire_on_their_own(redis_server):
    """A byte never given back (a relay died between reserve and store) heals by TTL."""
    b = Backend("redis", redis_server.url)
    try:
        _, box = away_pair(b, Limits(ttl_ms=TTL_MS))
        budget = RedisBudget(box.client, 500, TTL_MS)
        bucket = budget.reserve(400)
        assert bucket is not None and budget.reserve(200) is None
        ttl = box.client.pttl(budget.key(bucket))
        assert 0 < ttl <= TTL_MS + 2 * budget.step + 60_000
        assert "{g}" in budget.key(bucket)  # one slot for all buckets
        box.client.delete(budget.key(bucket))  # as its TTL would
        assert budget.reserve(400) is not None
    finally:
        for c in b.clients:
            c.close()


def test_redis_expired_notices_keep_their_ttl_after_a_partial_take(redis_server):
    b = Backend("redis", redis_server.url)
    try:
        _, box = away_pair(b, Limits(ttl_ms=TTL_MS))
        # Notices for two sender seats in the room's list: Alice's and another one's.
        key = room_key("r", "expired")
        box.client.rpush(key, f"{ALICE[:16]}|1-0", f"{DAVE[:16]}|2-0")
        box.client.pexpire(key, 60_000)
        assert box.take_expired("r", ALICE) == ["1-0"]
        assert box.client.lrange(key, 0, -1) == [f"{DAVE[:16]}|2-0"]
        assert 0 < box.client.pttl(key) <= 60_000  # not -1: the key would live for ever
    finally:
        for c in b.clients:
            c.close()
