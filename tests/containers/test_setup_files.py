"""Checks of the deployment files that need no Docker engine (they run everywhere)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHAT_TESTS = "tests/containers/test_compose_chat.py"


def _code_variables() -> set[str]:
    found: set[str] = set()
    for root in ("services", "shared"):
        for path in (REPO / root).rglob("*.py"):
            found |= set(re.findall(r"[\"'](PARLEY_[A-Z0-9_]+)[\"']", path.read_text()))
    return found


def test_env_example_lists_every_parley_variable_the_code_reads():
    example = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#?(PARLEY_[A-Z0-9_]+)=", example, re.M))
    variables = _code_variables()
    assert {"PARLEY_PORT", "PARLEY_REDIS_URL", "PARLEY_RELAY_URL", "PARLEY_HOME"} <= variables
    assert variables - listed == set(), "add these to .env.example"
    # Each variable has a line of meaning right above it.
    for name in listed:
        above = example.split(f"{name}=", 1)[0].rstrip("#").rstrip().splitlines()[-1]
        assert above.startswith("# ") and len(above) > 10, name


def test_env_example_lists_every_variable_compose_reads():
    example = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, re.M))
    compose = (REPO / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", compose))
    passed_through = set(re.findall(r"^ {4}(PARLEY_[A-Z0-9_]+):\s*$", compose, re.M))
    assert {"REDIS_PASSWORD", "RELAY_PUBLISH_ADDRESS"} <= interpolated
    assert (interpolated | passed_through) - listed == set(), "add these to .env.example"


# Relay settings compose does not hand through: the entrypoint fixes the address, a replica id
# must differ per replica (each relay makes its own), and compose runs its own single Redis
# (PARLEY_REDIS_URL is fixed), so the Redis Cluster settings have nothing to point at.
NOT_PASSED_TO_RELAYS = {
    "PARLEY_HOST",
    "PARLEY_PORT",
    "PARLEY_REPLICA_ID",
    "PARLEY_REDIS_CLUSTER",
    "PARLEY_CLUSTER_FAILOVER_SECONDS",
}


def test_compose_hands_every_relay_setting_to_the_relays():
    """A relay setting in .env (e.g. PARLEY_SEAT_TTL) reaches relay, relay2 and the LB's
    replicas: all of them take their environment from the one x-relay anchor."""
    relay_vars: set[str] = set()
    for path in (REPO / "services" / "relay").rglob("*.py"):
        relay_vars |= set(re.findall(r"[\"'](PARLEY_[A-Z0-9_]+)[\"']", path.read_text()))
    assert "PARLEY_SEAT_TTL" in relay_vars
    compose = (REPO / "docker-compose.yml").read_text()
    anchor = compose.split("x-relay: &relay", 1)[1].split("\n  volumes:", 1)[0]
    passed = set(re.findall(r"^ {4}(PARLEY_[A-Z0-9_]+):", anchor, re.M))
    assert relay_vars - NOT_PASSED_TO_RELAYS - passed == set(), "pass these in x-relay"
    assert not passed & NOT_PASSED_TO_RELAYS
    services = compose.split("\nservices:\n", 1)[1]
    for name in ("relay", "relay2", "replica"):
        block = services.split(f"\n  {name}:\n", 1)[1].split("\n\n", 1)[0]
        assert "<<: *relay\n" in block, name
        # Overriding `environment:` must keep the anchor's (YAML merges are shallow).
        assert "environment:" not in block or "<<: *relay-env" in block, name


def test_compose_file_is_hardened_without_running_docker():
    """The deployment promises of issue 12 (L5), read from the file itself."""
    compose = (REPO / "docker-compose.yml").read_text()
    for needle in (
        "requirepass $$password",
        '--protected-mode\n      - "yes"',
        '--appendonly\n      - "yes"',
        "--appendfsync\n      - everysec",
        "redis-data:/data",
        '"${RELAY_PUBLISH_ADDRESS:-127.0.0.1}:${PARLEY_PORT:-5000}:5000"',
        "PARLEY_REDIS_URL: redis://redis:6379/0",
        "PARLEY_REDIS_PASSWORD_FILE: *secret-file",
        "redis-secret:/run/parley-secret:ro",
    ):
        assert needle in compose, needle
    # Every service (and the relay anchor) is read-only, capability-free and memory-capped.
    section = compose.split("\nservices:\n", 1)[1].split("\nnetworks:\n", 1)[0]
    blocks = re.split(r"\n  (?=[a-z0-9-]+:\n)", section)
    names = ("redis-secret", "redis", "client", "lb")
    services = [b for b in blocks if b.split(":", 1)[0] in names]
    assert len(services) == len(names)
    anchor = compose.split("x-relay: &relay", 1)[1].split("\nservices:", 1)[0]
    for block in [anchor, *services]:
        for key in ("read_only: true", "cap_drop: [ALL]", "no-new-privileges:true", "mem_limit:"):
            assert key in block, (key, block[:60])
    assert '--protected-mode", "no"' not in compose


def test_compose_starts_with_no_env_file_and_no_redis_password():
    """The README's two commands need no setup: nothing in the file insists on a variable
    (`${VAR:?...}` would stop every compose command, `run client` included), and the client
    service gets neither the password nor its volume."""
    compose = (REPO / "docker-compose.yml").read_text()
    assert ":?" not in compose
    assert "REDIS_PASSWORD: ${REDIS_PASSWORD:-}" in compose
    client = compose.split("\n  client:\n", 1)[1].split("\nnetworks:\n", 1)[0]
    assert "secret" not in client.lower() and "PASSWORD" not in client
    relay = (REPO / "Dockerfile.relay").read_text()
    assert "install -d -o parley -g parley -m 750 /run/parley-secret" in relay


def _run_chat_tests_without_docker(**env: str) -> subprocess.CompletedProcess:
    empty_path = Path(tempfile.mkdtemp(prefix="parley-no-docker-"))
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "PARLEY_REQUIRE_DOCKER")}
    clean.update(PATH=str(empty_path), **env)  # no `docker` command on this PATH
    try:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
             CHAT_TESTS, "-k", "relay_image"],
            cwd=REPO, env=clean, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        empty_path.rmdir()


def test_without_docker_ci_fails_with_the_reason():
    proc = _run_chat_tests_without_docker(CI="true")
    assert proc.returncode == 1, proc.stdout
    assert "container tests need Docker" in proc.stdout
    assert "`docker` command is not installed" in proc.stdout


def test_without_docker_a_developer_run_skips_loudly():
    proc = _run_chat_tests_without_docker()
    assert proc.returncode == 0, proc.stdout
    assert "DOCKER UNAVAILABLE - container tests NOT RUN" in proc.stdout
    assert "1 skipped" in proc.stdout
