"""Replica-to-replica delivery: one Redis pub/sub channel per replica (`parley:{r:<replica>}:to`).

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
* the subscriber (`subscriber.listen`, a lean read loop instead of redis-py's per-message
  `get_message`) PINGs after `idle_poll_seconds` of silence and gives up when the next
  wait brings nothing: idle periods are normal, a broken link raises and we resubscribe
  quickly (capped backoff).

On Redis Cluster (`ClusterBus`) the channels are sharded (SSUBSCRIBE/SPUBLISH, Redis 7): a
channel lives in its hash slot's shard, so pub/sub traffic scales with the shards instead of
being broadcast to every node. Delivery survives a master failover: see `ClusterBus`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Callable

import gevent
import redis

from . import codec, subscriber
from .logs import log_event
from .publisher import BatchingPublisher
from .redis_store import replica_key

_dumps = codec.dumps


def channel_of(replica: str) -> str:
    """The bus channel of `replica` (in its own hash slot, like its other keys)."""
    return replica_key(replica, "to")


class PublishError(RuntimeError):
    """A cross-replica publish failed after retrying (Redis unreachable)."""


class LocalBus:
    """The single-process relay (no Redis): every connection is local, nothing to send."""

    subscribed = True
    waits = False  # does a successful send always yield to other greenlets?

    def start(self, handler: Callable[[list], None]) -> None:
        """Nothing to listen to."""

    def send(self, replica: str, message: list, reliable: bool = False) -> None:
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
        # Does a successful send always yield to the other greenlets? Through a
        # BatchingPublisher it waits for the writer greenlet to bring Redis's answer: yes.
        # A plain client may find the answer already there and not yield.
        self.waits = isinstance(client, BatchingPublisher)

    def send(self, replica: str, message: list, reliable: bool = False) -> None:
        """Publish one message to `replica`'s channel; raise PublishError if Redis is away.

        `reliable` (a client's message, acked to its sender): see ClusterBus; a single Redis
        has no failover to wait out, so it is the same here."""
        body = _dumps(message)
        channel = channel_of(replica)
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

    kinds = subscriber.PLAIN

    def _subscriber(self) -> redis.Redis:
        # A separate connection: the pub/sub read blocks, publishes must not wait behind it.
        return redis.Redis.from_url(self.url, **self._sub_kwargs())

    def _sub_kwargs(self) -> dict:
        return {
            "socket_connect_timeout": 2,
            "socket_timeout": self.idle_poll_seconds + 5,
            "socket_keepalive": True,
            # subscriber.listen checks the link itself (PING after idle_poll_seconds)
            "health_check_interval": 0,
            # RESP2: messages are plain arrays. redis-py 8 speaks RESP3 by default, where
            # each message is a push reply that its parser also formats for a debug log.
            "protocol": 2,
            "client_name": f"parley-{self.replica}-sub",
        }

    def _on_subscribed(self) -> None:
        if not self.subscribed:
            self.subscribed = True
            self._delay = 0.1
            log_event(self.log, "redis_subscribed", channel=channel_of(self.replica))

    def _run(self, handler: Callable[[list], None]) -> None:
        channel = channel_of(self.replica)
        self._delay = 0.1

        on_data = functools.partial(self._dispatch, handler)
        while True:
            client = None
            try:
                client = self._subscriber()
                conn = client.connection_pool.get_connection()
                subscriber.listen(
                    conn, channel, self.kinds, on_data, self._on_subscribed, self.idle_poll_seconds
                )
            except Exception as exc:  # any failure means: reconnect and resubscribe
                if self.subscribed:
                    error = type(exc).__name__
                    log_event(self.log, "redis_subscription_lost", logging.WARNING, error=error)
                self.subscribed = False
                time.sleep(self._delay)
                self._delay = min(self._delay * 2, 2.0)
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):  # closing a dead link may fail
                        client.connection_pool.disconnect()
                        client.close()

    def _dispatch(self, handler: Callable[[list], None], data: bytes) -> None:
        try:
            message = codec.loads(data)
            handler(message)
        except Exception:  # one bad message must not end the subscription
            log_event(self.log, "bus_message_failed", logging.WARNING, exc_info=True)


# A client's message waits this long for its peer's replica to be reachable again (a master
# failover: Redis's default cluster-node-timeout of 15 s plus about a second of election)
# before its sender gets `unavailable`; the relay never acks a message it did not deliver.
DEFAULT_FAILOVER_SECONDS = 20.0
# After one such wait in vain, messages to the same replica get one quick try each for this
# long (it is probably dead: the pruner will tell its peers), so senders do not all stall.
UNREACHABLE_SECONDS = 2.0
# Message ids remembered per receiving replica to drop a publish retried after it had in fact
# arrived (its reply was lost with the master): far more than can be in flight during a retry.
DEDUP_WINDOW = 4096


class ClusterBus(RedisBus):
    """The bus on Redis Cluster: sharded pub/sub, and no acked message lost in a failover.

    SPUBLISH returns how many subscribers got the message on the channel's master. A
    `reliable` send (a client's message) is repeated until that is at least one, or until
    `failover_seconds`: while the shard's master is down, and after a replica took over until
    the receiving replica has subscribed there. Each publish carries an id, so a retry of a
    publish that had arrived is dropped by the receiver: every message arrives once, and in
    order (a connection's events are handled one after the other).
    """

    def __init__(
        self,
        url,
        replica,
        client,
        logger,
        *,
        failover_seconds=DEFAULT_FAILOVER_SECONDS,
        idle_poll_seconds: float = 5.0,
    ):
        super().__init__(url, replica, client, logger, idle_poll_seconds=idle_poll_seconds)
        self.failover_seconds = failover_seconds
        self._ids = itertools.count(1)
        self._origin = secrets.token_hex(4)  # ids of this process never collide with another's
        self._unreachable: dict[str, float] = {}
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    # SSUBSCRIBE; an `sunsubscribe` from the server (the slot moved) makes us follow it
    kinds = subscriber.SHARDED

    def send(self, replica: str, message: list, reliable: bool = False) -> None:
        """SPUBLISH to `replica`'s channel; see the class docstring for `reliable`."""
        body = _dumps(["u", f"{self._origin}.{next(self._ids):x}", message])
        channel = channel_of(replica)
        now = time.monotonic()
        patient = reliable and self._unreachable.get(replica, 0.0) <= now
        deadline = now + (self.failover_seconds if patient else 0.0)
        delay, tries = 0.05, 0
        while True:
            tries += 1
            try:
                if self.client.spublish(channel, body) > 0 or not reliable:
                    self._unreachable.pop(replica, None)
                    return
                why = "no subscriber"
            except redis.RedisError as exc:
                why = type(exc).__name__
            if time.monotonic() >= deadline and (reliable or tries >= 2):
                self.publish_failures += 1
                if patient:
                    self._unreachable[replica] = time.monotonic() + UNREACHABLE_SECONDS
                raise PublishError(f"{channel}: {why}")
            gevent.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _subscriber(self) -> redis.Redis:
        # The channel's master as the cluster says now (after a failover: the promoted
        # replica). SPUBLISH counts only subscribers on the master, so we subscribe there.
        from .redis_cluster import connection_kwargs, make_cluster_client, parse_cluster_url

        lookup = make_cluster_client(self.url, max_connections=2, decode=False)
        try:
            node = lookup.get_node_from_key(channel_of(self.replica))
        finally:
            lookup.close()
        extra = connection_kwargs(parse_cluster_url(self.url))
        return redis.Redis(host=node.host, port=node.port, **self._sub_kwargs(), **extra)

    def _dispatch(self, handler: Callable[[list], None], data: bytes) -> None:
        try:
            _, mid, message = codec.loads(data)
            if mid in self._seen:
                return  # a retried publish that had arrived the first time
            self._seen[mid] = None
            if len(self._seen) > DEDUP_WINDOW:
                self._seen.popitem(last=False)
            handler(message)
        except Exception:  # one bad message must not end the subscription
            log_event(self.log, "bus_message_failed", logging.WARNING, exc_info=True)
