"""Fixtures shared by every test layer: real redis-server and relay processes."""

from __future__ import annotations

import pytest

from tests.support.cluster import RedisCluster
from tests.support.servers import RedisServer, RelayProcess


@pytest.fixture
def redis_server():
    """A fresh redis-server on a free port for one test."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def redis_cluster():
    """A fresh Redis Cluster (3 masters + 3 replicas) for one test (e.g. one that kills a
    master), stopped and removed afterwards, also when the test or the start failed."""
    cluster = RedisCluster()
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture(scope="module")
def shared_redis_cluster():
    """One Redis Cluster for a whole module; tests flush it (`RedisCluster.flush`)."""
    cluster = RedisCluster()
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture
def relay_factory():
    """Start relay processes on demand; all are stopped when the test ends."""
    started: list[RelayProcess] = []

    def start(redis_url: str | None = None, **kwargs) -> RelayProcess:
        relay = RelayProcess(redis_url=redis_url, **kwargs)
        started.append(relay)
        return relay.start()

    try:
        yield start
    finally:
        for relay in started:
            relay.cleanup()


@pytest.fixture
def two_relays(redis_server, relay_factory):
    """Two relay replicas sharing one real Redis."""
    return relay_factory(redis_server.url), relay_factory(redis_server.url)
