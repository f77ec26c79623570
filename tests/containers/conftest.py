"""Fixtures for the container tests: a Docker gate and one compose project per module.

Without a Docker engine these tests cannot run. Under CI (``CI`` set) or with
``PARLEY_REQUIRE_DOCKER=1`` that is a failure; elsewhere they are skipped with a loud reason that
says how to enable them. Never a silent pass.
"""

from __future__ import annotations

import os

import pytest

from tests.containers.compose import ComposeProject, docker_problem, ensure_local_images
from tests.support.servers import free_port


def _docker_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("PARLEY_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Fail (CI / PARLEY_REQUIRE_DOCKER=1) or skip loudly when no Docker engine answers."""
    problem = docker_problem()
    if problem is None:
        ensure_local_images()
        return
    if _docker_required():
        pytest.fail(
            f"container tests need Docker and it is required here (CI or "
            f"PARLEY_REQUIRE_DOCKER=1): {problem}",
            pytrace=False,
        )
    pytest.skip(
        f"DOCKER UNAVAILABLE - container tests NOT RUN: {problem}. "
        "Set PARLEY_REQUIRE_DOCKER=1 to make this a failure."
    )


@pytest.fixture(scope="module")
def compose_stack(docker_ready):
    """Images built from this checkout; redis + relay + relay2 up and healthy; always torn down."""
    project = ComposeProject(ports={"relay": free_port(), "relay2": free_port()})
    try:
        project.build()
        project.up("redis", "relay", "relay2")
        yield project
    except BaseException:
        print(project.logs())
        raise
    finally:
        project.down()
