"""Relay configuration: flag > PARLEY_* env > default, validated into a frozen Settings."""

from __future__ import annotations

import dataclasses

import pytest

from parley_relay.config import (
    ConfigError,
    RateLimit,
    listening_line,
    load_settings,
    parse_rate_limit,
)

TOKEN = "k7Qp2vX9mR4tW8yZ1bN6cD"  # 22 characters of base64: 128 bits


def test_defaults():
    s = load_settings([], {})
    assert (s.host, s.port, s.redis_url, s.token) == ("127.0.0.1", 5000, None, None)
    assert s.max_message_bytes == 65536
    assert s.rate_limit == RateLimit(50.0, 200)
    assert s.cors_origins is None
    assert s.log_level == "INFO"
    assert s.replica_id


def test_env_then_flag_precedence():
    env = {
        "PARLEY_PORT": "6000",
        "PARLEY_REDIS_URL": "redis://r:1/0",
        "PARLEY_RELAY_TOKEN": TOKEN,
        "PARLEY_HOST": "0.0.0.0",
        "PARLEY_MAX_MESSAGE_BYTES": "10",
        "PARLEY_RATE_LIMIT": "off",
        "PARLEY_CORS_ORIGINS": "https://a, https://b",
        "PARLEY_LOG_LEVEL": "debug",
        "PARLEY_HEARTBEAT_SECONDS": "2.5",
        "PARLEY_REPLICA_ID": "r1",
    }
    s = load_settings([], env)
    assert (s.port, s.redis_url, s.token, s.host) == (6000, "redis://r:1/0", TOKEN, "0.0.0.0")
    assert (s.max_message_bytes, s.rate_limit, s.log_level) == (10, None, "DEBUG")
    assert s.cors_origins == ("https://a", "https://b")
    assert (s.heartbeat_seconds, s.replica_id) == (2.5, "r1")
    s = load_settings(["--port", "7000", "--rate-limit", "5,9", "--cors-origins", "*"], env)
    assert (s.port, s.rate_limit, s.cors_origins) == (7000, RateLimit(5.0, 9), "*")


def test_settings_are_frozen():
    s = load_settings([], {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("20/s burst 40", RateLimit(20.0, 40)),
        ("20,40", RateLimit(20.0, 40)),
        ("20", RateLimit(20.0, 40)),
        ("0.5", RateLimit(0.5, 1)),
        ("off", None),
        ("0", None),
    ],
)
def test_rate_limit_forms(text, expected):
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "x"],
        ["--port", "0"],
        ["--port", "70000"],
        ["--rate-limit", "fast"],
        ["--max-message-bytes", "-1"],
        ["--log-level", "chatty"],
        ["--heartbeat-seconds", "0"],
        ["--replica-id", "a b"],
    ],
)
def test_bad_values_raise_config_error(argv):
    with pytest.raises(ConfigError):
        load_settings(argv, {})


def test_resource_bounds_defaults_and_derived_frame_cap():
    s = load_settings([], {})
    assert s.max_frame_bytes == 3 * 65536 + 4096
    assert (s.outbound_queue_bytes, s.max_connections, s.max_connections_per_address) == (
        1_048_576,
        10_000,
        64,
    )
    assert (s.header_timeout, s.connect_timeout, s.idle_timeout) == (10.0, 10.0, 60.0)
    assert (s.ping_interval, s.ping_timeout) == (25.0, 20.0)
    assert s.connect_rate == RateLimit(5.0, 30)
    env = {
        "PARLEY_MAX_CONNECTIONS_PER_ADDRESS": "off",
        "PARLEY_CONNECT_RATE": "off",
        "PARLEY_HEADER_TIMEOUT": "2.5",
    }
    s = load_settings([], env)
    assert (s.max_connections_per_address, s.connect_rate, s.header_timeout) == (0, None, 2.5)


@pytest.mark.parametrize(
    "argv",
    [
        ["--idle-timeout", "40"],  # not above ping interval + ping timeout (45 s)
        ["--outbound-queue-bytes", "1000"],  # smaller than one largest frame
        ["--max-connections", "0"],
        ["--connect-rate", "lots"],
        ["--header-timeout", "-1"],
    ],
)
def test_bad_bounds_raise_config_error(argv):
    with pytest.raises(ConfigError):
        load_settings(argv, {})


@pytest.mark.parametrize("token", ["s3cret", "tok-123", "x" * 21, "ab" * 15 + "f"])
def test_short_tokens_are_refused_with_the_fix(token):
    with pytest.raises(ConfigError, match="at least 128 bits.*token_urlsafe"):
        load_settings(["--token", token], {})


@pytest.mark.parametrize("token", [TOKEN, "0123456789abcdef" * 2])
def test_tokens_of_128_bits_are_accepted(token):
    assert load_settings(["--token", token], {}).token == token


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        load_settings(["--version"], environ={})
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("parley-relay ")


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("127.0.0.1", "http://127.0.0.1:5000 - connect with: parley --relay http://127.0.0.1:5000"),
        ("0.0.0.0", "http://localhost:5000 (all interfaces) - connect with: parley --relay "),
        ("::1", "http://[::1]:5000 - connect with: parley --relay http://[::1]:5000"),
    ],
)
def test_human_listening_line(host, shown):
    assert listening_line(host, 5000).startswith(f"parley-relay listening on {shown}")
