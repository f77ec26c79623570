"""The relay's WSGI application: Socket.IO plus `/healthz` and `/metrics`.

`make_app(settings, manager)` builds everything from settings and a client manager (a
`ParleyRedisManager` across replicas, or None for python-socketio's in-memory manager) and
returns a `Relay` bundle; `server.py` serves it with gevent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import socketio

from .config import Settings
from .core import Router
from .eiobounds import GuardedServer
from .handlers import RelayNamespace
from .logs import LOGGER_NAME, log_event
from .metrics import Metrics
from .store import MembershipStore, MemoryStore


@dataclass
class Relay:
    """Everything one relay process runs, wired together."""

    settings: Settings
    sio: socketio.Server
    namespace: RelayNamespace
    store: MembershipStore
    metrics: Metrics
    manager: socketio.Manager | None
    wsgi: object = None
    shutting_down: bool = False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(LOGGER_NAME))

    def redis_status(self) -> str:
        """ "disabled" without Redis, else "ok" only if Redis answers and we are subscribed."""
        if self.settings.redis_url is None:
            return "disabled"
        subscribed = getattr(self.manager, "subscribed", True)
        return "ok" if subscribed and self.store.ping() else "down"

    def health(self) -> tuple[int, dict]:
        """(HTTP status, body) for /healthz: 503 while Redis is down or shutting down."""
        redis_status = self.redis_status()
        self.metrics.redis_up.set(1 if redis_status != "down" else 0)
        if self.shutting_down:
            status = "shutting_down"
        elif redis_status == "down":
            status = "unavailable"
        else:
            status = "ok"
        body = {
            "status": status,
            "replica": self.settings.replica_id,
            "connections": len(self.namespace.conns),
            "redis": redis_status,
        }
        return (200 if status == "ok" else 503), body

    def refresh_gauges(self) -> None:
        """Recompute gauges that are cheaper to derive than to track per event."""
        conns = list(self.namespace.conns.values())
        self.metrics.connections.set(len(conns))
        self.metrics.rooms.set(len({c.identity.room for c in conns}))


class Utf8Json:
    """The JSON module Socket.IO encodes with: UTF-8 text, no \\u escapes for non-ASCII.

    The payload limit is measured on exactly this form (core.payload_size), so what the
    relay forwards (and publishes to Redis) is never bigger than the limit says (L2).
    """

    @staticmethod
    def dumps(obj, **kwargs):
        return json.dumps(obj, ensure_ascii=False, **kwargs)

    loads = staticmethod(json.loads)


class RelayServer(GuardedServer, socketio.Server):
    """socketio.Server that survives packets it cannot decode.

    python-socketio raises out of its Engine.IO message handler on an undecodable packet
    (junk type byte, broken JSON, stray binary frame); Engine.IO then logs a traceback for
    every junk frame and keeps the connection, so any client could fill the log at will.
    Like the reference JavaScript server we close that connection instead, with one
    `bad_packet` log line that holds no payload. Our own handlers never raise (handlers.py).
    """

    relay_logger: logging.Logger = logging.getLogger(LOGGER_NAME)

    def _handle_eio_message(self, eio_sid, data):
        try:
            super()._handle_eio_message(eio_sid, data)
        except Exception as exc:
            log_event(
                self.relay_logger,
                "bad_packet",
                logging.WARNING,
                error=type(exc).__name__,
                # Engine.IO hands over digits-only messages as an int
                bytes=len(data) if isinstance(data, str | bytes) else 0,
            )
            self._binary_packet.pop(eio_sid, None)
            try:
                self.eio.disconnect(eio_sid)
            except Exception:
                log_event(self.relay_logger, "bad_packet_disconnect_failed", logging.WARNING)


def _http_app(relay: Relay):
    """Plain WSGI app for the non-Socket.IO paths."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain")])
            return [b"method not allowed\n"]
        if path == "/healthz":
            code, body = relay.health()
            reason = "OK" if code == 200 else "Service Unavailable"
            start_response(f"{code} {reason}", [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        if path == "/metrics":
            relay.health()  # refresh parley_relay_redis_up
            relay.refresh_gauges()
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
            return [relay.metrics.render()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def make_app(
    settings: Settings,
    manager: socketio.Manager | None = None,
    store: MembershipStore | None = None,
    logger: logging.Logger | None = None,
) -> Relay:
    """Build the Socket.IO server, namespace, metrics and WSGI app for `settings`."""
    logger = logger or logging.getLogger(LOGGER_NAME)
    if store is None:
        store = MemoryStore(replica=settings.replica_id)
    metrics = Metrics()
    sio = RelayServer(
        async_mode="gevent",
        client_manager=manager,
        cors_allowed_origins=(
            list(settings.cors_origins)
            if isinstance(settings.cors_origins, tuple)
            else settings.cors_origins
        ),
        # Handle a connection's events in order, in its own greenlet: the end-to-end
        # protocol rejects reordered envelopes, so the relay must never reorder them.
        async_handlers=False,
        # Engine.IO refuses a long-polling body larger than this (from its Content-Length).
        # Websocket frames are bounded by fastws from their header, at max_frame_bytes: room
        # for a payload at the limit even fully \u-escaped, so ordinary oversize payloads
        # get a clear payload_too_large error; only absurd ones cost the sender its connection.
        max_http_buffer_size=max(1_000_000, settings.max_frame_bytes),
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        json=Utf8Json,
        logger=False,
        engineio_logger=False,
    )
    sio.relay_logger = logger
    sio.configure_bounds(settings)
    router = Router(settings.max_message_bytes, settings.rate_limit)
    namespace = RelayNamespace(settings, router, store, metrics, logger)
    sio.register_namespace(namespace)
    relay = Relay(
        settings=settings,
        sio=sio,
        namespace=namespace,
        store=store,
        metrics=metrics,
        manager=manager,
        log=logger,
    )
    relay.wsgi = socketio.WSGIApp(sio, _http_app(relay))
    return relay
