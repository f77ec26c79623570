"""The relay's background loop: lease renewal, fencing, pruning and reconciliation.

Every third of the heartbeat TTL each replica
1. renews its lease; if Redis lost its data it re-registers (restores) the seats of the
   connections it holds, inside the resync window in which strangers are refused (and
   evicts whoever took a provisional seat of such a room before the window opened); if it
   was presumed dead meanwhile (frozen, cut off; also when that news' reply was lost) it
   fences: drops every client, who then resume their seats by secret wherever they
   reconnect;
2. vacates the seats of dead replicas and tells their peers (`peer_left`);
3. reconciles Redis with its sockets: a local connection Redis does not list is dropped, a
   seat listed under this replica without a local connection is vacated (this also retries
   leaves that failed while Redis was away), a socket python-socketio finished connecting
   behind our back is closed, and every connection's cached peers are refreshed.
"""

from __future__ import annotations

import logging
import time

import gevent

from .core import Rejection
from .handlers import NAMESPACE, pairs
from .logs import log_event
from .store import JoinRequest

SEAT_LOST_TEXT = "the relay lost track of this connection's seat; reconnect to resume it"

# The reconciliation walks every connection of the replica (10,000 idle ones: tens of ms of
# Python); it yields to the other greenlets after this many, so live traffic is not held up.
RECONCILE_BATCH = 256


def _pause(i: int) -> None:
    """Yield once every RECONCILE_BATCH steps of a long walk."""
    if i % RECONCILE_BATCH == RECONCILE_BATCH - 1:
        gevent.sleep(0)


def heartbeat_once(relay) -> None:
    """One round of the loop above; raises when Redis is unreachable."""
    ns = relay.namespace
    started = time.monotonic()
    status = relay.store.heartbeat()
    ns.lease.renewed(started)
    relay.health_probe.observed(True)
    if status == "resync":
        resync(relay)
    elif status == "expired":
        fence(relay, "lease_expired")
    for pruned in relay.store.prune_dead():
        relay.metrics.pruned.inc()
        log_event(relay.log, "pruned", room=pruned.room, name=pruned.name)
        ns.vacated(pruned)
    reconcile(relay)
    ns.offline.janitor_round()


def resync(relay) -> None:
    """Redis lost its data: restore the seat of every connection this replica holds."""
    ns = relay.namespace
    lost = 0
    for sid, conn in list(ns.conns.items()):
        ident = conn.identity
        req = JoinRequest(sid, ns.me, ident.name, ident.secret_hash, ident.instance)
        result = relay.store.join(ident.room, req, restore=True)
        for conn_of_gap in result.evicted:  # took a provisional seat while we were away
            ns.kick(conn_of_gap)
        if result.joined:
            conn.peers, conn.version = pairs(result.peers), result.version
            ns.tell_peers(result.peers, ((ns.me, sid),), None, None, result.version)
        else:  # someone else holds the seat now: this connection must go
            lost += 1
            ns.drop(sid, Rejection("room_full"))
    log_event(relay.log, "membership_resynced", members=len(ns.conns), lost=lost)


def fence(relay, reason: str) -> None:
    """Drop every client: our seats may have been vacated or resumed elsewhere."""
    ns = relay.namespace
    count = len(ns.conns)
    for sid in list(ns.conns):
        ns.drop(sid, Rejection("unavailable", "relay replica lost its lease; reconnect"))
    if count:
        log_event(relay.log, "fenced", logging.WARNING, reason=reason, connections=count)


def reconcile(relay) -> None:
    """Make this replica's sockets and Redis's seats agree (see the module docstring)."""
    ns = relay.namespace
    local = set(ns.conns)
    held = relay.store.held(skip=_Busy(ns))
    listed = set()
    for i, h in enumerate(held):
        _pause(i)
        listed.add(h.sid)
        conn = ns.conns.get(h.sid)
        if conn is not None:
            if h.version >= conn.version:
                conn.peers, conn.version = pairs(h.peers), h.version
        elif h.sid not in ns.connecting:
            result = relay.store.leave(h.room, h.sid)
            if result.removed:
                log_event(relay.log, "ghost_vacated", room=h.room, sid=h.sid)
                ns.vacated(result)
    for sid in local - listed:
        if sid in ns.conns:
            # The room is not full: its seat was vacated (this replica presumed dead) or
            # resumed elsewhere. Retrying resumes it by secret, so not a final room_full.
            ns.drop(sid, Rejection("unavailable", SEAT_LOST_TEXT))
    manager = relay.sio.manager
    for i, (sid, _) in enumerate(list(manager.get_participants(NAMESPACE, None))):
        _pause(i)
        ours = sid in ns.conns or sid in ns.connecting
        if not ours and manager.is_connected(sid, NAMESPACE):
            log_event(relay.log, "stray_socket_closed", sid=sid)
            ns._safe(relay.sio.disconnect, sid, namespace=NAMESPACE)


class _Busy:
    """Sids whose registration in Redis must not be dropped as stale: still joining (their
    seat may not be written yet), or joined since the store listed them. Checked live, when
    the store decides, not when the reconciliation began."""

    def __init__(self, ns):
        self.ns = ns

    def __contains__(self, sid: object) -> bool:
        return sid in self.ns.connecting or sid in self.ns.conns


def heartbeat_loop(relay) -> None:
    """Run heartbeat_once every third of the TTL until shutdown; never raises."""
    interval = relay.settings.heartbeat_seconds / 3
    healthy = True
    while not relay.shutting_down:
        try:
            heartbeat_once(relay)
            if not healthy:
                log_event(relay.log, "redis_recovered")
            healthy = True
        except Exception as exc:
            relay.health_probe.observed(False)
            if healthy:
                log_event(relay.log, "heartbeat_failed", logging.WARNING, error=type(exc).__name__)
            healthy = False
            if relay.namespace.lease.lapsed():
                fence(relay, "lease_not_renewed")
        gevent.sleep(interval)
