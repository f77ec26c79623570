"""The relay's two background loops (server.py spawns both; neither ever raises).

The lease loop renews this replica's lease every third of the heartbeat TTL, and does
nothing else that could delay it: no reconciliation, pruning or mailbox expiry ever runs in
front of a renewal (before: one loop did all of it, and a reconciliation of thousands of
connections under load outlasted the lease; the replica fenced itself with Redis healthy).
Each renewal
* finds whether Redis lost its data (a new epoch): then it asks the janitor loop for a
  resync and wakes it;
* finds whether this replica was presumed dead meanwhile (frozen, cut off; also when that
  news' reply was lost): then it fences, drops every client, who then resume their seats by
  secret wherever they reconnect; so does a lease that could not be renewed for a whole TTL.

The janitor loop, in its own greenlet (one round at a time, a third of the TTL apart):
1. a resync owed: re-registers (restores) the seats of the connections this replica holds,
   inside the resync window in which strangers are refused (and evicts whoever took a
   provisional seat of such a room before the window opened);
2. vacates the seats of dead replicas and tells their peers (`peer_left`);
3. reconciles Redis with its sockets: a local connection Redis does not list is dropped, a
   seat listed under this replica without a local connection is vacated (this also retries
   leaves that failed while Redis was away), a socket python-socketio finished connecting
   behind our back is closed, and every connection's cached peers are refreshed. A resync
   asked for meanwhile stops it (Redis's answer may predate the loss, so it decides
   nothing), and so does a data set that changed while the store read it;
4. expires a round of mailboxes (offline.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import gevent.event

from .core import Rejection
from .handlers import NAMESPACE, pairs
from .logs import log_event
from .store import DataSetChanged, JoinRequest

SEAT_LOST_TEXT = "the relay lost track of this connection's seat; reconnect to resume it"

# The reconciliation walks every connection of the replica (10,000 idle ones: tens of ms of
# Python); it yields to the other greenlets after this many, so live traffic is not held up.
RECONCILE_BATCH = 256


def _pause(i: int, stop: Callable[[], bool]) -> bool:
    """Yield once every RECONCILE_BATCH steps of a long walk; True when it must stop."""
    if i % RECONCILE_BATCH == RECONCILE_BATCH - 1:
        gevent.sleep(0)
        return stop()
    return False


def _never() -> bool:
    return False


class Janitor:
    """The two loops of the module docstring and what they share: the resyncs owed."""

    def __init__(self, relay):
        self.relay = relay
        self.interval = relay.settings.heartbeat_seconds / 3
        # Resyncs asked for by the lease loop / done by the janitor loop: a resync that
        # failed half way (Redis gone again) is owed until one completes.
        self.resyncs_asked = 0
        self.resyncs_done = 0
        self.wake = gevent.event.Event()

    def resync_due(self) -> bool:
        return self.resyncs_asked != self.resyncs_done

    def renew(self) -> None:
        """One lease renewal; raises when Redis is unreachable."""
        relay = self.relay
        started = time.monotonic()
        status = relay.store.heartbeat()
        relay.namespace.lease.renewed(started)
        relay.health_probe.observed(True)
        if status == "resync":
            self.resyncs_asked += 1
            self.wake.set()
        elif status == "expired":  # once per presumption of death: always logged, even
            fence(relay, "lease_expired", log_empty=True)  # if the janitor dropped them all

    def round(self) -> None:
        """One janitor round (module docstring); raises when Redis is unreachable."""
        relay = self.relay
        if self.resync_due():
            asked = self.resyncs_asked
            resync(relay)
            self.resyncs_done = asked
        for pruned in relay.store.prune_dead():
            relay.metrics.pruned.inc()
            log_event(relay.log, "pruned", room=pruned.room, name=pruned.name)
            relay.namespace.vacated(pruned)
        if not self.resync_due():
            reconcile(relay, stop=self.resync_due)
        relay.namespace.offline.janitor_round()

    def start(self) -> None:
        """The first renewal and round, before the server listens (no client waits yet)."""
        try:
            self.renew()
            self.round()
        except Exception as exc:
            log_event(
                self.relay.log, "redis_unreachable_at_start", logging.WARNING,
                error=type(exc).__name__,
            )  # fmt: skip

    def spawn(self) -> list[gevent.Greenlet]:
        """Start both loops; they end at shutdown."""
        return [gevent.spawn(self.lease_loop), gevent.spawn(self.janitor_loop)]

    def lease_loop(self) -> None:
        """Renew the lease every `interval` (from one renewal's start to the next's)."""
        relay = self.relay
        healthy = True
        while not relay.shutting_down:
            began = time.monotonic()
            try:
                self.renew()
                if not healthy:
                    log_event(relay.log, "redis_recovered")
                healthy = True
            except Exception as exc:
                relay.health_probe.observed(False)
                if healthy:
                    log_event(
                        relay.log, "heartbeat_failed", logging.WARNING, error=type(exc).__name__
                    )
                healthy = False
                if relay.namespace.lease.lapsed():
                    fence(relay, "lease_not_renewed")
            gevent.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    def janitor_loop(self) -> None:
        """Run `round` a third of the TTL after the previous one ended (sooner for a resync);
        a round never overlaps the next, however long it takes."""
        relay = self.relay
        failing = False
        while not relay.shutting_down:
            self.wake.wait(self.interval)
            self.wake.clear()
            if relay.shutting_down:
                return
            try:
                self.round()
                failing = False
            except Exception as exc:
                if not failing:  # once per outage: the lease loop reports Redis itself
                    log_event(
                        relay.log, "janitor_failed", logging.WARNING, error=type(exc).__name__
                    )
                failing = True


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


def fence(relay, reason: str, log_empty: bool = False) -> None:
    """Drop every client: our seats may have been vacated or resumed elsewhere. Logged when
    it dropped someone, or with `log_empty` (a lapsed lease fences at every renewal that
    fails, which would repeat the line all through an outage)."""
    ns = relay.namespace
    count = len(ns.conns)
    for sid in list(ns.conns):
        ns.drop(sid, Rejection("unavailable", "relay replica lost its lease; reconnect"))
    if count or log_empty:
        log_event(relay.log, "fenced", logging.WARNING, reason=reason, connections=count)


def reconcile(relay, stop: Callable[[], bool] = _never) -> None:
    """Make this replica's sockets and Redis's seats agree (see the module docstring);
    returns early, deciding nothing more, once `stop()` says a resync is owed."""
    ns = relay.namespace
    local = set(ns.conns)
    try:
        held = relay.store.held(skip=_Busy(ns))
    except DataSetChanged:  # the next renewal sees the new epoch and asks for a resync
        return
    listed = set()
    for i, h in enumerate(held):
        if _pause(i, stop):
            return
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
    if stop():
        return
    for sid in local - listed:
        if sid in ns.conns:
            # The room is not full: its seat was vacated (this replica presumed dead) or
            # resumed elsewhere. Retrying resumes it by secret, so not a final room_full.
            ns.drop(sid, Rejection("unavailable", SEAT_LOST_TEXT))
    manager = relay.sio.manager
    for i, (sid, _) in enumerate(list(manager.get_participants(NAMESPACE, None))):
        _pause(i, _never)
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
