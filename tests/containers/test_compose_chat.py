"""End to end in containers: the images users run, wired by the real docker-compose.yml.

Redis and two relay replicas come up with compose, with no .env and no REDIS_PASSWORD (the
README path: compose generates the Redis password itself). Two `docker compose run -T client
--batch` containers, one on each replica, exchange messages both ways. Then one relay container
is stopped and the conversation goes on through the other (the clients fail over along their
comma-separated relay lists). The project is always removed with `docker compose down -v`."""

from __future__ import annotations

import json
import re
import secrets

import pexpect
import pytest

from tests.containers.compose import SECRET_FILE, ComposeProject, Peer, healthz
from tests.support.servers import wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

RELAY_A = "http://relay:5000"
RELAY_B = "http://relay2:5000"


def _exchange(
    alice: Peer,
    bob: Peer,
    a_lines: list[str],
    b_lines: list[str],
    a_seen: list[str],
    b_seen: list[str],
) -> None:
    """Alice sends a_lines, Bob b_lines; each must see exactly the other's lines so far."""
    for line in a_lines:
        alice.proc.send(line)
    for line in b_lines:
        bob.proc.send(line)
    bob.expect(a_seen + a_lines)
    alice.expect(b_seen + b_lines)


def test_interactive_clients_on_a_terminal_chat_as_in_the_readme(compose_stack):
    """The README quickstart: `docker compose run --rm client --name NAME --room demo` twice,
    with no .env (the stack came up without any REDIS_PASSWORD) and no --home: each name is
    its own home in the keys volume (the client image's PARLEY_HOMES)."""
    project: ComposeProject = compose_stack
    room = f"tty-{secrets.token_hex(4)}"
    alice = project.spawn_tty("--name", "alice", "--room", room, deps=True)
    # The second terminal is opened once the first one is up, as a person does.
    alice.expect("connected to relay", timeout=120)
    bob = project.spawn_tty("--name", "bob", "--room", room, deps=True)
    try:
        for me, peer in ((alice, "bob"), (bob, "alice")):
            me.expect(f"secure with {peer}", timeout=90)
        alice.sendline("hello over a real terminal")
        bob.expect(r"alice: hello over a real terminal")
        bob.sendline("/verify")
        bob.expect(r"(\d{5} ){11}\d{5}")
        bob_number = bob.match.group(0)
        alice.sendline("/verify")
        alice.expect(r"(\d{5} ){11}\d{5}")
        assert alice.match.group(0) == bob_number
        for me in (alice, bob):
            me.sendline("exit")
            me.expect(pexpect.EOF, timeout=60)
            me.close()
            assert me.exitstatus == 0, (me.exitstatus, me.before)
        # Two people, two homes, named after them, with nothing given but --name.
        homes = ("/home/parley/.parley/alice", "/home/parley/.parley/bob")
        ls = project.run("run", "--rm", "-T", "--no-deps", "--entrypoint", "ls", "client", *homes)
        assert ls.stdout.count("identity.json") == 2, ls.stdout
    except BaseException:
        print(f"===== alice tty\n{alice.before}\n===== bob tty\n{bob.before}")
        print(f"===== compose logs\n{project.logs()}")
        raise
    finally:
        for me in (alice, bob):
            me.close(force=True)


def test_two_clients_on_two_replicas_chat_and_survive_a_replica_stop(compose_stack):
    project: ComposeProject = compose_stack
    room = f"ct-{secrets.token_hex(4)}"
    port_a, port_b = project.ports["relay"], project.ports["relay2"]
    health_a, health_b = healthz(port_a), healthz(port_b)
    assert health_a.get("redis") == "ok" and health_b.get("redis") == "ok", (health_a, health_b)
    assert health_a["replica"] != health_b["replica"], "expected two distinct relay replicas"

    # Alice prefers replica A, Bob replica B; each lists the other replica to fail over to.
    alice = Peer(project, "alice", room, [RELAY_A, RELAY_B])
    bob = Peer(project, "bob", room, [RELAY_B, RELAY_A])
    peers = [alice, bob]
    try:
        wait_for(lambda: alice.of("secure") and bob.of("secure"), 90, 0.2, "both sides secure")
        assert healthz(port_a).get("connections") == 1, "alice should be on replica A"
        assert healthz(port_b).get("connections") == 1, "bob should be on replica B"
        a_num = alice.of("secure")[-1]["safety_number"]
        b_num = bob.of("secure")[-1]["safety_number"]
        assert a_num == b_num and len(a_num) == 60, (a_num, b_num)

        a1 = ["hello bob, from replica A", "ünïcode ✓ works"]
        b1 = ["hi alice, from replica B"]
        _exchange(alice, bob, a1, b1, [], [])

        # Stop Alice's replica: she must reconnect to B and the chat goes on, nothing lost.
        with project.stopped("relay"):
            assert project.container_state("relay") == "exited"
            a2 = ["after the failover, still here?"]
            b2 = ["yes, through replica B only", "second line after failover"]
            _exchange(alice, bob, a2, b2, a1, b1)
            wait_for(lambda: healthz(port_b).get("connections") == 2, 30, 0.2, "both on replica B")

            for peer in peers:
                peer.proc.close_input()
            for peer in peers:
                status = peer.proc.wait(timeout=90)
                assert status == 0, f"{peer.name} exited {status}\n{peer.proc.transcript()}"
            # Exactly once: nothing duplicated after the re-handshake and outbox resend.
            assert bob.received() == a1 + a2
            assert alice.received() == b1 + b2
        assert healthz(port_a).get("status") == "ok", "relay was not restored after the test"
    except BaseException:
        for peer in peers:
            print(f"===== {peer.name}\n{peer.proc.transcript()}")
        print(f"===== compose logs\n{project.logs()}")
        raise
    finally:
        for peer in peers:
            peer.proc.kill()


def test_relay_image_holds_no_client_and_no_crypto(compose_stack):
    """The relay image ships only what the relay runs; the client image has its crypto core."""
    project: ComposeProject = compose_stack
    probe = (
        "import importlib.util as u; print([u.find_spec(m) is not None for m in "
        "('parley_relay', 'parley_client', 'parley_crypto')])"
    )
    relay = project.run(
        "run", "--rm", "-T", "--no-deps", "--entrypoint", "python3", "relay2", "-c", probe
    )
    client = project.run(
        "run", "--rm", "-T", "--no-deps", "--entrypoint", "python3", "client", "-c", probe
    )
    assert relay.stdout.strip() == "[True, False, False]"
    assert client.stdout.strip() == "[False, True, True]"
    who = project.run("run", "--rm", "-T", "--no-deps", "--entrypoint", "id", "relay2", "-u")
    assert who.stdout.strip() != "0", "the relay must not run as root"


def test_compose_keeps_redis_private_and_waits_for_health(compose_stack):
    """Redis publishes no port, sits only on the internal back network, needs a password."""
    project: ComposeProject = compose_stack
    config_text = project.run("config", "--format", "json").stdout
    config = json.loads(config_text)
    services = config["services"]
    assert not services["redis"].get("ports")
    assert set(services["redis"]["networks"]) == {"back"}
    assert config["networks"]["back"].get("internal") is True
    assert services["redis"]["depends_on"]["redis-secret"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("relay", "relay2"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        env = services[name]["environment"]
        assert env["PARLEY_REDIS_URL"] == "redis://redis:6379/0", "no password in the URL"
        assert env["PARLEY_REDIS_PASSWORD_FILE"] == SECRET_FILE
    client = services["client"]
    assert client["profiles"] == ["client"] and client["stdin_open"] and client["tty"]
    assert [v["source"] for v in client["volumes"]] == ["keys"], "the client never sees it"
    assert project.container_state("redis") == "running"
    # The generated password is nowhere in the compose model, so not in `docker inspect`.
    assert project.redis_secret() not in config_text


def test_the_readme_path_generates_one_private_password_and_keeps_it(compose_stack):
    """No .env at all: redis-secret made a 256-bit password, readable by the relay user and
    Redis's group only, not on Redis's command line, and the same after another start."""
    project: ComposeProject = compose_stack
    assert project.redis_password is None
    password = project.redis_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", password), password
    mode = project.run("exec", "-T", "relay", "stat", "-c", "%a %u %g", SECRET_FILE).stdout
    assert mode.split() == ["640", "10001", "10001"]
    folder = project.run("exec", "-T", "relay", "stat", "-c", "%a", "/run/parley-secret").stdout
    assert folder.strip() == "750"
    cmdline = project.run("exec", "-T", "redis", "cat", "/proc/1/cmdline").stdout
    assert password not in cmdline
    assert project.redis_cli("ping", password=password).stdout.strip() == "PONG"
    again = project.run("run", "--rm", "-T", "redis-secret")
    assert "kept the existing password" in again.stdout, again.stdout + again.stderr
    assert project.redis_secret() == password


def test_redis_refuses_without_the_password_and_persists_to_aof(compose_stack):
    project: ComposeProject = compose_stack
    for wrong in ("", "0" * 64):
        refused = project.redis_cli("ping", password=wrong, check=False)
        assert ("NOAUTH" if not wrong else "WRONGPASS") in refused.stdout + refused.stderr
    wanted = {"appendonly": "yes", "appendfsync": "everysec", "protected-mode": "yes"}
    for key, want in wanted.items():
        out = project.redis_cli("config", "get", key).stdout
        assert out.split() == [key, want], out


def test_every_service_is_hardened_and_the_relay_is_on_loopback(compose_stack):
    project: ComposeProject = compose_stack
    services = json.loads(project.run("config", "--format", "json").stdout)["services"]
    for name, svc in services.items():
        assert svc.get("read_only") is True, name
        assert svc.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert svc.get("mem_limit"), name
    for name in ("relay", "relay2"):
        (port,) = services[name]["ports"]
        assert port["host_ip"] == "127.0.0.1", port
    # The running relay container really is read-only and unprivileged.
    probe = "open('/opt/venv/x', 'w')"
    out = project.run("exec", "-T", "relay", "python3", "-c", probe, check=False)
    assert "Read-only file system" in out.stderr, out.stderr
