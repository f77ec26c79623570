"""Prometheus metrics for one relay process (a private registry per app, so tests can
build several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from .core import ERROR_TEXT, FORWARD


class Metrics:
    """Counters and gauges the relay updates; `render()` gives the /metrics text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "parley_relay_connections",
            "Socket.IO connections on this replica",
            registry=self.registry,
        )
        self.rooms = Gauge(
            "parley_relay_rooms",
            "Rooms with at least one member on this replica",
            registry=self.registry,
        )
        self.forwarded = Counter(
            "parley_relay_messages_forwarded",
            "Events forwarded to the other member",
            ["event"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "parley_relay_rejections",
            "Requests refused, by error code",
            ["code"],
            registry=self.registry,
        )
        self.stored = Counter(
            "parley_relay_messages_stored",
            "Messages kept in an away member's mailbox (offline delivery)",
            registry=self.registry,
        )
        self.drained = Counter(
            "parley_relay_messages_drained",
            "Stored messages sent to their owner at its join (stored_message)",
            registry=self.registry,
        )
        self.joins = Counter("parley_relay_joins", "Successful room joins", registry=self.registry)
        self.pruned = Counter(
            "parley_relay_pruned_members",
            "Members of dead replicas removed by this replica",
            registry=self.registry,
        )
        self.redis_up = Gauge(
            "parley_relay_redis_up",
            "1 when Redis answers and the pub/sub listener is subscribed",
            registry=self.registry,
        )
        # Pre-create every label so the series exist (at 0) before the first event.
        self._fwd = {out: self.forwarded.labels(event=out) for out in FORWARD.values()}
        for code in ERROR_TEXT:
            self.rejections.labels(code=code)

    def forward(self, event: str) -> None:
        """Count one forwarded event (hot path: the labelled child is cached)."""
        self._fwd[event].inc()

    def reject(self, code: str) -> None:
        """Count one rejection."""
        self.rejections.labels(code=code).inc()

    def render(self) -> bytes:
        """Prometheus text exposition of everything above."""
        return generate_latest(self.registry)
