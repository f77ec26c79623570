"""Redis Cluster support: the `redis+cluster://` URL and the cluster client.

  redis+cluster://[user:password@]host1:port1,host2:port2,...   (rediss+cluster:// for TLS)

The hosts are startup nodes: any reachable one is enough, the client learns the rest of the
cluster from it (CLUSTER SHARDS) and follows MOVED/ASK redirections and failovers. The seat
scripts work unchanged because every script touches one hash slot (redis_store.py); the bus
uses sharded pub/sub (bus.py). Sentinel is not supported: use one Redis or a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>\d{1,5})$"
)
# A MOVED/ASK chain or a failover in progress: redis-py retries a command this many times
# (refreshing the slot map in between) before it gives up.
CLUSTER_RETRY_ATTEMPTS = 5


class ClusterUrlError(ValueError):
    """A malformed redis+cluster:// URL; str() never contains the password."""


@dataclass(frozen=True)
class ClusterUrl:
    """A parsed redis+cluster:// URL."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def is_cluster_url(url: str | None) -> bool:
    """True for a redis+cluster:// or rediss+cluster:// URL."""
    return bool(url) and url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def is_cluster_client(client) -> bool:
    """True when `client` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def parse_cluster_url(url: str) -> ClusterUrl:
    """Split a cluster URL into its startup nodes and credentials."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in CLUSTER_SCHEMES:
        raise ClusterUrlError("redis cluster url: expected redis+cluster:// or rediss+cluster://")
    hosts = parts.netloc.rpartition("@")[2]
    nodes = []
    for item in filter(None, (h.strip() for h in hosts.split(","))):
        m = _HOST_PORT.match(item)
        if not m or not 0 < int(m["port"]) <= 65535:
            raise ClusterUrlError(f"redis cluster url: {item!r} is not host:port")
        nodes.append((m["v6"] or m["host"], int(m["port"])))
    if not nodes:
        raise ClusterUrlError("redis cluster url: list at least one host:port")
    return ClusterUrl(
        nodes=tuple(nodes),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme.lower() == "rediss+cluster",
    )


def cluster_url_from_list(text: str) -> str:
    """`--redis-cluster h1:p1,h2:p2` as the equivalent URL."""
    url = "redis+cluster://" + ",".join(h.strip() for h in text.split(",") if h.strip())
    parse_cluster_url(url)
    return url


def connection_kwargs(parsed: ClusterUrl) -> dict:
    """Credentials and TLS of the URL, as redis-py connection keyword arguments."""
    kwargs: dict = {}
    if parsed.username:
        kwargs["username"] = parsed.username
    if parsed.password:
        kwargs["password"] = parsed.password
    if parsed.tls:
        kwargs["ssl"] = True
    return kwargs


def make_cluster_client(
    url: str,
    *,
    max_connections: int = 512,
    decode: bool = True,
    name: str | None = None,
    socket_timeout: float = 5,
) -> RedisCluster:
    """A cluster client: blocking per-node pools (a burst queues, never raises), and a few
    retries so a failover or resharding in progress is ridden out, not reported."""
    parsed = parse_cluster_url(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in parsed.nodes],
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), CLUSTER_RETRY_ATTEMPTS),
        connection_pool_class=redis.BlockingConnectionPool,
        max_connections=max_connections,  # per node; a BlockingConnectionPool waits 20 s
        socket_timeout=socket_timeout,
        socket_connect_timeout=2,
        socket_keepalive=True,
        health_check_interval=30,
        decode_responses=decode,
        client_name=name,
        **connection_kwargs(parsed),
    )


def cluster_health_client(client: RedisCluster) -> RedisCluster:
    """A twin of `client` with 1 s timeouts and no retries, for /healthz's quick PING."""
    manager = client.nodes_manager
    kwargs = {
        k: v
        for k, v in manager.connection_kwargs.items()
        if k in ("username", "password", "ssl", "client_name", "decode_responses")
    }
    return RedisCluster(
        startup_nodes=list(manager.startup_nodes.values()),
        retry=Retry(NoBackoff(), 0),
        socket_timeout=1,
        socket_connect_timeout=1,
        max_connections=4,
        **kwargs,
    )
