"""A real relay on a real password-protected redis-server, the password read from a file
(PARLEY_REDIS_PASSWORD_FILE), as the compose deployment runs it."""

from __future__ import annotations

import secrets

import pytest

from tests.support.servers import RedisServer, RelayProcess, wait_for


@pytest.fixture
def locked_redis():
    server = RedisServer(password=secrets.token_hex(32))
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_the_relay_fills_the_password_from_the_file_into_its_url(locked_redis, tmp_path):
    secret = tmp_path / "redis-password"
    secret.write_text(locked_redis.password + "\n")
    secret.chmod(0o640)
    relay = RelayProcess(
        redis_url=locked_redis.url, env={"PARLEY_REDIS_PASSWORD_FILE": str(secret)}
    )
    try:
        relay.start()
        wait_for(lambda: relay.health().get("redis") == "ok", 30, 0.2, "relay on redis")
        assert locked_redis.password not in relay.log(), "the password is never logged"
    finally:
        relay.cleanup()


def test_without_the_file_the_same_relay_is_refused_by_redis(locked_redis):
    """The control: the URL alone (no password) does not get in, so the file is what works."""
    relay = RelayProcess(redis_url=locked_redis.url)
    try:
        with pytest.raises(RuntimeError, match="did not become healthy") as info:
            relay.start(timeout=15)
        assert "AuthenticationError" in str(info.value), str(info.value)[-2000:]
    finally:
        relay.cleanup()
