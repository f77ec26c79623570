"""Network trouble: a cut link, a dead replica (failover), and relay refusals."""

from __future__ import annotations

import os
import time

import pytest

from parley_client.batch import EXIT_REFUSED
from parley_client.transport import reconnect_delay
from tests.support.proxy import TcpProxy
from tests.support.pythons import find_python, image_python_version, install_client
from tests.support.servers import wait_for


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


# The relay's Socket.IO CONNECT ack as it crosses the wire (in an unmasked text frame), and
# what the relay sends when it drops a connection: a Socket.IO DISCONNECT, then the Engine.IO
# CLOSE (handlers.drop).
CONNECT_ACK = b'40{"sid"'


def _server_text_frame(text: bytes) -> bytes:
    assert len(text) < 126
    return bytes([0x81, len(text)]) + text


RELAY_DROP = _server_text_frame(b"41") + _server_text_frame(b"1")


@pytest.fixture(scope="module")
def image_python(tmp_path_factory) -> str:
    """The client installed for the default images' Python (3.12 today; tests/support/pythons.py).
    CI must have it (it is part of this machine kind); elsewhere its absence skips, loudly."""
    version = image_python_version()
    python = find_python(version)
    if python is None:
        reason = f"no Python {version} on this machine (the default images run it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must test the client on it")
        pytest.skip(f"{reason}; CI fails here instead")
    return install_client(python, tmp_path_factory.mktemp("image-python") / "venv")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("python", ["suite-python", "image-python"])
@pytest.mark.parametrize("then", [b"", RELAY_DROP], ids=["link-dies", "relay-drops"])
def test_connection_lost_right_behind_the_connect_ack_is_noticed(
    then, python, request, two_relays, batch_clients, proxy_factory
):
    """The connection ends just after the relay accepted it, while the client library's
    connect() is still finishing: the link dies, or the relay drops it at once (handlers.drop,
    as when the seat was just resumed elsewhere), its DISCONNECT and CLOSE in the same packet
    as the ack. python-socketio reports neither then (it is not "connected" yet) and
    connect() still returns success; on Python 3.12, the default images' Python, it always
    ends so, and the client sat on the dead socket for ever, its sends dropped unseen. It
    must see a lost connection and reconnect, twice in a row."""
    interpreter = request.getfixturevalue("image_python") if python == "image-python" else None
    r1, r2 = two_relays
    link = proxy_factory(r1.port)
    link.cut_after(CONNECT_ACK, times=2, then=then)
    alice = batch_clients("alice", "window", link.url, "--resend-after", "2", python=interpreter)
    bob = batch_clients("bob", "window", r2.url, "--resend-after", "2")
    bob.send("to alice")
    alice.send("to bob")
    assert alice.wait_received(1, timeout=45) == ["to alice"], alice.stderr()
    assert bob.wait_received(1, timeout=45) == ["to bob"], bob.stderr()
    assert link.cuts_pending == 0  # both cuts really came behind an accepted connect
    assert len(alice.of("lost")) >= 2, alice.raw
    assert alice.wait() == 0, alice.stderr()
    assert bob.wait() == 0, bob.stderr()
    assert alice.received() == ["to alice"] and bob.received() == ["to bob"]


def test_a_relay_that_drops_every_connection_at_once_is_retried_with_a_growing_backoff(
    relay_factory, batch_clients, proxy_factory
):
    """A replica that accepts each connection and ends it at once (fenced, or one that drops
    every seat it cannot serve) must be retried like one that refuses: with a backoff that
    grows, not every 0.2 s for as long as it keeps doing so. Then the client connects."""
    drops = 5
    link = proxy_factory(relay_factory().port)
    link.cut_after(CONNECT_ACK, times=drops, then=RELAY_DROP)
    attempts = link.watch(b"GET /socket.io/")
    alice = batch_clients("alice", "drops", link.url)

    def connected_after_the_drops() -> bool:
        events = list(alice.events)  # a copy: the reader thread appends
        lost = [i for i, e in enumerate(events) if e.get("event") == "lost"]
        waiting = _state(alice, "waiting for peer")
        return len(lost) == drops and any(waiting(e) for e in events[lost[-1] :])

    wait_for(connected_after_the_drops, timeout=60, what="alice connected after the drops")
    assert link.cuts_pending == 0 and len(attempts) == drops + 1, attempts
    # After k connections in a row that ended at once the client waits at least its backoff
    # at the jitter's low end (0.7): sleeping no less than asked, a loaded machine can only
    # make the gaps longer.
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    floors = [reconnect_delay(k, 0.7) for k in range(1, drops + 1)]
    assert all(gap >= floor for gap, floor in zip(gaps, floors, strict=True)), (gaps, floors)
    assert alice.wait() == 0, alice.stderr()


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
