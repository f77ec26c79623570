"""Run the relay: gevent WSGI server, heartbeat/pruning loop, graceful SIGTERM.

Imported by `__main__` only after `gevent.monkey.patch_all()` has run.
"""

from __future__ import annotations

import logging
import signal
import sys

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from . import eiobounds, fastws
from .app import Relay, Utf8Json, make_app
from .config import Settings, listening_line
from .core import Rejection, sio_room
from .guard import BoundedServer, SampledEvents
from .logs import log_event, setup_logging
from .store import MembershipStore


def _build(settings: Settings, logger: logging.Logger) -> Relay:
    if settings.redis_url is None:
        return make_app(settings, None, logger=logger)
    # Imported here: the in-memory relay does not need redis at all.
    from .manager import ParleyRedisManager
    from .redis_store import RedisStore, make_client

    # Client names show up in Redis CLIENT LIST: which replica holds which connections.
    name = f"parley-{settings.replica_id}"
    manager = ParleyRedisManager(settings.redis_url, logger, client_name=f"{name}-pub")
    manager.json = Utf8Json  # publish what is forwarded: UTF-8, as the size limit measures
    store: MembershipStore = RedisStore(
        make_client(settings.redis_url, name=f"{name}-store"),
        settings.replica_id,
        settings.heartbeat_seconds,
    )
    return make_app(settings, manager, store=store, logger=logger)


def heartbeat_once(relay: Relay) -> None:
    """Refresh liveness, resync after Redis lost our state, prune dead replicas' members."""
    ns = relay.namespace
    if relay.store.heartbeat():
        for room, member in ns.local_members():
            result = relay.store.join(room, member)
            if not result.joined:
                # Someone took the seat while Redis forgot us: this connection must go.
                ns._safe(
                    ns.emit,
                    "error",
                    Rejection("room_full").payload(),
                    to=member.sid,
                    ignore_queue=True,
                )
                ns._safe(relay.sio.disconnect, member.sid)
        log_event(relay.log, "membership_resynced", members=len(ns.local_members()))
    for pruned in relay.store.prune_dead():
        relay.metrics.pruned.inc()
        log_event(
            relay.log,
            "pruned",
            room=pruned.room,
            sid=pruned.member.sid,
            replica=pruned.member.replica,
        )
        ns._safe(ns.emit, "peer_left", {"name": pruned.member.name}, room=sio_room(pruned.room))


def heartbeat_loop(relay: Relay) -> None:
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
            if healthy:
                log_event(relay.log, "heartbeat_failed", logging.WARNING, error=type(exc).__name__)
            healthy = False
        gevent.sleep(interval)


def shutdown(relay: Relay, server: WSGIServer, done: gevent.event.Event) -> None:
    """Graceful stop: refuse new work, disconnect every client (peer_left, membership
    removed), drop our heartbeat, then stop the server so serve_forever returns."""
    if relay.shutting_down:
        return
    relay.shutting_down = True
    try:
        _drain(relay, server)
    finally:
        done.set()


def _drain(relay: Relay, server: WSGIServer) -> None:
    log_event(relay.log, "shutdown_started", connections=len(relay.namespace.conns))
    server.close()  # stop accepting connections
    for sid in list(relay.namespace.conns):
        relay.namespace._safe(relay.sio.disconnect, sid)
    gevent.sleep(0.3)  # let the DISCONNECT frames and peer_left publishes flush
    try:
        relay.store.close()
    except Exception:
        log_event(relay.log, "deregister_failed", logging.WARNING)
    server.stop(timeout=2)
    log_event(relay.log, "shutdown_complete")


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; return the process exit code."""
    logger = setup_logging(settings.log_level)
    logger.addFilter(SampledEvents())  # client-triggered refusals: a few lines, not a flood
    fastws.install(settings.max_frame_bytes)
    eiobounds.install(settings)
    relay = _build(settings, logger)
    done = gevent.event.Event()
    server = BoundedServer(
        (settings.host, settings.port), relay.wsgi, settings, log=None, error_log=None
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, lambda: gevent.spawn(shutdown, relay, server, done))
    if settings.redis_url is not None:
        try:
            heartbeat_once(relay)
        except Exception as exc:
            log_event(
                logger, "redis_unreachable_at_start", logging.WARNING, error=type(exc).__name__
            )
        gevent.spawn(heartbeat_loop, relay)
        # Start the pub/sub listener now rather than at the first connection, so /healthz
        # reports real subscription state from the start.
        relay.sio.manager_initialized = True
        relay.sio.manager.initialize()
    try:
        server.start()
    except OSError as exc:
        log_event(
            logger,
            "listen_failed",
            logging.ERROR,
            host=settings.host,
            port=settings.port,
            error=str(exc),
        )
        print(
            f"parley-relay: cannot listen on {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    log_event(
        logger,
        "listening",
        host=settings.host,
        port=server.server_port,
        replica=settings.replica_id,
        redis=settings.redis_url is not None,
        max_connections=server.max_connections,
        max_frame_bytes=settings.max_frame_bytes,
    )
    print(listening_line(settings.host, server.server_port), flush=True)
    # Not serve_forever(): closing the listener would end it before the drain has finished.
    done.wait()
    return 0
