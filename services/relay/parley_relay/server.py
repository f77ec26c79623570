"""Run the relay: gevent WSGI server, the lease and janitor loops (janitor.py), graceful SIGTERM.

Imported by `__main__` only after `gevent.monkey.patch_all()` has run.
"""

from __future__ import annotations

import logging
import signal
import sys

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from . import eiobounds, fastws, gcpolicy
from .app import Relay, make_app
from .config import Settings, listening_line
from .guard import BoundedServer, SampledEvents
from .janitor import Janitor
from .logs import log_event, setup_logging


def _build(settings: Settings, logger: logging.Logger) -> Relay:
    if settings.redis_url is None:
        return make_app(settings, logger=logger)
    # Imported here: the in-memory relay does not need redis at all.
    from .bus import ClusterBus, RedisBus
    from .publisher import BatchingPublisher
    from .redis_cluster import is_cluster_url
    from .redis_store import RedisStore, make_client

    # Client names show up in Redis CLIENT LIST: which replica holds which connections.
    name = f"parley-{settings.replica_id}"
    store = RedisStore(
        make_client(settings.redis_url, name=f"{name}-store"),
        settings.replica_id,
        settings.heartbeat_seconds,
        seat_ttl=settings.seat_ttl_seconds,
    )
    publisher = make_client(settings.redis_url, decode=False, name=f"{name}-pub")
    if is_cluster_url(settings.redis_url):
        bus = ClusterBus(
            settings.redis_url,
            settings.replica_id,
            publisher,
            logger,
            failover_seconds=settings.cluster_failover_seconds,
        )
    else:
        # Publishes of concurrent greenlets share a pipeline round trip (CPU per message).
        batched = BatchingPublisher(publisher)
        bus = RedisBus(settings.redis_url, settings.replica_id, batched, logger)
    return make_app(settings, store, bus, logger=logger)


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
    # Greenlets do not record who spawned them (stack, tree locals): nothing here reads it,
    # and it cost ~1 kB per greenlet, several per connection (docs/operations.md).
    gevent.config.track_greenlet_tree = False
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
    janitor = Janitor(relay)
    janitor.start()
    janitor.spawn()
    gcpolicy.apply()  # fewer full collections, the startup heap out of them
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
