"""BatchingPublisher: concurrent publishes share one pipeline, each caller gets its own answer
(or its error), order is kept, and a full batch is never dropped."""

from __future__ import annotations

import logging

import gevent
import pytest
import redis

from parley_relay.publisher import BatchingPublisher


class FakeConnection:
    """The writer's connection: one packed write per batch, then one answer per PUBLISH."""

    def __init__(self, client):
        self.client = client
        self.answers: list = []
        self.broken = False

    def pack_commands(self, commands):
        self.queued = [(cmd, ch, body) for cmd, ch, body in commands]
        return [b"packed"]

    def send_packed_command(self, command):
        assert command == [b"packed"], "one write for the whole batch"
        assert all(cmd == "PUBLISH" for cmd, _, _ in self.queued)
        self.client.trips.append([(ch, body) for _, ch, body in self.queued])
        gevent.sleep(0.01)  # the round trip: others queue meanwhile
        if self.client.down:
            self.broken = True
            raise redis.ConnectionError("redis away")
        self.answers = [
            redis.ResponseError("bad channel") if ch == "bad" else len(body)
            for _, ch, body in self.queued
        ]

    def read_response(self):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def disconnect(self):
        pass


class FakePool:
    def __init__(self, client):
        self.client = client

    def get_connection(self):
        conn = FakeConnection(self.client)
        self.client.conns.append(conn)
        return conn

    def release(self, conn):
        pass


class FakeClient:
    def __init__(self):
        self.trips: list[list] = []
        self.conns: list[FakeConnection] = []
        self.down = False
        self.connection_pool = FakePool(self)


def test_concurrent_publishes_share_round_trips_in_order():
    client = FakeClient()
    pub = BatchingPublisher(client)
    jobs = [gevent.spawn(pub.publish, "ch", b"x" * i) for i in range(1, 31)]
    # A generous bound (a starved machine once took over 5 s): only a hang fails here.
    gevent.joinall(jobs, timeout=120, raise_error=True)
    assert all(j.dead for j in jobs), "a publish never returned"
    assert [j.value for j in jobs] == list(range(1, 31)), "each caller gets its own answer"
    sent = [body for trip in client.trips for _, body in trip]
    assert sent == [b"x" * i for i in range(1, 31)], "queue order is kept"
    assert len(client.trips) < 30, "publishes waiting together left in one pipeline"
    assert pub._writer is None, "no writer greenlet left while idle"


def test_a_full_batch_is_sent_and_the_next_one_opens():
    client = FakeClient()
    pub = BatchingPublisher(client, max_batch=4)
    jobs = [gevent.spawn(pub.publish, "ch", b"%d" % i) for i in range(10)]
    gevent.joinall(jobs, timeout=120, raise_error=True)
    assert all(len(trip) <= 4 for trip in client.trips)
    assert sum(len(trip) for trip in client.trips) == 10


def test_errors_reach_their_callers():
    client = FakeClient()
    pub = BatchingPublisher(client)
    ok = gevent.spawn(pub.publish, "ch", b"abc")
    bad = gevent.spawn(pub.publish, "bad", b"abc")
    gevent.joinall([ok, bad], timeout=120)
    assert ok.value == 3
    assert isinstance(bad.exception, redis.ResponseError)
    client.down = True
    with pytest.raises(redis.ConnectionError):
        pub.publish("ch", b"x")
    client.down = False
    assert pub.publish("ch", b"xy") == 2, "the next batch goes out again"
    assert len(client.conns) == 2 and client.conns[0].broken, "on a fresh connection"


def test_a_writer_killed_mid_trip_fails_its_callers_and_the_next_publish_goes_out():
    client = FakeClient()
    pub = BatchingPublisher(client, max_batch=2)
    jobs = [gevent.spawn(pub.publish, "ch", b"%d" % i) for i in range(5)]
    gevent.sleep(0.001)  # the writer is inside its first round trip, later batches queued
    pub._writer.kill()  # e.g. the relay shutting down
    gevent.joinall(jobs, timeout=120)
    assert all(j.dead for j in jobs), "a caller of a killed writer waited for ever"
    assert all(isinstance(j.exception, redis.ConnectionError) for j in jobs), jobs
    assert pub.publish("ch", b"xyz") == 3, "a new writer sends the next publish"


def test_batches_share_one_connection():
    client = FakeClient()
    pub = BatchingPublisher(client)
    for i in range(5):
        assert pub.publish("ch", b"x" * i) == i
    assert len(client.trips) == 5 and len(client.conns) == 1, "no checkout per batch"


def test_a_real_redis_answers_each_caller_and_a_restart_costs_one_retry(redis_server):
    from parley_relay.bus import RedisBus, channel_of
    from parley_relay.redis_store import make_client

    client = make_client(redis_server.url, decode=False)
    pub = BatchingPublisher(client)
    watcher = redis.Redis.from_url(redis_server.url)
    sub = watcher.pubsub()
    sub.subscribe("ch")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert pub.publish("ch", b"one") == 1
    assert pub.publish("nobody", b"two") == 0
    assert sub.get_message(timeout=5)["data"] == b"one"
    redis_server.restart()  # the publisher's kept connection is now dead
    bus = RedisBus(redis_server.url, "me", pub, logging.getLogger("test"))
    bus.send("peer", ["m", "sid", "ev", {"n": 1}])  # one retry on a fresh connection
    assert pub.publish(channel_of("peer"), b"x") == 0
    pub.close()
