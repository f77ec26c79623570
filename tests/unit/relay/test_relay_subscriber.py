"""subscriber.listen, the bus's lean pub/sub read loop, against a real redis-server: a burst
read in one go arrives complete and in order (yielding to others along the way), idle
periods are bridged by PINGs, and a frozen or restarted Redis ends the loop with an error
(the bus then resubscribes) instead of a hang."""

from __future__ import annotations

import os
import signal
import threading

import gevent
import pytest
import redis

from parley_relay import subscriber

CHANNEL = "parley:{r:test}:to"


class Stop(Exception):
    """Raised from a callback to end listen() once the test saw what it needs."""


def connection(url: str, protocol: int = 2):
    client = redis.Redis.from_url(
        url, socket_timeout=10, health_check_interval=0, protocol=protocol
    )
    return client, client.connection_pool.get_connection()


# The bus subscribes with RESP2; RESP3 (redis-py 8's default, e.g. from a URL's
# ?protocol=3) delivers messages as push replies, which must work as well.
@pytest.mark.parametrize("protocol", [2, 3])
def test_a_burst_read_in_one_go_arrives_complete_and_in_order(redis_server, protocol):
    n = 2000
    publisher = redis.Redis.from_url(redis_server.url)
    got: list[bytes] = []
    seen_by_other: list[int] = []

    def publish_burst():
        pipe = publisher.pipeline(transaction=False)
        for i in range(n):
            pipe.publish(CHANNEL, b"%d|" % i + b"x" * 1000)
        assert pipe.execute() == [1] * n  # every one reached our subscriber
        # Another greenlet: it must get a turn while the burst is being handled.
        gevent.spawn(lambda: seen_by_other.append(len(got)))

    def on_data(data: bytes):
        got.append(data)
        if len(got) == n:
            raise Stop

    client, conn = connection(redis_server.url, protocol)
    try:
        with pytest.raises(Stop):
            subscriber.listen(conn, CHANNEL, subscriber.PLAIN, on_data, publish_burst, 5.0)
    finally:
        client.connection_pool.disconnect()
    assert [int(d.split(b"|")[0]) for d in got] == list(range(n)), "complete, in order"
    assert seen_by_other and seen_by_other[0] < n, "the loop yields during a long burst"


@pytest.mark.parametrize("protocol", [2, 3])
def test_idle_periods_are_bridged_by_pings(redis_server, protocol):
    publisher = redis.Redis.from_url(redis_server.url)
    later = threading.Timer(1.5, lambda: publisher.publish(CHANNEL, b"after the quiet"))
    got: list[bytes] = []

    def on_data(data: bytes):
        got.append(data)
        raise Stop

    client, conn = connection(redis_server.url, protocol)
    try:
        with pytest.raises(Stop):  # not LinkLost: PONGs answered the quiet
            subscriber.listen(conn, CHANNEL, subscriber.PLAIN, on_data, later.start, 0.2)
    finally:
        later.cancel()
        client.connection_pool.disconnect()
    assert got == [b"after the quiet"]
    pings = publisher.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
    assert pings >= 2, "the quiet was checked with PINGs"


def test_a_frozen_redis_ends_the_loop(redis_server):
    pid = redis_server.proc.pid
    client, conn = connection(redis_server.url)
    try:
        with pytest.raises(subscriber.LinkLost):
            # Redis stops answering right after confirming (SIGSTOP: the TCP link stays up,
            # as behind a dead network path): the PING gets no answer.
            subscriber.listen(
                conn,
                CHANNEL,
                subscriber.PLAIN,
                lambda data: None,
                lambda: os.kill(pid, signal.SIGSTOP),
                0.2,
            )
    finally:
        os.kill(pid, signal.SIGCONT)
        client.connection_pool.disconnect()


def test_a_restarted_redis_ends_the_loop(redis_server):
    client, conn = connection(redis_server.url)
    try:
        with pytest.raises(redis.ConnectionError):
            subscriber.listen(
                conn, CHANNEL, subscriber.PLAIN, lambda data: None, redis_server.restart, 5.0
            )
    finally:
        client.connection_pool.disconnect()
    # The next subscription on a fresh connection works again.
    publisher = redis.Redis.from_url(redis_server.url)
    got: list[bytes] = []

    def on_data(data: bytes):
        got.append(data)
        raise Stop

    client, conn = connection(redis_server.url)
    try:
        with pytest.raises(Stop):
            subscriber.listen(
                conn,
                CHANNEL,
                subscriber.PLAIN,
                on_data,
                lambda: publisher.publish(CHANNEL, b"again"),
                5.0,
            )
    finally:
        client.connection_pool.disconnect()
    assert got == [b"again"]
