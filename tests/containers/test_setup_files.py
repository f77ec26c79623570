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
