"""Network trouble: a cut link, a dead replica (failover), and relay refusals."""

from __future__ import annotations

import time

import pytest

from parley_client.batch import EXIT_REFUSED
from tests.support.proxy import TcpProxy


@pytest.fixture
def proxy_factory():
    proxies: list[TcpProxy] = []

    def start(port: int) -> TcpProxy:
        proxy = TcpProxy(port)
        proxies.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in proxies:
            proxy.close()


def _state(client, state: str):
    return lambda e: e.get("event") == "status" and e.get("state") == state


def test_network_cut_loses_and_duplicates_nothing(two_relays, batch_clients, proxy_factory):
    r1, r2 = two_relays
    link = proxy_factory(r1.port)
    alice = batch_clients("alice", "cut", link.url, "--resend-after", "2")
    bob = batch_clients("bob", "cut", r2.url, "--resend-after", "2")
    bob.send("before the cut")
    assert alice.wait_received(1) == ["before the cut"]

    link.cut()
    alice.wait_event(_state(alice, "connecting"), what="alice noticing the cut")
    during = [f"during the cut {i}" for i in range(5)]
    for line in during:
        bob.send(line)
        time.sleep(0.3)
    alice.send("alice typed this offline")
    time.sleep(2)
    assert alice.received() == ["before the cut"]  # really cut off
    link.restore()

    assert alice.wait_received(6, timeout=45) == ["before the cut", *during]
    assert bob.wait_received(1, timeout=30) == ["alice typed this offline"]
    assert alice.wait() == 0, alice.stderr()
    assert bob.wait() == 0, bob.stderr()
    assert alice.received() == ["before the cut", *during]  # exactly once each
    assert bob.received() == ["alice typed this offline"]
    assert len(alice.of("secure")) >= 2  # a fresh handshake after reconnecting


def test_failover_to_the_next_relay_when_a_replica_dies(two_relays, batch_clients):
    r1, r2 = two_relays
    alice = batch_clients("alice", "fo", f"{r1.url},{r2.url}")
    bob = batch_clients("bob", "fo", r2.url)
    alice.send("first")
    assert bob.wait_received(1) == ["first"]
    r1.kill()
    alice.wait_event(_state(alice, "connecting"), what="alice noticing the dead relay")
    alice.send("second", "third")
    bob.send("to alice after failover")
    assert bob.wait_received(3, timeout=45) == ["first", "second", "third"]
    assert alice.wait_received(1, timeout=45) == ["to alice after failover"]
    assert alice.wait() == 0 and bob.wait() == 0
    connected = [e for e in alice.of("info") if "connected to relay" in e["message"]]
    assert r2.url in connected[-1]["message"]


LONG_TOKEN = "s3cret-relay-token-of-128-bits"  # the relay refuses tokens under 128 bits


def test_wrong_token_exits_2_with_one_clear_line(relay_factory, batch_clients):
    relay = relay_factory(env={"PARLEY_RELAY_TOKEN": LONG_TOKEN})
    alice = batch_clients("alice", "locked", relay.url, "--token", "wrong")
    assert alice.wait(30) == 2
    err = alice.stderr()
    assert "unauthorized" in err and "Traceback" not in err
    ok = batch_clients("bob", "locked", relay.url, env={"PARLEY_RELAY_TOKEN": LONG_TOKEN})
    ok.wait_event(_state(ok, "waiting for peer"), what="bob admitted with the right token")


def test_third_member_gets_room_full(relay_factory, batch_clients):
    relay = relay_factory()
    alice = batch_clients("alice", "pair", relay.url)
    bob = batch_clients("bob", "pair", relay.url)
    alice.wait_secure()
    bob.wait_secure()
    carol = batch_clients("carol", "pair", relay.url)
    assert carol.wait(30) == EXIT_REFUSED
    err = carol.stderr()
    assert "room_full" in err and "Traceback" not in err


def test_frozen_relay_replica_loses_and_duplicates_nothing(two_relays, batch_clients):
    """SIGSTOP the replica bob is on for a few seconds while alice keeps sending."""
    import signal

    r1, r2 = two_relays
    alice = batch_clients("alice", "freeze", r1.url, "--resend-after", "2")
    bob = batch_clients("bob", "freeze", r2.url, "--resend-after", "2")
    alice.send("before")
    assert bob.wait_received(1) == ["before"]
    r2.proc.send_signal(signal.SIGSTOP)
    try:
        during = [f"while frozen {i}" for i in range(5)]
        for line in during:
            alice.send(line)
            time.sleep(0.5)
        assert bob.received() == ["before"]
    finally:
        r2.proc.send_signal(signal.SIGCONT)
    assert bob.wait_received(6, timeout=45) == ["before", *during]
    assert alice.wait() == 0 and bob.wait() == 0
    assert bob.received() == ["before", *during]
