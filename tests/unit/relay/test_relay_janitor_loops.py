"""The lease loop and the janitor loop (janitor.py) run apart.

Before, one loop renewed the lease and then reconciled every connection: a slow
reconciliation held up the next renewal until the lease ran out and the replica fenced
itself (bench/idle.py, 10,000 idle websockets). Here a reconciliation that cannot finish
(its store read blocked) must not stop the renewals, must not start a second round beside
itself, and a store read that saw Redis lose its data decides nothing.
"""

from __future__ import annotations

import gevent
import gevent.event
import pytest
import redis

from parley_relay.app import make_app
from parley_relay.config import Settings
from parley_relay.core import Identity
from parley_relay.janitor import Janitor, fence, reconcile
from parley_relay.lease import Lease
from parley_relay.redis_store import RedisStore
from parley_relay.store import DataSetChanged, JoinRequest

TTL = 0.3  # seconds: renewals every 0.1 s


def wait_until(predicate, timeout: float = 10.0) -> bool:
    """Let the greenlets run until `predicate` holds (False after `timeout`)."""
    with gevent.Timeout(timeout, False):
        while not predicate():
            gevent.sleep(0.01)
        return True
    return False


@pytest.fixture
def relay():
    relay = make_app(Settings(replica_id="A", heartbeat_seconds=TTL))
    relay.namespace.lease = Lease(TTL)  # as with Redis: valid only while renewed
    yield relay
    relay.shutting_down = True


def test_the_lease_keeps_being_renewed_while_a_reconciliation_is_stuck(relay):
    store = relay.store
    beats, rounds = [], []
    release = gevent.event.Event()
    real_heartbeat, real_held = store.heartbeat, store.held

    def heartbeat():
        beats.append(1)
        return real_heartbeat()

    def held(skip=frozenset()):
        rounds.append(1)
        release.wait()  # a reconciliation of thousands of connections under load
        return real_held(skip)

    store.heartbeat, store.held = heartbeat, held
    loops = Janitor(relay).spawn()
    try:
        assert wait_until(lambda: rounds), "the janitor round never started"
        before = len(beats)
        # Ten renewal intervals while the reconciliation is stuck: the old single loop
        # made none of them, and its lease ran out.
        assert wait_until(lambda: len(beats) >= before + 10), len(beats)
        assert relay.namespace.lease.valid()
        assert len(rounds) == 1  # no second round beside the stuck one
        release.set()
        assert wait_until(lambda: len(rounds) >= 2), "the janitor loop did not go on"
    finally:
        relay.shutting_down = True
        release.set()
        gevent.joinall(loops, timeout=60)
    assert all(g.dead for g in loops)


def test_a_store_read_that_saw_redis_lose_its_data_drops_no_connection(relay, redis_server):
    """Redis restarts empty between a renewal and the reconciliation's read: before the
    lease loop sees the new epoch, the read lists nothing; dropping every local
    connection as "seat lost" would be wrong (the resync restores them)."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    store = RedisStore(client, "A", heartbeat_seconds=TTL * 100)
    store.heartbeat()
    assert store.join("r1", JoinRequest("s1", "A", "alice")).joined
    relay.store = store
    ns = relay.namespace
    ns.conns["s1"] = ns.router.new_connection("s1", Identity("r1", "alice"))
    client.flushall()  # Redis lost its data
    with pytest.raises(DataSetChanged):
        store.held()
    reconcile(relay)
    assert "s1" in ns.conns
    assert store.heartbeat() == "resync"  # the lease loop asks for the resync next


def test_a_resync_asked_for_runs_before_any_reconciliation(relay, redis_server):
    """The lease loop learns of a new epoch; the janitor's next round restores the seats
    of its connections first, and only then reconciles (which then keeps them)."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    store = RedisStore(client, "A", heartbeat_seconds=TTL * 100)
    relay.store = store
    janitor = Janitor(relay)
    janitor.renew()
    assert store.join("r1", JoinRequest("s1", "A", "alice")).joined
    ns = relay.namespace
    ns.conns["s1"] = ns.router.new_connection("s1", Identity("r1", "alice"))
    client.flushall()
    janitor.renew()
    assert janitor.resync_due()
    janitor.round()
    assert not janitor.resync_due()
    assert "s1" in ns.conns
    assert [h.sid for h in store.held()] == ["s1"]


def test_being_presumed_dead_is_logged_even_when_no_connection_is_left(relay, caplog):
    """After a stop past its lease the janitor round can drop every connection (Redis no
    longer lists them) before the lease loop's renewal hears "expired"; the fence then drops
    nobody, and must still say the replica was presumed dead (r41 waited for it in vain).
    A lapsed lease during an outage fences at every failed renewal: said only when it
    dropped someone, or the line would repeat all through the outage."""
    store = relay.store
    store.heartbeat = lambda: "expired"
    janitor = Janitor(relay)
    assert relay.namespace.conns == {}
    with caplog.at_level("INFO", logger=relay.log.name):
        janitor.renew()
        fence(relay, "lease_not_renewed")
    fenced = [r for r in caplog.records if r.getMessage() == "fenced"]
    assert [r.fields for r in fenced] == [{"reason": "lease_expired", "connections": 0}]
