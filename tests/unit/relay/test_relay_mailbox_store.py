"""Offline-delivery stores: one contract suite, run against the in-memory store and Redis.

The Redis store runs against a real redis-server. Time: the memory store gets a fake clock;
the Redis scripts read Redis's own clock, so an expiry test uses a short TTL and waits.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import replace

import pytest

from parley_relay.mailbox import Limits, seat_tag
from parley_relay.memory_mailbox import MemoryMailbox
from parley_relay.redis_mailbox import INDEX_KEY, RedisMailbox
from parley_relay.redis_store import RedisStore, make_client, room_key
from parley_relay.store import Conn, JoinRequest, MemoryStore

ALICE, BOB, EVE = (hashlib.sha256(n.encode()).hexdigest() for n in ("alice", "bob", "eve"))
TTL_MS = 400  # for the expiry tests: short enough to wait out on Redis


class Backend:
    """A seat store and a mailbox on it (several replicas share one backend)."""

    def __init__(self, kind: str, url: str | None):
        self.kind, self.url = kind, url
        self.now_ms = 1_700_000_000_000
        self.rooms: dict = {}
        self.clients: list = []

    def make(self, replica: str = "A", limits: Limits | None = None):
        limits = limits or Limits()
        if self.kind == "memory":
            seats = MemoryStore(replica=replica, rooms=self.rooms, clock=lambda: self.now_ms / 1e3)
            return seats, MemoryMailbox(seats, limits, clock=lambda: self.now_ms)
        client = make_client(self.url, max_connections=64)
        self.clients.append(client)
        seats = RedisStore(client, replica, heartbeat_seconds=30)
        seats.heartbeat()
        return seats, RedisMailbox(seats, limits)

    def wait_ms(self, ms: int) -> None:
        if self.kind == "memory":
            self.now_ms += ms
        else:
            time.sleep(ms / 1000)


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request):
    """Memory, one Redis, and a real Redis Cluster (whose nodes refuse a script touching
    keys of two slots: every mailbox script must stay in the room's slot)."""
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


def join(seats, room: str, sid: str, h: str, name: str = "x"):
    res = seats.join(room, JoinRequest(sid, seats.replica, name, h, "i-" + sid))
    assert res.joined, res
    return res


def away_pair(backend, limits: Limits | None = None, room: str = "r"):
    """Alice live, Bob's seat reserved by his secret (he joined once and left)."""
    seats, box = backend.make(limits=limits)
    join(seats, room, "b1", BOB, "bob")
    assert seats.leave(room, "b1").removed
    join(seats, room, "a1", ALICE, "alice")
    return seats, box


def test_store_while_away_then_backlog_in_order_and_ack_removes(backend):
    seats, box = away_pair(backend)
    ids = [box.store("r", ALICE, {"n": i}, 7).id for i in range(5)]
    assert all(ids) and len(set(ids)) == 5
    assert box.counts("r", BOB)[:2] == (5, 35)
    entries = box.backlog("r", BOB)
    assert [e.payload for e in entries] == [{"n": i} for i in range(5)]
    assert [e.id for e in entries] == ids
    assert all(abs(e.at - int(e.id.split("-")[0])) == 0 for e in entries)
    # Resuming after an id, in batches.
    assert [e.payload["n"] for e in box.backlog("r", BOB, after=ids[1], count=2)] == [2, 3]
    assert box.ack("r", BOB, [ids[0], ids[3], "1-1"]) == 2
    assert [e.payload["n"] for e in box.backlog("r", BOB)] == [1, 2, 4]
    assert box.counts("r", BOB)[:2] == (3, 21)
    assert box.ack("r", BOB, [ids[1], ids[2], ids[4]]) == 3
    assert box.backlog("r", BOB) == [] and box.counts("r", BOB)[:2] == (0, 0)


def test_live_peer_is_forwarded_not_stored(backend):
    seats, box = backend.make()
    join(seats, "r", "b1", BOB)
    join(seats, "r", "a1", ALICE)
    res = box.store("r", ALICE, "hi", 2)
    assert res.status == "live" and res.peer == Conn("A", "b1")
    assert box.counts("r", BOB)[0] == 0


def test_nobody_to_keep_it_for_is_none(backend):
    seats, box = backend.make()
    join(seats, "r", "a1", ALICE)
    assert box.store("r", ALICE, "hi", 2).status == "none"  # alone in the room
    join(seats, "r2", "b1", "")  # the original client (no secret) away -> no mailbox
    assert seats.leave("r2", "b1").removed
    join(seats, "r2", "a2", ALICE)
    assert box.store("r2", ALICE, "hi", 2).status == "none"
    # A sender that holds no seat (or has no secret) never stores.
    _, _ = away_pair(backend, room="r3")
    assert box.store("r3", EVE, "x", 1).status == "none"
    assert box.store("r3", "", "x", 1).status == "none"
    assert box.counts("r3", BOB)[0] == 0


def test_join_between_stores_switches_to_live_atomically(backend):
    seats, box = away_pair(backend)
    assert box.store("r", ALICE, "1", 1).status == "stored"
    join(seats, "r", "b2", BOB, "bob")
    res = box.store("r", ALICE, "2", 1)
    assert res.status == "live" and res.peer == Conn("A", "b2")
    assert [e.payload for e in box.backlog("r", BOB)] == ["1"]


def test_limits_messages_and_bytes_full_changes_nothing(backend):
    _, box = away_pair(backend, Limits(max_messages=3, max_bytes=100))
    for i in range(3):
        assert box.store("r", ALICE, str(i), 10).status == "stored"
    assert box.store("r", ALICE, "x", 10).status == "full"
    assert box.counts("r", BOB)[:2] == (3, 30)
    _, box2 = away_pair(backend, Limits(max_messages=50, max_bytes=100), room="b")
    assert box2.store("b", ALICE, "a", 60).status == "stored"
    assert box2.store("b", ALICE, "b", 41).status == "full"
    assert box2.store("b", ALICE, "c", 40).status == "stored"
    assert box2.counts("b", BOB)[:2] == (2, 100)


def test_expiry_drops_old_entries_and_notices_reach_their_sender(backend):
    seats, box = away_pair(backend, Limits(ttl_ms=TTL_MS))
    old = box.store("r", ALICE, "old", 3).id
    backend.wait_ms(TTL_MS + 200)
    assert box.backlog("r", BOB) == []  # never handed out once expired
    new = box.store("r", ALICE, "new", 3)
    assert new.status == "stored" and new.expired == 1  # dropped at store time
    assert box.take_expired("r", BOB) == []  # notices are the sender's only
    assert box.take_expired("r", ALICE) == [old]
    assert box.take_expired("r", ALICE) == []  # handed out once
    # "new" must not expire before the reads below however long the machine stalls here (a
    # stall of TTL_MS failed this line): the reader's TTL is long from now on. The backlog
    # filters by age at read time, so this checks that "old" is gone, not that it is too old.
    box.limits = replace(box.limits, ttl_ms=3_600_000)
    assert [e.payload for e in box.backlog("r", BOB)] == ["new"]
    assert box.counts("r", BOB)[:2] == (1, 3)


def test_janitor_expires_and_names_live_senders(backend):
    seats, box = away_pair(backend, Limits(ttl_ms=TTL_MS))
    ids = [box.store("r", ALICE, str(i), 1).id for i in range(3)]
    backend.wait_ms(TTL_MS + 200)
    told = box.expire_all()
    assert told == [("r", Conn("A", "a1"))]
    assert sorted(box.take_expired("r", ALICE)) == sorted(ids)
    assert box.counts("r", BOB)[:2] == (0, 0)
    assert box.expire_all() == []
    if backend.kind == "redis":  # the emptied mailbox left the janitor's index
        assert box.client.scard(INDEX_KEY) == 0


def test_expire_on_drain_tells_the_connected_sender(backend):
    seats, box = away_pair(backend, Limits(ttl_ms=TTL_MS))
    box.store("r", ALICE, "x", 1)
    backend.wait_ms(TTL_MS + 200)
    join(seats, "r", "b2", BOB)
    assert box.expire("r", BOB) == [Conn("A", "a1")]
    assert len(box.take_expired("r", ALICE)) == 1


def test_ack_touches_only_the_named_seats_mailbox(backend):
    seats, box = away_pair(backend)
    ids = [box.store("r", ALICE, str(i), 1).id for i in range(3)]
    # Alice (or anyone) acking Bob's ids under her own seat deletes nothing of Bob's.
    assert box.ack("r", ALICE, ids) == 0
    assert box.ack("other-room", BOB, ids) == 0
    assert box.counts("r", BOB)[0] == 3


def test_release_drops_the_seats_mailbox_and_prekeys(backend):
    seats, box = away_pair(backend)
    box.store("r", ALICE, "x", 1)
    box.put_prekeys("r", BOB, {"spk": "1"}, [{"id": "0" * 16, "dh": "ab"}])
    box.drop_seat("r", BOB)
    assert box.counts("r", BOB) == (0, 0, 0)
    assert box.backlog("r", BOB) == []


def test_prekeys_replace_bundle_append_capped_and_dedup(backend):
    seats, box = backend.make(limits=Limits(prekeys_max=5))
    join(seats, "r", "b1", BOB)
    keys = [{"id": f"{i:016x}", "dh": f"{i:02x}"} for i in range(4)]
    assert box.put_prekeys("r", BOB, {"v": 1}, keys) == 4
    assert box.put_prekeys("r", BOB, None, keys[:2]) == 4  # known ids are not added twice
    more = [{"id": f"{i:016x}", "dh": "ff"} for i in range(10, 14)]
    assert box.put_prekeys("r", BOB, {"v": 2}, more) == 5  # capped
    assert box.put_prekeys("r", BOB, None, []) == 5
    join(seats, "r", "a1", ALICE)
    got = box.fetch_prekeys("r", ALICE)
    assert got.bundle == {"v": 2} and got.one_time == keys[0]


def test_fetch_pops_each_one_time_key_once_then_none(backend):
    seats, box = away_pair(backend, Limits(fetch_window_ms=0))
    keys = [{"id": f"{i:016x}", "dh": "aa"} for i in range(3)]
    box.put_prekeys("r", BOB, {"b": 1}, keys)
    got = [box.fetch_prekeys("r", ALICE) for _ in range(4)]
    assert [g.one_time for g in got] == [*keys, None]
    assert all(g.bundle == {"b": 1} for g in got)
    # Bob's own seat is not "the other seat" for Bob; a stranger has no seat.
    assert box.fetch_prekeys("r", EVE) is None
    assert box.fetch_prekeys("nowhere", ALICE) is None


def test_fetch_without_bundle_or_peer_is_none(backend):
    seats, box = backend.make()
    join(seats, "r", "a1", ALICE)
    assert box.fetch_prekeys("r", ALICE) is None
    join(seats, "r", "b1", BOB)
    assert box.fetch_prekeys("r", ALICE) is None  # Bob published nothing


def test_concurrent_fetchers_never_share_a_one_time_key(redis_server):
    b = Backend("redis", redis_server.url)
    try:
        seats, box = away_pair(b, Limits(fetch_window_ms=0))
        keys = [{"id": f"{i:016x}", "dh": "ab"} for i in range(100)]
        box.put_prekeys("r", BOB, {"b": 1}, keys)
        boxes = [b.make(f"R{i}", Limits(fetch_window_ms=0))[1] for i in range(8)]
        got: list = []
        lock = threading.Lock()

        def fetch(mb):
            for _ in range(20):
                one = mb.fetch_prekeys("r", ALICE).one_time
                with lock:
                    got.append(one)

        threads = [threading.Thread(target=fetch, args=(mb,)) for mb in boxes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        handed = [g["id"] for g in got if g]
        assert len(handed) == 100 and len(set(handed)) == 100
        assert got.count(None) == 60
    finally:
        for c in b.clients:
            c.close()


def test_redis_keys_live_in_the_rooms_slot_and_expire(redis_server):
    b = Backend("redis", redis_server.url)
    try:
        _, box = away_pair(b, room="r9")
        box.store("r9", ALICE, "x", 1)
        box.put_prekeys("r9", BOB, {"b": 1}, [{"id": "1" * 16, "dh": "ab"}])
        tag = seat_tag(BOB)
        for part in (f"mbox:{tag}", f"mbytes:{tag}", f"prekeys:{tag}", f"otk:{tag}"):
            key = room_key("r9", part)
            assert key.startswith("parley:{r9}:")
            assert box.client.pttl(key) > 0, key
        assert BOB not in "".join(box.client.keys("*"))  # only the tag, never more
    finally:
        for c in b.clients:
            c.close()


def test_redis_index_names_each_mailbox_that_holds_entries(redis_server):
    """The janitor's index lists room|tag of every non-empty mailbox, whichever seat asked."""
    b = Backend("redis", redis_server.url)
    try:
        seats, box = away_pair(b, room="ix")
        assert box.store("ix", ALICE, "for bob", 7).status == "stored"
        assert seats.leave("ix", "a1").removed  # alice away now, bob back
        join(seats, "ix", "b2", BOB, "bob")
        assert box.store("ix", BOB, "for alice", 9).status == "stored"
        assert box.store("ix", BOB, "again", 5).status == "stored"
        members = box.client.smembers(INDEX_KEY)
        assert members == {f"ix|{seat_tag(BOB)}", f"ix|{seat_tag(ALICE)}"}
        assert box.peer_tags[("ix", seat_tag(BOB))] == seat_tag(ALICE)
    finally:
        for c in b.clients:
            c.close()
