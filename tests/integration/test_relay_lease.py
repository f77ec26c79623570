"""The lease is renewed on its own schedule, whatever the janitor's other work costs.

Found by bench/idle.py: a relay taking 10,000 idle websockets logged `fenced
reason=lease_expired` twice and dropped every client. Lease renewal ran in the same loop
as the reconciliation, which walks every connection; one round under load outlasted two
thirds of the TTL, the lease ran out in Redis while Redis was healthy, and the replica
fenced itself.

Here the reconciliation is made slow on purpose instead of by load (which made the
test a bet on the scheduler: with a 1 s TTL and 3,000 connections it also fenced when the
machine alone held the relay up, at load 2.9 and 6.6): Redis answers the reconciliation's
first read (SMEMBERS of the replica's connections) late, through a proxy, for longer than
the whole TTL, twice. Renewals must go on meanwhile. The old single loop waited for that
read and fenced every time. The scale itself is measured by bench/idle.py, which reports
fences.

Real parts: one redis-server, one relay process whose Redis link goes through a TCP
proxy, two real Socket.IO clients seated in a room.
"""

from __future__ import annotations

import hashlib
import time

from parley_relay import redis_lua
from tests.support.proxy import TcpProxy
from tests.support.relay_clients import clients_fixture, pair  # noqa: F401 - fixture
from tests.support.servers import wait_for

# Renewals every TTL / 3 s; a renewal held up for two thirds of it loses the lease.
TTL = 2.0
# Longer than the TTL, so a renewal that waits for the read always comes too late; shorter
# than the relay's Redis socket timeout (5 s), so the read succeeds and nothing fails.
HOLD_SECONDS = 3.5
HOLDS = 2
# What a reconciliation sends first, and nothing else on a replica alone on its Redis
# (prune_dead reads the connections of dead replicas only).
RECONCILE_READ = b"SMEMBERS"
# EVALSHA names the script by its SHA-1 (Redis's naming, not a security use).
RENEWAL = hashlib.sha1(redis_lua.HEARTBEAT.encode(), usedforsecurity=False).hexdigest().encode()


def test_renewals_go_on_while_redis_holds_a_reconciliation_read(
    redis_server, relay_factory, clients
):
    proxy = TcpProxy(redis_server.port)
    try:
        relay = relay_factory(
            f"redis://127.0.0.1:{proxy.port}/0", extra_args=["--heartbeat-seconds", str(TTL)]
        )
        alice, bob = pair(clients, relay.url, relay.url, room="lease")
        renewals = proxy.watch(RENEWAL)
        wait_for(lambda: len(renewals) >= 2, timeout=10, what="renewals through the proxy")
        proxy.hold_back(RECONCILE_READ, HOLD_SECONDS, times=HOLDS)

        wait_for(lambda: len(proxy.holds) == HOLDS, timeout=30, what=f"{HOLDS} held reads")
        for start, end in proxy.holds:
            assert end - start >= HOLD_SECONDS
            during = [t for t in renewals if start <= t <= end]
            # One every TTL / 3 s: about 5 in each hold; the old loop made none.
            assert len(during) >= 2, (proxy.holds, renewals)
        time.sleep(TTL)  # a lease lost at the end of the last hold is seen by now
        log = relay.log()
        assert '"fenced"' not in log, log
        assert '"heartbeat_failed"' not in log, log
        assert '"janitor_failed"' not in log, log  # the held reads were answered
        health = relay.health()
        assert health["_status"] == 200 and health["connections"] == 2, health
        assert "disconnect" not in alice.names() + bob.names()
    finally:
        proxy.close()
