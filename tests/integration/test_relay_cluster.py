"""The relay on a real Redis Cluster (3 masters + 3 replicas): pairs across three relays,
then a master killed mid-conversation. Every line arrives exactly once and in order, every
line the relay acknowledged arrives, and the members keep (and resume) their seats."""

from __future__ import annotations

import threading

from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient

from parley_relay.bus import channel_of
from parley_relay.redis_store import LEASES_KEY, replica_key, room_key
from tests.support.cluster import RedisCluster
from tests.support.relay_clients import (
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    seat_auth,
)
from tests.support.servers import wait_for

# A lease well above a failover (node timeout 2 s + election): the relays' heartbeats
# may fail while the leases' master is being replaced without anyone being pruned.
ARGS = ["--heartbeat-seconds", "10", "--cluster-failover-seconds", "20"]
LINES = 40  # per pair; the master dies after a third of them


def raw_client(cluster: RedisCluster) -> ClusterClient:
    nodes = [ClusterNode("127.0.0.1", n.port) for n in cluster.nodes]
    return ClusterClient(startup_nodes=nodes, decode_responses=True)


def relays(relay_factory, cluster: RedisCluster, count: int = 3):
    return [
        relay_factory(cluster.url, extra_args=[*ARGS, "--replica-id", f"relay{i}"])
        for i in range(count)
    ]


def seat_pair(clients, url_a, url_b, room):
    auths = [seat_auth(room, name, new_secret(), new_instance()) for name in ("alice", "bob")]
    a = clients(url_a, auths[0]).connect()
    b = clients(url_b, auths[1]).connect()
    assert a.wait_for("KEY_EXCHANGE") == [1] and b.wait_for("KEY_EXCHANGE") == [1]
    return a, b, auths


def test_pairs_across_three_relays_on_a_cluster(redis_cluster, relay_factory, clients):
    rs = relays(relay_factory, redis_cluster)
    assert all(r.health()["redis"] == "ok" for r in rs)
    raw = raw_client(redis_cluster)
    for i in range(3):
        a, b, _ = seat_pair(clients, rs[i].url, rs[(i + 1) % 3].url, f"room{i}")
        assert a.call("message", f"hello {i}")["ok"]
        b.wait_for_payload("received_message", f"hello {i}")
        b.emit("message", f"back {i}")
        a.wait_for_payload("received_message", f"back {i}")
        assert raw.hlen(room_key(f"room{i}", "seats")) == 2
    assert sorted(raw.hkeys(LEASES_KEY)) == ["relay0", "relay1", "relay2"]
    assert raw.scard(replica_key("relay0", "conns")) == 2
    # The rooms' keys spread over the shards: the scripts really ran on several masters.
    masters = {redis_cluster.master_of(room_key(f"room{i}", "seats")).port for i in range(3)}
    masters |= {redis_cluster.master_of(channel_of(f"relay{i}")).port for i in range(3)}
    assert len(masters) >= 2


def _converse(a, b, tag: str, acked: list, refused: list, killed: threading.Event):
    """alice sends LINES lines one after the other, each waiting for its ack (as the
    Parley client does); a refused line is sent again, like the client's outbox."""
    for n in range(LINES):
        line = f"{tag}-{n}"
        while True:
            try:
                ack = a.call("message", line, timeout=30)
            except Exception as exc:  # noqa: BLE001 - recorded, the test fails on it
                refused.append((line, repr(exc)))
                break
            if ack.get("ok"):
                acked.append(line)
                break
            refused.append((line, ack))
        if n == LINES // 3:
            killed.wait(30)


def test_master_killed_mid_conversation_loses_nothing(redis_cluster, relay_factory, clients):
    rs = relays(relay_factory, redis_cluster)
    pairs = [seat_pair(clients, rs[i].url, rs[(i + 1) % 3].url, f"fo{i}") for i in range(3)]
    # Kill the master of relay1's channel: the receivers of pair 0 are behind it.
    victim = redis_cluster.master_of(channel_of("relay1"))
    acked = [[] for _ in pairs]
    refused: list = []
    killed = threading.Event()
    threads = [
        threading.Thread(target=_converse, args=(a, b, f"p{i}", acked[i], refused, killed))
        for i, (a, b, _) in enumerate(pairs)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: all(len(x) > LINES // 3 for x in acked), timeout=60, what="a third sent")
    victim.kill()
    killed.set()
    try:
        wait_for(redis_cluster.healthy, timeout=30, what="a replica promoted")
    finally:
        for t in threads:
            t.join(90)
    assert not refused, refused[:5]
    for i, (_, b, _) in enumerate(pairs):
        want = [f"p{i}-{n}" for n in range(LINES)]
        assert acked[i] == want
        wait_for(
            lambda b=b, want=want: len(b.named("received_message")) >= len(want),
            timeout=20,
            what=f"pair {i}'s lines",
        )
        assert b.named("received_message") == want  # once each, in order, none lost
    # Seats survived the failover; a member resumes on another relay by its secret and
    # the conversation goes on.
    a, b, auths = pairs[0]
    b.close()
    again = clients(rs[2].url, auths[1]).connect()
    a.wait_for("KEY_EXCHANGE", count=2, timeout=20)
    assert a.call("message", "after", timeout=30)["ok"]
    again.wait_for_payload("received_message", "after")
    assert all(r.health()["redis"] == "ok" for r in rs)
