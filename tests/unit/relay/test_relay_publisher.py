"""BatchingPublisher: concurrent publishes share one pipeline, each caller gets its own answer
(or its error), order is kept, and a full batch is never dropped."""

from __future__ import annotations

import gevent
import pytest
import redis

from parley_relay.publisher import BatchingPublisher


class FakePipeline:
    def __init__(self, client):
        self.client = client
        self.queued = []

    def publish(self, channel, body):
        self.queued.append((channel, body))

    def execute(self, raise_on_error=True):
        self.client.trips.append(list(self.queued))
        gevent.sleep(0.01)  # the round trip: others queue meanwhile
        if self.client.down:
            raise redis.ConnectionError("redis away")
        return [
            redis.ResponseError("bad channel") if ch == "bad" else len(body)
            for ch, body in self.queued
        ]


class FakeClient:
    def __init__(self):
        self.trips: list[list] = []
        self.down = False

    def pipeline(self, transaction=True):
        assert transaction is False
        return FakePipeline(self)


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
