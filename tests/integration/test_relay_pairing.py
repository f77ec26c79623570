"""Two real relay replicas on one real Redis, driven by real Socket.IO clients."""

from __future__ import annotations

import time

from tests.support.relay_clients import (
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    pair,
    seat_auth,
)

EVENTS = [
    ("ELGAMAL_PK", "ELGAMAL_PK_BC"),
    ("DEFF_HELLMAN_PK", "DEFF_HELLMAN_PK_BC"),
    ("DIFF_HELLMAN_PK", "DIFF_HELLMAN_PK_BC"),
    ("message", "received_message"),
]


def test_cross_replica_pairing_forwards_every_event_to_the_other_member_only(two_relays, clients):
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url)
    for i, (event, _) in enumerate(EVENTS):
        a.emit(event, {"v": 1, "from": "a", "i": i})
        b.emit(event, f"b-{i}")
    for i, (_, bc) in enumerate(EVENTS):
        assert b.wait_for(bc) == [{"v": 1, "from": "a", "i": i}]
        assert a.wait_for(bc) == [f"b-{i}"]
    time.sleep(0.3)
    # Nothing echoed: each side received exactly one of each forwarded event.
    for c in (a, b):
        assert sorted(c.names()) == sorted(["KEY_EXCHANGE"] + [bc for _, bc in EVENTS])


def test_same_replica_pairing(two_relays, clients):
    r1, _ = two_relays
    a, b = pair(clients, r1.url, r1.url, room="same")
    a.emit("message", "hi")
    assert b.wait_for("received_message") == ["hi"]
    time.sleep(0.2)
    assert "received_message" not in a.names()


def test_message_ack_and_order_preserved_across_replicas(two_relays, clients):
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url)
    ack = a.call("message", {"v": 1, "seq": 0})
    assert ack["ok"] is True and isinstance(ack["id"], str) and ack["id"]
    for seq in range(1, 200):
        a.emit("message", {"v": 1, "seq": seq})
    got = b.wait_for("received_message", 200)
    assert [m["seq"] for m in got] == list(range(200))


def test_peer_left_then_room_reusable(two_relays, clients):
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url)
    b.close()
    assert a.wait_for("peer_left") == [{"name": "bob"}]
    c = clients(r2.url, {"room": "r1", "name": "carol"}).connect()
    assert c.wait_for("KEY_EXCHANGE") == [1]
    assert a.wait_for("KEY_EXCHANGE", 2) == [1, 1]


def test_third_member_refused_with_room_full(two_relays, clients):
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url)
    err = clients(r1.url, {"room": "r1", "name": "carol"}).try_connect()
    assert err["data"]["code"] == "room_full"
    assert err["data"]["message"]
    # The pair is unaffected.
    a.emit("message", "still here")
    assert b.wait_for("received_message") == ["still here"]
    assert "peer_left" not in a.names() + b.names()


def test_resume_with_same_secret_replaces_stale_session(two_relays, clients):
    r1, r2 = two_relays
    secret, inst = new_secret(), new_instance()
    a = clients(r1.url, seat_auth("r1", "alice", new_secret(), new_instance())).connect()
    b = clients(r2.url, seat_auth("r1", "bob", secret, inst)).connect()
    a.wait_for("KEY_EXCHANGE")
    b2 = clients(r1.url, seat_auth("r1", "bob", secret, inst)).connect()  # failover
    assert b2.wait_for("KEY_EXCHANGE") == [1]
    assert b.disconnected.wait(5), "stale session was not disconnected"
    a.emit("message", "to the new bob")
    assert b2.wait_for("received_message") == ["to the new bob"]
    a.wait_for("KEY_EXCHANGE", 2)
    assert "peer_left" not in a.names()
    assert b.named("received_message") == []


def test_rooms_are_isolated(two_relays, clients):
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url, room="one")
    c, d = pair(clients, r2.url, r1.url, room="two")
    a.emit("message", "for b")
    c.emit("message", "for d")
    assert b.wait_for("received_message") == ["for b"]
    assert d.wait_for("received_message") == ["for d"]
    time.sleep(0.3)
    assert c.named("received_message") == [] and a.named("received_message") == []
    b.close()
    a.wait_for("peer_left")
    assert "peer_left" not in c.names() + d.names()


def test_healthz_and_metrics(two_relays, clients):
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url)
    a.emit("message", "x")
    b.wait_for("received_message")
    h = r1.health()
    assert h["_status"] == 200
    assert h["status"] == "ok" and h["redis"] == "ok"
    assert h["connections"] == 1 and h["replica"]
    assert h["replica"] != r2.health()["replica"]
    status, text = r1.get("/metrics")
    assert status == 200
    assert "parley_relay_connections 1.0" in text
    assert "parley_relay_rooms 1.0" in text
    assert 'parley_relay_messages_forwarded_total{event="received_message"} 1.0' in text
    assert 'parley_relay_rejections_total{code="room_full"} 0.0' in text
    assert "parley_relay_redis_up 1.0" in text
    assert r1.get("/nope")[0] == 404


def test_in_memory_relay_without_redis(relay_factory, clients):
    relay = relay_factory(None)
    assert relay.health()["redis"] == "disabled"
    a, b = pair(clients, relay.url, relay.url, room="mem")
    a.emit("ELGAMAL_PK", "55")
    assert b.wait_for("ELGAMAL_PK_BC") == ["55"]
    err = clients(relay.url, {"room": "mem", "name": "eve"}).try_connect()
    assert err["data"]["code"] == "room_full"
    a.close()
    assert b.wait_for("peer_left") == [{"name": "alice"}]


def test_polling_transport_also_works(two_relays, clients):
    r1, r2 = two_relays
    a = clients(r1.url, {"room": "poll", "name": "a"}, transports=("polling",)).connect()
    b = clients(r2.url, {"room": "poll", "name": "b"}).connect()
    a.wait_for("KEY_EXCHANGE")
    a.emit("message", "via polling")
    assert b.wait_for("received_message") == ["via polling"]
    b.emit("message", "to polling")
    assert a.wait_for("received_message") == ["to polling"]
    # The relay ends the session: a polling client's own disconnect would wait out a
    # 25 s long-poll, the server's goodbye releases it at once (and tells the peer).
    r1.stop()
    assert a.disconnected.wait(10)
    assert b.wait_for("peer_left") == [{"name": "a"}]
