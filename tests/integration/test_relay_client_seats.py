"""Real `parley` processes own their seats by secret: a second terminal and a stranger using
the member's name are refused with one line and stop; a failover resumes the seat."""

from __future__ import annotations

import shutil
import subprocess


def _locks(folder, names):
    return [n for n in names if n.endswith(".lock")]


def _output(client) -> list[str]:
    """Everything the client printed: JSON events on stdout, status lines on stderr."""
    return client.raw + client.stderr().splitlines()


def _exit(client, timeout: float = 40.0) -> int:
    try:
        return client.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{client.name} kept running; output: {client.raw}") from None


def test_second_terminal_and_stranger_are_refused_once_and_stop(
    two_relays, batch_clients, tmp_path
):
    r1, r2 = two_relays
    alice = batch_clients("alice", "cs", [r1.url], home=tmp_path / "alice")
    bob = batch_clients("bob", "cs", [r2.url], home=tmp_path / "bob")
    alice.wait_secure()
    bob.wait_secure()
    # Her home copied to another machine (same seat secret, another process): the seat is
    # live, so the relay refuses it, and the client stops without a retry loop. (The same
    # home twice is caught by the client's own lock before it reaches the relay.)
    shutil.copytree(tmp_path / "alice", tmp_path / "alice-copy", ignore=_locks)
    twin = batch_clients("alice", "cs", [r2.url, r1.url], home=tmp_path / "alice-copy")
    assert _exit(twin) != 0
    lines = [line for line in _output(twin) if "already connected as" in line]
    assert len(lines) == 1 and "alice" in lines[0], _output(twin)
    # A stranger under her name (own home, so another secret): room_full, and it stops.
    mallory = batch_clients("alice", "cs", [r1.url], home=tmp_path / "mallory")
    assert _exit(mallory) != 0
    full = [line for line in _output(mallory) if "room_full" in line or "two people" in line]
    assert len(full) == 1, _output(mallory)
    alice.send("still here")
    assert bob.wait_received(1) == ["still here"]
    assert r1.log().count('"event": "joined"') + r2.log().count('"event": "joined"') == 2


def test_failover_to_another_replica_resumes_the_seat(
    redis_server, relay_factory, batch_clients, tmp_path
):
    r1 = relay_factory(redis_server.url)
    r2 = relay_factory(redis_server.url)
    alice = batch_clients("alice", "fo", [r1.url, r2.url], home=tmp_path / "alice")
    bob = batch_clients("bob", "fo", [r2.url], home=tmp_path / "bob")
    alice.wait_secure()
    r1.kill()  # no goodbye: alice's seat still names her connection on r1
    alice.send("after failover")
    assert bob.wait_received(1, timeout=60) == ["after failover"]
    assert '"seat": "secret"' in r2.log() and '"replaced"' in r2.log()
