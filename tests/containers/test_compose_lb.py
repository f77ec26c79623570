"""Relay replicas behind one address: the compose `lb` profile, end to end in containers.

`docker compose --profile lb up lb` brings up Redis, two relay replicas (the default) and
HAProxy (Dockerfile.lb); `--scale replica=3` adds a third, which the running LB picks up
without a restart. The relays require a token; the LB's health checks (/healthz) need none,
/metrics through the LB still does. Two real clients talk through the LB's one URL. The replica
holding Alice is stopped in the middle of the conversation, while lines are in flight from
both sides; the conversation goes on through the others and every line arrives exactly once,
in order. The LB's health checks must mark the stopped replica down within seconds, and
then every new connection through the LB is answered by a live replica. Then another
replica holding a member freezes (docker pause): the LB closes its sessions, so the
conversation is back long before the clients' own ping timeout would have noticed.

The project's .env carries relay settings (PARLEY_SEAT_TTL, PARLEY_RELAY_TOKEN) to check
compose hands them to the replicas and the relay applies them. Always torn down with
`docker compose down -v`, also on failure.
"""

from __future__ import annotations

import json
import secrets
import threading
import time

import pytest

from tests.containers.compose import ComposeProject, Peer, healthz, http_status
from tests.support.servers import free_port, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

LB_URL = "http://lb:5000"
DEFAULT_REPLICAS = 2  # deploy.replicas of the replica service
REPLICAS = 3
TOKEN = secrets.token_urlsafe(32)
# Set in the project's .env; the relay's seat key must then live this long (+60 s), not 7 days.
SEAT_TTL = 3600
# After a replica freezes the conversation must be back well before the clients' own
# dead-peer detection (Engine.IO ping interval + timeout = 45 s) could have done it; the LB
# needs about 2 s (two 1 s check timeouts), the clients a few more to resume and resend.
FREEZE_RECOVERY_SECONDS = 40
PROBE = (
    "import urllib.request as u; print(u.urlopen('http://127.0.0.1:5000/healthz', timeout=3)"
    ".read().decode())"
)


@pytest.fixture(scope="module")
def lb_stack(docker_ready):
    ports = {"relay": free_port(), "relay2": free_port(), "lb": free_port()}
    settings = {"PARLEY_SEAT_TTL": str(SEAT_TTL), "PARLEY_RELAY_TOKEN": TOKEN}
    project = ComposeProject(ports=ports, settings=settings)
    try:
        project.build("relay", "client", "lb")
        # Only the LB and what it depends on: Redis, its password, the replicas.
        project.up("lb")
        yield project
    except BaseException:
        print(project.logs())
        raise
    finally:
        project.down()


def _replica_health(project: ComposeProject) -> dict[str, dict]:
    """Container name -> that replica's own /healthz, asked inside it (no published port)."""
    found = {}
    for row in project.containers("replica"):
        if row.get("State") != "running":
            continue
        out = project.run("exec", "-T", "--index", row["Name"].rsplit("-", 1)[1], "replica",
                          "python3", "-c", PROBE, check=False)  # fmt: skip
        found[row["Name"]] = json.loads(out.stdout) if out.returncode == 0 else {}
    return found


def _scale(project: ComposeProject, replicas: int) -> None:
    """The README's `docker compose --profile lb up -d --wait --scale replica=N lb`."""
    project.up("lb", "--scale", f"replica={replicas}")


def _started_at(project: ComposeProject, service: str) -> str:
    (row,) = project.containers(service)
    return project.run("exec", "-T", service, "cat", "/proc/1/stat").stdout.split()[21] + row["ID"]


def _connections(project: ComposeProject) -> int:
    return sum(h.get("connections", 0) for h in _replica_health(project).values())


def _ids_through_lb(port: int, probes: int) -> list[str]:
    """Replica ids answering /healthz through the LB, one new connection per probe ("" for a
    failed one). Few probes, spaced: the LB allows 80 new connections per address in 10 s."""
    ids = []
    for _ in range(probes):
        ids.append(healthz(port).get("replica", ""))
        time.sleep(0.05)
    return ids


def _downs(project: ComposeProject) -> int:
    """How many times the LB has marked a replica down so far (its log, one line each)."""
    log = project.run("logs", "--no-color", "--no-log-prefix", "lb", check=False).stdout
    return sum(
        1 for line in log.splitlines() if line.startswith("Server relays/") and " is DOWN" in line
    )


def _assert_seat_ttl_applied(project: ComposeProject, room: str) -> None:
    """The room's seat key expires after PARLEY_SEAT_TTL (+60 s) from .env, not 7 days."""
    keys = project.redis_cli("--scan", "--pattern", f"*{room}*").stdout.split()
    ttls = [int(project.redis_cli("ttl", key).stdout.strip()) for key in keys]
    assert any(0 < ttl <= SEAT_TTL + 60 for ttl in ttls), dict(zip(keys, ttls, strict=True))


def test_scale_up_reaches_the_running_lb(lb_stack):
    project: ComposeProject = lb_stack
    lb_port = project.ports["lb"]
    # Back to the default first: the stop test may have run before and scaled up already.
    _scale(project, DEFAULT_REPLICAS)
    assert len(_replica_health(project)) == DEFAULT_REPLICAS
    lb_before = _started_at(project, "lb")
    _scale(project, REPLICAS)
    replica_ids = {h.get("replica") for h in _replica_health(project).values()}
    assert len(replica_ids) == REPLICAS, replica_ids
    # The new replica gets connections through the same LB process (Docker DNS, no reload).
    wait_for(lambda: set(_ids_through_lb(lb_port, 6)) == replica_ids, 30, 0.5, "all in the LB")
    assert _started_at(project, "lb") == lb_before, "the LB was restarted"
    # /healthz answers without the relay's token (the LB's checks need none); /metrics not.
    assert http_status(lb_port, "/lb/healthz") == 200
    assert http_status(lb_port, "/metrics") == 401


def test_the_lb_profile_is_hardened_and_hides_the_replicas(lb_stack):
    project: ComposeProject = lb_stack
    services = json.loads(project.run("config", "--format", "json").stdout)["services"]
    lb, replica = services["lb"], services["replica"]
    (port,) = lb["ports"]
    assert port["host_ip"] == "127.0.0.1" and port["target"] == 5000, port
    assert not replica.get("ports"), "replicas are reached through the LB only"
    assert lb["networks"].keys() == {"front"}, "the LB never sees Redis"
    # The LB enforces the per-address limits on real addresses; the replicas see only the LB.
    assert replica["environment"]["PARLEY_MAX_CONNECTIONS_PER_ADDRESS"] == "off"
    assert replica["environment"]["PARLEY_CONNECT_RATE"] == "off"
    for svc in (lb, replica):
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in svc["security_opt"] and svc["mem_limit"]
    assert project.run("exec", "-T", "lb", "id", "-u").stdout.strip() == "10003"
    out = project.run("exec", "-T", "lb", "touch", "/etc/x", check=False)
    assert "Read-only file system" in out.stderr, out.stderr
    # The relay settings of .env reach every replica.
    for row in project.containers("replica"):
        index = row["Name"].rsplit("-", 1)[1]
        env = project.run("exec", "-T", "--index", index, "replica", "printenv",
                          "PARLEY_SEAT_TTL", "PARLEY_RELAY_TOKEN").stdout  # fmt: skip
        assert env.split() == [str(SEAT_TTL), TOKEN], index


def test_replicas_behind_one_url_survive_a_stop_mid_conversation(lb_stack):
    project: ComposeProject = lb_stack
    lb_port = project.ports["lb"]
    _scale(project, REPLICAS)  # a no-op when the scale-up test already scaled
    replica_ids = {h.get("replica") for h in _replica_health(project).values()}
    assert len(replica_ids) == REPLICAS, replica_ids
    # The LB spreads new connections over all replicas.
    wait_for(lambda: set(_ids_through_lb(lb_port, 6)) == replica_ids, 30, 0.5, "all in the LB")

    room = f"lb-{secrets.token_hex(4)}"
    alice = Peer(project, "alice", room, [LB_URL])
    bob = Peer(project, "bob", room, [LB_URL])
    peers = [alice, bob]
    frozen = victim = ""
    try:
        wait_for(lambda: alice.of("secure") and bob.of("secure"), 90, 0.2, "both sides secure")
        a_sent, b_sent = [f"alice {i} through the LB" for i in range(3)], ["bob 0, über ✓"]
        for line in a_sent:
            alice.proc.send(line)
        bob.proc.send(b_sent[0])
        bob.expect(a_sent)
        alice.expect(b_sent)

        holding = {n: h for n, h in _replica_health(project).items() if h.get("connections")}
        assert sum(h["connections"] for h in holding.values()) == 2, holding
        # Stop a replica that holds a member (Alice's or Bob's, whichever sorts first) while
        # both keep typing: lines sent before, during and after the stop.
        victim, victim_health = sorted(holding.items())[0]
        stopper = threading.Thread(target=project.stop_container, args=(victim,), daemon=True)
        # (A replica added by --scale is also marked down once, until it listens: count.)
        downs_before = _downs(project)
        stop_started = time.monotonic()
        stopper.start()
        for i in range(3, 8):
            line_a, line_b = f"alice {i} during the stop", f"bob {i} during the stop"
            alice.proc.send(line_a)
            bob.proc.send(line_b)
            a_sent.append(line_a)
            b_sent.append(line_b)
            time.sleep(0.3)
        stopper.join(timeout=60)
        assert not stopper.is_alive(), "docker stop hung"
        assert {r["Name"]: r["State"] for r in project.containers("replica")}[victim] == "exited"

        # The LB's health checks mark it down within seconds (within 1.5 s of its listener
        # closing, by design); from then on every new connection is answered by a live one.
        # (A connection made in that window to the vanished address can be cut when the
        # replica is marked down: shutdown-sessions; the client then simply retries.)
        wait_for(lambda: _downs(project) > downs_before, 20, 0.2, "the LB to mark it down")
        print(f"replica marked down {time.monotonic() - stop_started:.1f} s after docker stop")
        survivors = replica_ids - {victim_health["replica"]}
        after = _ids_through_lb(lb_port, 10)
        assert set(after) <= survivors and "" not in after, (after, survivors)

        for i in range(8, 11):
            for peer, sent in ((alice, a_sent), (bob, b_sent)):
                line = f"{peer.name} {i} after the stop"
                peer.proc.send(line)
                sent.append(line)
        bob.expect(a_sent, timeout=120)
        alice.expect(b_sent, timeout=120)
        # The stopped replica's member is back, on a survivor: both are connected again.
        wait_for(lambda: _connections(project) == 2, 30, 0.5, "both members on the survivors")

        # Then a replica holding a member freezes (docker pause): no FIN, no answer, its
        # connections stay open. The LB's checks time out, it marks the replica down and
        # closes the sessions still on it, so that member reconnects at once instead of at
        # its Engine.IO ping timeout (25 + 20 s, past this wait).
        holding = {n: h for n, h in _replica_health(project).items() if h.get("connections")}
        frozen, frozen_health = sorted(holding.items())[0]
        project.pause_container(frozen)
        frozen_at = time.monotonic()
        for i in range(11, 14):
            for peer, sent in ((alice, a_sent), (bob, b_sent)):
                line = f"{peer.name} {i} after the freeze"
                peer.proc.send(line)
                sent.append(line)
        bob.expect(a_sent, timeout=FREEZE_RECOVERY_SECONDS)
        alice.expect(b_sent, timeout=FREEZE_RECOVERY_SECONDS)
        print(f"conversation back {time.monotonic() - frozen_at:.1f} s after docker pause")
        survivors -= {frozen_health["replica"]}
        wait_for(lambda: _connections(project) == 2, 30, 0.5, "both members on the last one")

        for peer in peers:
            peer.proc.close_input()
        for peer in peers:
            status = peer.proc.wait(timeout=90)
            assert status == 0, f"{peer.name} exited {status}\n{peer.proc.transcript()}"
        # Exactly once, in order, after the failover's re-handshake and outbox resends.
        assert bob.received() == a_sent
        assert alice.received() == b_sent
        # Both members ended on the surviving replicas; the stopped one is out of the pool.
        assert healthz(lb_port).get("replica") in survivors
        now = _replica_health(project)
        assert victim not in now and frozen not in now
        assert {h.get("replica") for h in now.values()} == survivors
        _assert_seat_ttl_applied(project, room)
    except BaseException:
        for peer in peers:
            print(f"===== {peer.name}\n{peer.proc.transcript()}")
        print(f"===== compose logs\n{project.logs()}")
        raise
    finally:
        for peer in peers:
            peer.proc.kill()
        if frozen:
            project.pause_container(frozen, paused=False)  # so `down` stops it normally
        if victim:  # the module's other tests find every replica running, in any order
            project.start_container(victim)
        if frozen or victim:  # ...and healthy (r39, shuffled: the scale test ran next and
            project.wait_healthy("replica")  # its `up --wait` failed on the thawed one)
