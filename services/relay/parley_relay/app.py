"""The relay's WSGI application: Socket.IO plus `/healthz` and `/metrics`.

`make_app(settings, store, bus)` builds everything from settings, a seat store and a bus
(`RedisStore` + `RedisBus` across replicas; the defaults are the single-process in-memory
ones) and returns a `Relay` bundle; `server.py` serves it with gevent.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import dataclass, field

import socketio

from . import codec
from .bus import LocalBus, RedisBus
from .config import Settings
from .core import Router
from .eiobounds import GuardedServer
from .handlers import RelayNamespace
from .lease import Lease
from .logs import LOGGER_NAME, log_event
from .mailbox import Limits, MailboxStore
from .memory_mailbox import MemoryMailbox
from .metrics import Metrics
from .siomanager import DirectRoomsManager
from .store import MemoryStore, SeatStore

# /healthz answers from a cached Redis ping at most this old, and at most one ping is in
# flight: forty concurrent checks cost one PING, and a slow Redis cannot pile them up (M6).
HEALTH_MAX_AGE = 1.0


class HealthProbe:
    """Cached Redis reachability; the heartbeat loop's results count as observations too."""

    def __init__(self, ping, clock=time.monotonic):
        self.ping = ping
        self.clock = clock
        self.ok = False
        self.stamp = -HEALTH_MAX_AGE
        self.in_flight = False

    def observed(self, ok: bool) -> None:
        self.ok, self.stamp = ok, self.clock()

    def check(self) -> bool:
        """The cached answer; refreshed by this caller if stale and nobody else is at it."""
        if self.clock() - self.stamp > HEALTH_MAX_AGE and not self.in_flight:
            self.in_flight = True
            try:
                self.observed(bool(self.ping()))
            except Exception:
                self.observed(False)
            finally:
                self.in_flight = False
        return self.ok


@dataclass
class Relay:
    """Everything one relay process runs, wired together."""

    settings: Settings
    sio: socketio.Server
    namespace: RelayNamespace
    store: SeatStore
    metrics: Metrics
    bus: LocalBus | RedisBus
    health_probe: HealthProbe
    wsgi: object = None
    shutting_down: bool = False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(LOGGER_NAME))

    def redis_status(self) -> str:
        """ "disabled" without Redis, else "ok" only if Redis answers and we are subscribed."""
        if self.settings.redis_url is None:
            return "disabled"
        ok = self.bus.subscribed and self.namespace.lease.valid() and self.health_probe.check()
        return "ok" if ok else "down"

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

    def metrics_allowed(self, environ: dict) -> bool:
        """/metrics needs `Authorization: Bearer <relay token>` when the relay has a token."""
        token = self.settings.token
        if token is None:
            return True
        given = environ.get("HTTP_AUTHORIZATION", "")
        expected = "Bearer " + token
        return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


# What python-socketio passes when it encodes a packet (once per forwarded message at least).
_PACKET_KWARGS = {"separators": (",", ":")}


class Utf8Json:
    """The JSON module Socket.IO encodes with: UTF-8 text, no \\u escapes for non-ASCII.

    The payload limit is measured on exactly this form (core.payload_size), so what the
    relay forwards (and publishes to Redis) is never bigger than the limit says (L2).
    """

    @staticmethod
    def dumps(obj, **kwargs):
        if kwargs == _PACKET_KWARGS:  # every Socket.IO packet: the same text, made faster
            return codec.dumps(obj)
        return json.dumps(obj, ensure_ascii=False, **kwargs)

    loads = staticmethod(codec.loads)


class JsonPacket(socketio.packet.Packet):
    """A Socket.IO packet that never carries binary attachments.

    Parley is JSON text only (binary packets are refused: eiobounds.GuardedServer), so the
    stock packet's search for bytes through every packet it builds (a recursive walk of the
    payload, for each event emitted and each ack) finds nothing, at a cost per message."""

    uses_binary_events = False


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
            if not relay.metrics_allowed(environ):
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
                )
                return [b"metrics need Authorization: Bearer <relay token>\n"]
            relay.health()  # refresh parley_relay_redis_up
            relay.refresh_gauges()
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
            return [relay.metrics.render()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def make_app(
    settings: Settings,
    store: SeatStore | None = None,
    bus: LocalBus | RedisBus | None = None,
    logger: logging.Logger | None = None,
    mailbox: MailboxStore | None = None,
) -> Relay:
    """Build the Socket.IO server, namespace, metrics and WSGI app for `settings`."""
    logger = logger or logging.getLogger(LOGGER_NAME)
    if store is None:
        store = MemoryStore(replica=settings.replica_id, seat_ttl=settings.seat_ttl_seconds)
    if mailbox is None:
        mailbox = _mailbox_for(store, settings)
    bus = bus or LocalBus()
    metrics = Metrics()
    sio = RelayServer(
        async_mode="gevent",
        # python-socketio's in-process manager: delivery across replicas is ours (bus.py);
        # its disconnect does not walk every session (siomanager.py).
        client_manager=DirectRoomsManager(),
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
        serializer=JsonPacket,
        logger=False,
        engineio_logger=False,
    )
    sio.relay_logger = logger
    sio.configure_bounds(settings)
    router = Router(settings.max_message_bytes, settings.rate_limit)
    lease = Lease(settings.heartbeat_seconds if settings.redis_url else None)
    namespace = RelayNamespace(settings, router, store, bus, metrics, logger, lease, mailbox)
    sio.register_namespace(namespace)
    bus.start(namespace.on_bus)
    relay = Relay(
        settings=settings,
        sio=sio,
        namespace=namespace,
        store=store,
        metrics=metrics,
        bus=bus,
        health_probe=HealthProbe(store.ping),
        log=logger,
    )
    relay.wsgi = socketio.WSGIApp(sio, _http_app(relay))
    return relay


def _mailbox_for(store: SeatStore, settings: Settings) -> MailboxStore:
    """The offline-delivery store next to the seat store: in Redis when the seats are."""
    limits = Limits.from_settings(settings)
    if isinstance(store, MemoryStore):
        return MemoryMailbox(store, limits)
    from .redis_mailbox import RedisMailbox

    return RedisMailbox(store, limits)
