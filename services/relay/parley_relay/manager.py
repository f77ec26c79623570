"""python-socketio's RedisManager, hardened for bursts and Redis restarts.

Two of DESIGN.md's pitfalls live here:

* redis-py 8 caps a pool at 100 connections and raises MaxConnectionsError past that. Under
  gevent a burst of >100 concurrent publishes hits the cap, the stock manager tears down its
  connection and subscription, and messages vanish. We publish through a *blocking* pool
  (`redis_store.make_client`): a burst waits a moment for a connection instead of failing.
* An idle pub/sub connection must not be torn down by a socket timeout, and a dead one must
  be noticed. The listener below polls with `get_message(timeout=...)` on a connection with
  a health-check interval: idle periods are normal, a broken link raises and we resubscribe
  quickly (capped backoff, not the stock manager's doubling up to 60 s).

`subscribed` tells /healthz whether cross-replica delivery currently works.
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis
import socketio

from .logs import log_event
from .redis_store import make_client

CHANNEL = "parley"


class PublishError(RuntimeError):
    """A cross-replica publish failed after retrying (Redis unreachable)."""


class ParleyRedisManager(socketio.RedisManager):
    """RedisManager with a blocking publish pool and a self-healing subscriber."""

    def __init__(
        self,
        url: str,
        logger: logging.Logger,
        *,
        max_connections: int = 512,
        idle_poll_seconds: float = 5.0,
        client_name: str | None = None,
    ):
        # No redis_options: _redis_connect below builds the (blocking) pool itself.
        super().__init__(url, channel=CHANNEL)
        self.max_connections = max_connections
        self.idle_poll_seconds = idle_poll_seconds
        self.relay_logger = logger
        self.client_name = client_name
        self.subscribed = False
        self.publish_failures = 0

    def _redis_connect(self) -> None:
        # Replaces the stock client (a ConnectionPool that raises past 100 connections).
        self.redis = make_client(
            self.redis_url,
            max_connections=self.max_connections,
            decode=False,
            name=self.client_name,
        )
        self.connected = True

    def _publish(self, data):
        """Publish one manager message; raise PublishError if Redis stays unreachable."""
        if not self.connected:
            self._redis_connect()
        body = self.json.dumps(data)
        try:
            return self.redis.publish(self.channel, body)
        except redis.RedisError:
            pass
        try:  # one more try: the pool drops a broken connection and dials a fresh one
            return self.redis.publish(self.channel, body)
        except redis.RedisError as exc:
            self.publish_failures += 1
            raise PublishError(str(exc)) from exc

    def _subscriber(self) -> redis.Redis:
        # A separate client: the pub/sub connection blocks on reads, publishes must not wait.
        return redis.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=2,
            socket_timeout=self.idle_poll_seconds + 5,
            socket_keepalive=True,
            health_check_interval=max(1, int(self.idle_poll_seconds)),
            client_name=f"{self.client_name}-sub" if self.client_name else None,
        )

    def _listen(self):
        """Yield raw manager messages from the channel forever, resubscribing after errors."""
        channel = self.channel.encode("utf-8")
        # PubSubManager puts host_id last in every message it originates (emit, disconnect,
        # room changes); callbacks addressed *to* us carry more keys after it, so never match.
        own = self.json.dumps({"host_id": self.host_id})[1:].encode("utf-8")
        delay = 0.1
        while True:
            client = pubsub = None
            try:
                client = self._subscriber()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                while True:
                    msg = pubsub.get_message(timeout=self.idle_poll_seconds)
                    if not self.subscribed and pubsub.subscribed:
                        self.subscribed = True
                        delay = 0.1
                        log_event(self.relay_logger, "redis_subscribed", channel=self.channel)
                    if msg is None:
                        continue
                    if msg["type"] == "message" and msg["channel"] == channel:
                        data = msg["data"]
                        # Our own publishes come back to us too; the base class would
                        # JSON-decode them only to drop them. Skip them undecoded.
                        if data.endswith(own):
                            continue
                        yield data
            except Exception as exc:  # any failure means: reconnect and resubscribe
                if self.subscribed:
                    log_event(
                        self.relay_logger,
                        "redis_subscription_lost",
                        logging.WARNING,
                        error=type(exc).__name__,
                    )
                self.subscribed = False
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                for closable in (pubsub, client):
                    if closable is not None:
                        # closing a dead connection may fail; nothing to do about it
                        with contextlib.suppress(Exception):
                            closable.close()
