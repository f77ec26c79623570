"""Seats belong to their owners: the review's H1/H2/H3/M4/M6/L3, against real relays + Redis.

Each test reproduces an attack or failure that worked on the relay before seats had owners
(names decided seats, local Socket.IO rooms decided delivery), and checks it no longer does.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import socketio

from tests.support.proxy import TcpProxy
from tests.support.relay_clients import (
    RelayClient,
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    seat_auth,
    seat_sids,
)
from tests.support.servers import wait_for


def joined_lines(*relays) -> int:
    return sum(r.log().count('"event": "joined"') for r in relays)


def test_h1_stranger_with_a_members_name_gets_room_full_and_nothing_flaps(two_relays, clients):
    r1, r2 = two_relays
    alice = clients(r1.url, seat_auth("h1", "alice", new_secret(), new_instance())).connect()
    bob = clients(r2.url, seat_auth("h1", "bob", new_secret(), new_instance())).connect()
    alice.wait_for("KEY_EXCHANGE")
    bob.wait_for("KEY_EXCHANGE")
    for url in (r1.url, r2.url, r2.url):
        for auth in (
            {"room": "h1", "name": "alice"},  # no secret: the original client's way
            seat_auth("h1", "alice", new_secret(), new_instance()),  # her name, another secret
        ):
            err = clients(url, auth).try_connect()
            assert err["data"]["code"] == "room_full"
    alice.emit("message", "still mine")
    bob.wait_for_payload("received_message", "still mine")
    bob.emit("message", "to alice")
    alice.wait_for_payload("received_message", "to alice")
    assert not alice.disconnected.is_set() and not bob.disconnected.is_set()
    assert alice.named("KEY_EXCHANGE") == [1] and bob.named("KEY_EXCHANGE") == [1]
    assert "peer_left" not in alice.names() + bob.names()
    assert joined_lines(r1, r2) == 2  # the strangers never joined, not even for an instant


def test_h2_concurrent_resumes_leave_no_extra_socket_that_receives(
    redis_server, two_relays, clients
):
    """Ten connections of one seat at once (reconnect storm over both replicas): one holds
    the seat, every other socket ends, and the third party only ever hears the holder."""
    r1, r2 = two_relays
    bob = clients(r2.url, seat_auth("h2", "bob", new_secret(), new_instance())).connect()
    secret, inst = new_secret(), new_instance()
    racers = [
        clients((r1.url, r2.url)[i % 2], seat_auth("h2", "alice", secret, inst)) for i in range(10)
    ]
    barrier = threading.Barrier(len(racers))

    def go(c: RelayClient) -> None:
        barrier.wait()
        # refused or rolled back: fine, it holds nothing
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            c.connect(timeout=15)

    threads = [threading.Thread(target=go, args=(c,)) for c in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def settled():
        # A socket whose transport the relay closed has ended, even when python-socketio's
        # client missed the DISCONNECT (it ignores one that arrives while its connect()
        # call is still finishing, and then reports itself connected).
        live = [
            c
            for c in racers
            if c.sio.connected and c.sio.eio.state == "connected" and not c.disconnected.is_set()
        ]
        sids = seat_sids(redis_server.url, "h2")
        return len(live) == 1 and live[0].sio.get_sid() in sids and live

    # the janitor closes strays within a round or two; 60 s only fails a relay that never does
    holder = wait_for(settled, timeout=60, what="one live socket for the seat")[0]
    for i, c in enumerate(racers):  # every socket tries to inject
        with contextlib.suppress(Exception):  # a closed client raises: nothing sent
            c.emit("message", f"inject-{i}")
    holder.emit("message", "last")
    bob.wait_for_payload("received_message", "last")
    got = bob.named("received_message")
    assert got == [f"inject-{racers.index(holder)}", "last"]
    bob.emit("message", "to the holder")
    holder.wait_for_payload("received_message", "to the holder")
    assert all(c.named("received_message") == [] for c in racers if c is not holder)
    assert r1.health()["connections"] + r2.health()["connections"] == 2


def _poll(url: str, sid: str | None = None, body: bytes | None = None) -> str:
    q = "?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")
    req = urllib.request.Request(url + "/socket.io/" + q, data=body)  # noqa: S310
    if body is not None:
        req.add_header("Content-Type", "text/plain;charset=UTF-8")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return resp.read().decode()


def _raced_connect_close(url: str, room: str) -> None:
    opened = _poll(url)
    sid = json.loads(opened[1:])["sid"]
    connect = b"40" + json.dumps({"room": room, "name": "anonymous"}).encode()
    results = []
    workers = [
        threading.Thread(target=lambda b=b: results.append(_try(url, sid, b)))
        for b in (connect, b"1")
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _try(url, sid, body):
    try:
        return _poll(url, sid, body)
    except OSError:
        return None


def test_h3_raced_polling_connect_and_close_leave_no_seat(redis_server, relay_factory, clients):
    args = ["--heartbeat-seconds", "3", "--rate-limit", "off", "--connect-rate", "off"]
    r1 = relay_factory(redis_server.url, extra_args=args)
    r2 = relay_factory(redis_server.url, extra_args=args)
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda i: _raced_connect_close((r1.url, r2.url)[i % 2], "h3"), range(150)))
    wait_for(
        lambda: (
            seat_sids(redis_server.url, "h3") == []
            and r1.health()["connections"] == r2.health()["connections"] == 0
        ),
        timeout=30,
        what="no ghost seat and no ghost connection",
    )
    a = clients(r1.url, {"room": "h3", "name": "anonymous"}).connect()
    b = clients(r2.url, {"room": "h3", "name": "anonymous"}).connect()
    assert a.wait_for("KEY_EXCHANGE") == [1] and b.wait_for("KEY_EXCHANGE") == [1]


def test_m4_leave_during_a_redis_outage_is_retried_after_recovery(
    redis_server, relay_factory, clients
):
    proxy = TcpProxy(redis_server.port)
    try:
        hb = ["--heartbeat-seconds", "10"]
        via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
        r1 = relay_factory(via_proxy, extra_args=hb)
        r2 = relay_factory(redis_server.url, extra_args=hb)
        alice = clients(r1.url, {"room": "m4", "name": "alice"}).connect()
        bob = clients(r2.url, {"room": "m4", "name": "bob"}).connect()
        bob.wait_for("KEY_EXCHANGE")
        proxy.cut()  # r1 loses Redis; Redis keeps its data
        wait_for(lambda: r1.health()["_status"] == 503, timeout=10, what="r1 sees the outage")
        alice.close()
        wait_for(lambda: '"event": "leave_failed"' in r1.log(), timeout=10, what="failed leave")
        assert len(seat_sids(redis_server.url, "m4")) == 2  # the seat leaked... for now
        proxy.restore()
        assert bob.wait_for("peer_left", timeout=20) == [{"name": "alice"}]
        assert len(seat_sids(redis_server.url, "m4")) == 1
        carol = clients(r1.url, {"room": "m4", "name": "carol"}).connect()
        assert carol.wait_for("KEY_EXCHANGE") == [1]
    finally:
        proxy.close()


def _concurrent_health(port: int, n: int) -> list[int]:
    """Send n /healthz requests on n sockets before reading any answer, so the relay has
    all of them in flight at once; return the HTTP statuses."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(n)]
    try:
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        statuses = []
        for s in socks:
            head = s.recv(64).decode("latin-1")
            statuses.append(int(head.split()[1]) if head.startswith("HTTP/") else 0)
        return statuses
    finally:
        for s in socks:
            s.close()


def test_m6_forty_concurrent_health_checks_all_answer_200(two_relays):
    r1, _ = two_relays
    for _ in range(3):
        assert _concurrent_health(r1.port, 40) == [200] * 40


TOKEN = "0123456789abcdef0123456789abcdef"


def test_l3_metrics_need_the_token_and_ack_ids_are_opaque(redis_server, relay_factory, clients):
    env = {"PARLEY_RELAY_TOKEN": TOKEN}
    r1 = relay_factory(redis_server.url, env=env)
    assert r1.get("/metrics")[0] == 401
    assert r1.get("/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    status, text = r1.get("/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and "parley_relay_connections" in text
    a = clients(r1.url, {"room": "l3", "name": "a", "token": TOKEN}).connect()
    clients(r1.url, {"room": "l3", "name": "b", "token": TOKEN}).connect()
    a.wait_for("KEY_EXCHANGE")
    ids = [a.call("message", f"m{i}")["id"] for i in range(30)]
    replica = r1.health()["replica"]
    assert len(set(ids)) == 30
    # Before: "<replica>:<counter>", which told anyone how much the replica forwards.
    assert all(len(i) >= 16 and replica not in i and not re.fullmatch(r".*:\d+", i) for i in ids)
