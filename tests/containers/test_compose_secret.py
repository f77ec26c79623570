"""REDIS_PASSWORD set in .env: compose uses it instead of generating one, and refuses a bad one.

(The README path, no .env at all, is what test_compose_chat.py's stack runs.)
"""

from __future__ import annotations

import secrets

import pytest

from tests.containers.compose import ComposeProject, healthz
from tests.support.servers import free_port, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def chosen_password_stack(docker_ready):
    password = secrets.token_hex(24)
    project = ComposeProject(
        ports={"relay": free_port(), "relay2": free_port()}, redis_password=password
    )
    try:
        project.build()
        project.up("redis", "relay")
        yield project
    except BaseException:
        print(project.logs())
        raise
    finally:
        project.down()


def test_a_password_from_env_is_the_one_redis_and_the_relay_use(chosen_password_stack):
    project: ComposeProject = chosen_password_stack
    password = project.redis_password
    assert project.redis_secret() == password
    assert project.redis_cli("ping", password=password).stdout.strip() == "PONG"
    wrong = project.redis_cli("ping", password="f" * 48, check=False)
    assert "WRONGPASS" in wrong.stdout + wrong.stderr
    assert healthz(project.ports["relay"]).get("redis") == "ok"


def test_a_bad_password_in_env_stops_the_start_with_one_line(chosen_password_stack):
    """A refused REDIS_PASSWORD leaves the file alone; with the line removed the stack comes
    back on the password it had (the file is kept when no REDIS_PASSWORD is given)."""
    project: ComposeProject = chosen_password_stack
    with open(project.env_file, "w") as env_file:
        env_file.write("REDIS_PASSWORD=has spaces in it, refused\n")
    up = project.run("up", "-d", "--wait", "redis", "relay", check=False, timeout=180)
    assert up.returncode != 0
    logs = project.run("logs", "--no-color", "redis-secret").stdout.strip().splitlines()
    assert logs[-1].endswith(
        "redis-secret: REDIS_PASSWORD: the password may hold printable ASCII only, no spaces, "
        "quotes or backslashes; make one with: openssl rand -hex 32"
    ), logs
    with open(project.env_file, "w") as env_file:
        env_file.write("")
    project.up("redis", "relay")
    assert project.redis_secret() == project.redis_password, "the file is unchanged"
    wait_for(lambda: healthz(project.ports["relay"]).get("redis") == "ok", 60, 0.5, "relay up")
