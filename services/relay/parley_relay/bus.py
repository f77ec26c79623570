"""Replica-to-replica delivery: one Redis pub/sub channel per replica (`parley:to:<replica>`).

A message for a connection goes only to the channel of the replica holding it (read from the
seat store), so a replica holding no member of a conversation receives nothing of it. This
replaces python-socketio's RedisManager, which broadcast every emit to every replica.

Messages are compact JSON arrays (see `handlers.RelayNamespace.on_bus`):
  ["m", sid, event, payload]          deliver an event to a local connection
  ["p", sid, peers, event, data, v]   its peers as of seat version v (+ an event to emit)
  ["k", sid]                          the connection lost its seat: drop it

Two of DESIGN.md's pitfalls live here:
* publishes go through a *blocking* pool (`redis_store.make_client`): a burst waits for a
  connection instead of raising MaxConnectionsError and losing messages;
* the subscriber polls with `get_message(timeout=...)` on a connection with a health-check
  interval and a socket timeout longer than the poll: idle periods are normal, a broken
  link raises and we resubscribe quickly (capped backoff).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable

import gevent
import redis

from .logs import log_event

CHANNEL_PREFIX = "parley:to:"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class PublishError(RuntimeError):
    """A cross-replica publish failed after retrying (Redis unreachable)."""


class LocalBus:
    """The single-process relay (no Redis): every connection is local, nothing to send."""

    subscribed = True

    def start(self, handler: Callable[[list], None]) -> None:
        """Nothing to listen to."""

    def send(self, replica: str, message: list) -> None:
        """Never needed: a single process holds every seat."""
        raise PublishError(f"no replica {replica!r} without Redis")


class RedisBus:
    """Publish to other replicas' channels; listen on our own."""

    def __init__(
        self,
        url: str,
        replica: str,
        client: redis.Redis,
        logger: logging.Logger,
        *,
        idle_poll_seconds: float = 5.0,
    ):
        self.url = url
        self.replica = replica
        self.client = client
        self.log = logger
        self.idle_poll_seconds = idle_poll_seconds
        self.subscribed = False
        self.publish_failures = 0

    def send(self, replica: str, message: list) -> None:
        """Publish one message to `replica`'s channel; raise PublishError if Redis is away."""
        body = _dumps(message)
        channel = CHANNEL_PREFIX + replica
        try:
            self.client.publish(channel, body)
            return
        except redis.RedisError:
            pass
        try:  # one more try: the pool drops a broken connection and dials a fresh one
            self.client.publish(channel, body)
        except redis.RedisError as exc:
            self.publish_failures += 1
            raise PublishError(str(exc)) from exc

    def start(self, handler: Callable[[list], None]) -> None:
        """Listen on our channel in a greenlet, calling `handler(message)` for each one."""
        gevent.spawn(self._run, handler)

    def _subscriber(self) -> redis.Redis:
        # A separate connection: the pub/sub read blocks, publishes must not wait behind it.
        return redis.Redis.from_url(
            self.url,
            socket_connect_timeout=2,
            socket_timeout=self.idle_poll_seconds + 5,
            socket_keepalive=True,
            health_check_interval=max(1, int(self.idle_poll_seconds)),
            client_name=f"parley-{self.replica}-sub",
        )

    def _run(self, handler: Callable[[list], None]) -> None:
        channel = CHANNEL_PREFIX + self.replica
        delay = 0.1
        while True:
            client = pubsub = None
            try:
                client = self._subscriber()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                while True:
                    msg = pubsub.get_message(timeout=self.idle_poll_seconds)
                    if not self.subscribed and pubsub.subscribed:
                        self.subscribed = True
                        delay = 0.1
                        log_event(self.log, "redis_subscribed", channel=channel)
                    if msg is not None and msg["type"] == "message":
                        self._dispatch(handler, msg["data"])
            except Exception as exc:  # any failure means: reconnect and resubscribe
                if self.subscribed:
                    error = type(exc).__name__
                    log_event(self.log, "redis_subscription_lost", logging.WARNING, error=error)
                self.subscribed = False
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                for closable in (pubsub, client):
                    if closable is not None:
                        with contextlib.suppress(Exception):  # closing a dead link may fail
                            closable.close()

    def _dispatch(self, handler: Callable[[list], None], data: bytes) -> None:
        try:
            message = json.loads(data)
            handler(message)
        except Exception:  # one bad message must not end the subscription
            log_event(self.log, "bus_message_failed", logging.WARNING, exc_info=True)
