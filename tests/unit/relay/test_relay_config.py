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
        "PARLEY_RELAY_TOKEN": "t",
        "PARLEY_HOST": "0.0.0.0",
        "PARLEY_MAX_MESSAGE_BYTES": "10",
        "PARLEY_RATE_LIMIT": "off",
        "PARLEY_CORS_ORIGINS": "https://a, https://b",
        "PARLEY_LOG_LEVEL": "debug",
        "PARLEY_HEARTBEAT_SECONDS": "2.5",
        "PARLEY_REPLICA_ID": "r1",
    }
    s = load_settings([], env)
    assert (s.port, s.redis_url, s.token, s.host) == (6000, "redis://r:1/0", "t", "0.0.0.0")
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
