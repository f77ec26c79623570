"""Redis Cluster configuration (redis+cluster:// URLs, --redis-cluster) and key naming."""

from __future__ import annotations

import pytest
from redis.cluster import key_slot

from parley_relay.config import ConfigError, load_settings
from parley_relay.redis_cluster import is_cluster_url, parse_cluster_url
from parley_relay.redis_store import (
    EPOCH_KEY,
    LEASES_KEY,
    RESYNC_KEY,
    replica_key,
    room_key,
)


def test_cluster_url_from_flag_env_or_node_list():
    url = "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"
    assert load_settings(["--redis-url", url], {}).redis_url == url
    env = {"PARLEY_REDIS_CLUSTER": "10.0.0.1:7000, 10.0.0.2:7001"}
    assert load_settings([], env).redis_url == url
    assert load_settings(["--redis-cluster", "10.0.0.1:7000,10.0.0.2:7001"], {}).redis_url == url
    assert load_settings([], {}).cluster_failover_seconds == 20.0


def test_cluster_url_parts():
    parsed = parse_cluster_url("rediss+cluster://u:p%40ss@h1:1,[::1]:2")
    assert parsed.nodes == (("h1", 1), ("::1", 2))
    assert (parsed.username, parsed.password, parsed.tls) == ("u", "p@ss", True)
    assert is_cluster_url("redis+cluster://h:1") and not is_cluster_url("redis://h:1/0")


def test_cluster_password_file_fills_the_url(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("0123456789abcdef0123\n")
    s = load_settings(["--redis-cluster", "h1:1,h2:2", "--redis-password-file", str(secret)], {})
    assert parse_cluster_url(s.redis_url).password == "0123456789abcdef0123"
    assert parse_cluster_url(s.redis_url).nodes == (("h1", 1), ("h2", 2))


@pytest.mark.parametrize(
    "argv",
    [
        ["--redis-cluster", "h1:1,nonsense"],
        ["--redis-cluster", "h1:99999"],
        ["--redis-cluster", " , "],
        ["--redis-url", "redis+cluster://"],
        ["--redis-url", "redis+cluster://:secretpw@h1"],
        ["--redis-url", "redis://h:1/0", "--redis-cluster", "h1:1"],
        ["--redis-url", "redis+sentinel://h:26379"],
        ["--cluster-failover-seconds", "0"],
    ],
)
def test_bad_cluster_settings_are_one_clear_error(argv):
    with pytest.raises(ConfigError) as err:
        load_settings(argv, {})
    assert "\n" not in str(err.value) and "secretpw" not in str(err.value)


def test_every_key_of_a_room_is_in_the_room_slot():
    room = "team.42"
    parts = ["seats", "mbox:0123456789abcdef", "prekeys:0123456789abcdef"]
    assert len({key_slot(room_key(room, p).encode()) for p in parts}) == 1
    assert room_key(room, "seats") == "parley:{team.42}:seats"
    assert replica_key("relay-1", "conns") == "parley:{r:relay-1}:conns"
    assert len({key_slot(k.encode()) for k in (LEASES_KEY, EPOCH_KEY, RESYNC_KEY)}) == 1
    # Rooms spread over the slots (a shared tag would put every room on one shard).
    assert len({key_slot(room_key(f"r{i}", "seats").encode()) for i in range(50)}) > 40


@pytest.mark.parametrize("room", ["", "a}b", "{x}"])
def test_key_helpers_refuse_names_that_would_break_the_hash_tag(room):
    with pytest.raises(ValueError):
        room_key(room, "seats")
