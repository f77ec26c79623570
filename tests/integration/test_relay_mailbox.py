"""Offline delivery at the relay (issue 15): real relay replicas, real redis-server, real
Socket.IO clients. Bob's seat is reserved by his secret while he is away; what Alice sends
meanwhile waits in his mailbox and reaches him, in order, when he is back on any replica.
"""

from __future__ import annotations

import threading

import pytest
import redis
import requests

from tests.support.relay_clients import (
    RelayClient,
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    seat_auth,
)
from tests.support.servers import RedisServer, wait_for


class Member:
    """A seat owner: its secret and instance survive its connections (as a client's home)."""

    def __init__(self, clients, room: str, name: str):
        self.clients, self.room, self.name = clients, room, name
        self.secret, self.instance = new_secret(), new_instance()

    def connect(self, url: str) -> RelayClient:
        auth = seat_auth(self.room, self.name, self.secret, self.instance)
        return self.clients(url, auth).connect()


def connections(url: str) -> int:
    """How many connections the relay at `url` holds (its /healthz count)."""
    return requests.get(f"{url}/healthz", timeout=10).json()["connections"]


def away(clients, url: str, room: str = "mb") -> tuple[Member, Member]:
    """Bob joined once and left (seat reserved); returns (alice, bob) members.

    Returns only once the relay has processed Bob's disconnect: a line sent before that
    would go live to his closing connection instead of into his mailbox."""
    alice, bob = Member(clients, room, "alice"), Member(clients, room, "bob")
    before = connections(url)
    first = bob.connect(url)
    first.wait_for("mailbox_done")
    first.close()
    wait_for(lambda: connections(url) <= before, timeout=30, what="bob's disconnect processed")
    return alice, bob


def send_all(sender: RelayClient, texts, pad: str = "") -> list[dict]:
    extra = {"pad": pad} if pad else {}
    return [sender.call("message", {"v": 2, "t": t, **extra}) for t in texts]


def stored_texts(client: RelayClient) -> list[str]:
    return [e["payload"]["t"] for e in client.named("stored_message")]


def test_stored_while_away_drained_in_order_on_the_other_replica_acked_once(two_relays, clients):
    r1, r2 = two_relays
    alice_m, bob_m = away(clients, r2.url)
    alice = alice_m.connect(r1.url)
    acks = send_all(alice, [f"m{i}" for i in range(30)])
    assert all(a["ok"] and a["stored"] for a in acks), acks[:3]
    ids = [a["id"] for a in acks]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    bob = bob_m.connect(r2.url)
    assert bob.wait_for("mailbox_done") == [{"count": 30}]
    entries = bob.named("stored_message")
    assert [e["payload"] for e in entries] == [{"v": 2, "t": f"m{i}"} for i in range(30)]
    assert [e["id"] for e in entries] == ids
    assert all(isinstance(e["at"], int) and e["at"] > 1_600_000_000_000 for e in entries)
    names = bob.names()
    assert names.index("mailbox_done") > max(
        i for i, n in enumerate(names) if n == "stored_message"
    )
    assert "KEY_EXCHANGE" not in names[: names.index("mailbox_done")]

    assert bob.call("mailbox_ack", {"ids": ids[:20]}) == {"ok": True, "removed": 20}
    bob.close()
    again = bob_m.connect(r1.url)  # unacked entries come again, on any replica
    assert again.wait_for("mailbox_done") == [{"count": 10}]
    assert stored_texts(again) == [f"m{i}" for i in range(20, 30)]
    assert again.call("mailbox_ack", {"ids": ids[20:]})["removed"] == 10
    again.close()
    last = bob_m.connect(r2.url)
    assert last.wait_for("mailbox_done") == [{"count": 0}]


def test_live_traffic_is_held_until_the_backlog_is_out_and_nothing_falls_between(
    redis_server, relay_factory, clients
):
    """Alice sends without pause while Bob comes back: every line arrives exactly once, in
    order, the stored ones first, and no live line before mailbox_done. The backlog is big
    (200 x 8 kB, more than the outbound queue holds) so the drain is paced and takes a while."""
    env = {"PARLEY_RATE_LIMIT": "off"}
    r1, r2 = relay_factory(redis_server.url, env=env), relay_factory(redis_server.url, env=env)
    alice_m, bob_m = away(clients, r2.url, room="hold")
    alice = alice_m.connect(r1.url)
    pad = "p" * 8000
    send_all(alice, [f"s{i}" for i in range(200)], pad)
    sent, stop = [], threading.Event()

    def keep_sending():
        while not stop.is_set() and len(sent) < 400:
            text = f"l{len(sent)}"
            sent.append((text, alice.call("message", {"v": 2, "t": text})))

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        wait_for(lambda: len(sent) >= 20, what="live sends before bob returns")
        bob = bob_m.connect(r2.url)
        bob.wait_for("mailbox_done", timeout=30)
        wait_for(lambda: len(sent) >= 100 or not sender.is_alive(), what="live sends after")
    finally:
        stop.set()
        sender.join()
    assert all(ack["ok"] for _, ack in sent)
    expected = [f"s{i}" for i in range(200)] + [text for text, _ in sent]
    wait_for(
        lambda: (
            len(bob.named("stored_message")) + len(bob.named("received_message")) >= len(expected)
        ),
        timeout=30,
        what="every line at bob",
    )
    order = []
    for name, data in bob.events:
        if name == "stored_message":
            order.append((name, data["payload"]["t"]))
        elif name == "received_message":
            order.append((name, data["t"]))
        elif name == "mailbox_done":
            order.append((name, None))
    done = [n for n, _ in order].index("mailbox_done")
    assert all(n == "stored_message" for n, _ in order[:done])
    assert all(n == "received_message" for n, _ in order[done + 1 :])
    assert [t for n, t in order if n != "mailbox_done"] == expected
    stored_live = [text for text, ack in sent if ack.get("stored")]
    assert done == 200 + len(stored_live)  # the live sends before bob's join were stored
    assert len(stored_live) < len(sent)  # and the later ones went live


BIG = 400


def test_a_resume_elsewhere_gets_the_live_lines_sent_during_its_drain(
    redis_server, relay_factory, clients
):
    """Bob drained once without acking, then resumes (same instance: failover) on the other
    replica while Alice keeps sending: Alice's relay learns Bob's new place before the
    (paced) drain, so no live line goes to the connection Bob's resume replaced."""
    env = {"PARLEY_RATE_LIMIT": "off"}
    r1, r2 = relay_factory(redis_server.url, env=env), relay_factory(redis_server.url, env=env)
    alice_m, bob_m = away(clients, r2.url, room="resume")
    alice = alice_m.connect(r1.url)
    send_all(alice, [f"s{i}" for i in range(BIG)], "p" * 16000)  # 6.4 MB: a paced drain
    first = bob_m.connect(r2.url)
    assert first.wait_for("mailbox_done", timeout=60) == [{"count": BIG}]  # not acked
    sent, stop = [], threading.Event()

    def keep_sending():
        while not stop.is_set() and len(sent) < 300:
            text = f"l{len(sent)}"
            sent.append((text, alice.call("message", {"v": 2, "t": text})))

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        wait_for(lambda: len(sent) >= 10, what="live sends before the resume")
        bob = bob_m.connect(r1.url)  # replaces `first`
        resumed_at = len(sent)
        bob.wait_for("mailbox_done", timeout=60)
        drained_at = len(sent)
        wait_for(lambda: len(sent) >= 100 or not sender.is_alive(), what="live sends after")
    finally:
        stop.set()
        sender.join()
    texts = [t for t, _ in sent]
    wait_for(
        lambda: [d["t"] for d in bob.named("received_message")][-1:] == texts[-1:],
        timeout=30,
        what="the last live line at the resumed connection",
    )
    names = bob.names()
    assert names.index("mailbox_done") < names.index("received_message")
    assert stored_texts(bob) == [f"s{i}" for i in range(BIG)]
    live = [d["t"] for d in bob.named("received_message")]
    got_first = [d["t"] for d in first.named("received_message")]
    # Nothing twice, nothing reordered; every line sent from the resume on (but the few in
    # flight at that instant) reached the resumed connection, though its drain took a while.
    assert len(set(got_first + live)) == len(got_first + live)
    assert [t for t in texts if t in set(got_first + live)] == got_first + live
    slack = 5
    assert set(texts[resumed_at + slack :]) <= set(live)
    assert drained_at - resumed_at > 3 * slack, (resumed_at, drained_at)  # sent during the drain


def test_mailbox_full_is_refused_and_stores_nothing(redis_server, relay_factory, clients):
    relay = relay_factory(redis_server.url, env={"PARLEY_MAILBOX_MAX_MESSAGES": "5"})
    alice_m, bob_m = away(clients, relay.url, room="full")
    alice = alice_m.connect(relay.url)
    acks = send_all(alice, [f"m{i}" for i in range(7)])
    assert all(a["stored"] for a in acks[:5])
    assert acks[5:] == [{"ok": False, "code": "mailbox_full"}] * 2
    errors = alice.wait_for("error", 2)
    assert {e["code"] for e in errors} == {"mailbox_full"}
    bob = bob_m.connect(relay.url)
    assert bob.wait_for("mailbox_done") == [{"count": 5}]
    assert stored_texts(bob) == [f"m{i}" for i in range(5)]


def test_mailbox_byte_limit(redis_server, relay_factory, clients):
    env = {"PARLEY_MAILBOX_MAX_BYTES": "70000", "PARLEY_MAX_MESSAGE_BYTES": "65536"}
    relay = relay_factory(redis_server.url, env=env)
    alice_m, _ = away(clients, relay.url, room="bytes")
    alice = alice_m.connect(relay.url)
    assert alice.call("message", "x" * 60000)["stored"] is True
    assert alice.call("message", "y" * 20000) == {"ok": False, "code": "mailbox_full"}
    assert alice.call("message", "z" * 9000)["stored"] is True


@pytest.mark.parametrize("sender_connected", [True, False])
def test_expired_entries_are_never_delivered_and_the_sender_is_told(
    redis_server, relay_factory, clients, sender_connected
):
    # Janitor rounds (mailbox expiry) every third of the heartbeat TTL: 1 s apart.
    env = {"PARLEY_MAILBOX_TTL": "1", "PARLEY_HEARTBEAT_SECONDS": "3"}
    r1 = relay_factory(redis_server.url, env=env)
    r2 = relay_factory(redis_server.url, env=env)
    alice_m, bob_m = away(clients, r2.url, room="ttl")
    alice = alice_m.connect(r1.url)
    ids = [a["id"] for a in send_all(alice, ["a", "b"])]
    if not sender_connected:  # told at her next join
        alice.close()
        r = redis.Redis.from_url(redis_server.url)
        wait_for(lambda: r.keys("parley:{ttl}:mbox:*") == [], timeout=15, what="expiry")
        alice = alice_m.connect(r2.url)
    # else the janitor drops them and tells Alice at once
    told = lambda: sorted(i for n in alice.named("mailbox_expired") for i in n["ids"])  # noqa: E731
    wait_for(lambda: told() == sorted(ids), timeout=15, what=f"notices for {ids}, {alice.events}")
    bob = bob_m.connect(r2.url)
    assert bob.wait_for("mailbox_done") == [{"count": 0}]
    assert bob.named("stored_message") == []


def test_one_time_prekeys_over_the_wire_never_twice(two_relays, clients):
    r1, r2 = two_relays
    alice_m, bob_m = Member(clients, "pk", "alice"), Member(clients, "pk", "bob")
    bob = bob_m.connect(r2.url)
    keys = [{"id": f"{i:016x}", "dh": "ab" * 32} for i in range(6)]
    bundle = {"v": 2, "spk": "cd" * 32, "sig": {"r": "1", "s": "2"}}
    assert bob.call("prekeys", {"bundle": bundle, "one_time": keys}) == {
        "ok": True,
        "one_time_left": 6,
    }
    assert bob.call("prekeys", {}) == {"ok": True, "one_time_left": 6}
    bob.close()
    alice = alice_m.connect(r1.url)
    got = [alice.call("fetch_prekeys", {}) for _ in range(8)]
    assert all(g["ok"] and g["bundle"] == bundle for g in got)
    # A fetch loop (security review: one connection took all keys in a second) gets the
    # same key again within PARLEY_PREKEYS_FETCH_WINDOW: one key spent, not eight.
    assert [g["one_time"] for g in got] == [keys[0]] * 8
    alice.close()
    alice = alice_m.connect(r2.url)  # a new connection of the same seat: still the same key
    assert alice.call("fetch_prekeys", {})["one_time"] == keys[0]
    bob = bob_m.connect(r2.url)
    assert bob.call("prekeys", {}) == {"ok": True, "one_time_left": 5}
    # Bob's own fetch names Alice's seat, which published nothing.
    assert bob.call("fetch_prekeys", {}) == {"ok": False, "code": "no_peer"}


def test_a_stranger_cannot_read_empty_or_fill_a_seats_mailbox(two_relays, clients):
    r1, r2 = two_relays
    alice_m, bob_m = away(clients, r2.url, room="vault")
    alice = alice_m.connect(r1.url)
    ids = [a["id"] for a in send_all(alice, ["one", "two", "three"])]
    # Wrong secret (even with Bob's name): no seat at all, so nothing to read.
    eve_m = Member(clients, "vault", "bob")
    err = clients(r2.url, seat_auth("vault", "bob", eve_m.secret, eve_m.instance)).try_connect()
    assert err["data"]["code"] == "room_full"
    # Another room: her own (empty) mailbox, Bob's ids delete nothing.
    eve = Member(clients, "elsewhere", "bob").connect(r2.url)
    assert eve.wait_for("mailbox_done") == [{"count": 0}]
    assert eve.call("mailbox_ack", {"ids": ids}) == {"ok": True, "removed": 0}
    assert eve.call("fetch_prekeys", {}) == {"ok": False, "code": "no_peer"}
    assert eve.call("message", "spam")["ok"] is True  # nobody to keep it for
    # The peer herself acks under her own seat: Bob's mailbox is not hers.
    assert alice.call("mailbox_ack", {"ids": ids}) == {"ok": True, "removed": 0}
    # No secret (the original client) in the free seat next to an away seat: it can neither
    # store nor ack nor fetch.
    _, carol_m = away(clients, r2.url, room="vault2")
    plain = clients(r1.url, {"room": "vault2", "name": "mallory"}).connect()
    ack = plain.call("message", "junk")
    assert ack["ok"] is True and "stored" not in ack
    for event, data in (("mailbox_ack", {"ids": ids}), ("fetch_prekeys", {}), ("prekeys", {})):
        assert plain.call(event, data) == {"ok": False, "code": "no_seat_secret"}
    plain.close()
    carol = carol_m.connect(r2.url)
    assert carol.wait_for("mailbox_done") == [{"count": 0}]
    bob = bob_m.connect(r2.url)
    assert bob.wait_for("mailbox_done") == [{"count": 3}]
    assert stored_texts(bob) == ["one", "two", "three"]


BAD_EVENTS = [
    ("mailbox_ack", None),
    ("mailbox_ack", "1-0"),
    ("mailbox_ack", {}),
    ("mailbox_ack", {"ids": []}),
    ("mailbox_ack", {"ids": "1-0"}),
    ("mailbox_ack", {"ids": ["1-0"] * 501}),
    ("mailbox_ack", {"ids": ["+", "-"]}),
    ("mailbox_ack", {"ids": [1]}),
    ("mailbox_ack", {"ids": ["18446744073709551616-0"]}),  # past Redis's 64-bit ids
    ("mailbox_ack", {"ids": ["1-0"], "seat": "bob"}),
    ("prekeys", []),
    ("prekeys", {"bundle": "x"}),
    ("prekeys", {"bundle": {}}),
    ("prekeys", {"bundle": {"k": "v" * 9000}}),
    ("prekeys", {"one_time": {"id": "0" * 16, "dh": "ab"}}),
    ("prekeys", {"one_time": [{"id": "short", "dh": "ab"}]}),
    ("prekeys", {"one_time": [{"id": "0" * 16, "dh": "XYZ"}]}),
    ("prekeys", {"one_time": [{"id": "0" * 16, "dh": "ab", "extra": 1}]}),
    ("prekeys", {"one_time": [{"id": "0" * 16, "dh": "ab"}] * 2}),
    ("prekeys", {"one_time": [{"id": f"{i:016x}", "dh": "a"} for i in range(101)]}),
    ("prekeys", {"seat": "bob"}),
    ("fetch_prekeys", {"seat": "bob"}),
    ("fetch_prekeys", "bob"),
]


def test_malformed_offline_events_get_a_clear_error_and_change_nothing(two_relays, clients):
    r1, r2 = two_relays
    alice_m, bob_m = away(clients, r2.url, room="junk")
    alice = alice_m.connect(r1.url)
    send_all(alice, ["kept"])
    alice.call("prekeys", {"bundle": {"b": 1}, "one_time": [{"id": "1" * 16, "dh": "ab"}]})
    for event, data in BAD_EVENTS:
        ack = alice.call(event, data) if data is not None else alice.sio.call(event, timeout=5)
        assert ack == {"ok": False, "code": "bad_request"}, (event, data, ack)
    errors = alice.wait_for("error", len(BAD_EVENTS))
    assert all(e["code"] == "bad_request" and e["message"] for e in errors)
    assert alice.call("prekeys", {}) == {"ok": True, "one_time_left": 1}
    top = "18446744073709551615-18446744073709551615"  # the largest id: valid, names nothing
    assert alice.call("mailbox_ack", {"ids": [top]}) == {"ok": True, "removed": 0}
    bob = bob_m.connect(r2.url)
    assert bob.wait_for("mailbox_done") == [{"count": 1}] and stored_texts(bob) == ["kept"]
    assert bob.call("fetch_prekeys", {})["one_time"] == {"id": "1" * 16, "dh": "ab"}
    assert r1.proc.poll() is None and r2.proc.poll() is None


def aof_settled(db: redis.Redis) -> bool:
    info = db.info("persistence")
    return info["aof_buffer_length"] == 0 and info["aof_pending_bio_fsync"] == 0


def test_redis_restart_with_aof_and_a_killed_replica_lose_no_stored_message(relay_factory, clients):
    """Alice stores 200 lines via replica 1 and leaves; replica 1 is SIGKILLed and
    restarted, Redis is stopped (SHUTDOWN) and restarted, then SIGKILLed after the
    AOF has settled and restarted: Bob, back on replica 2, gets each line once, in order."""
    server = RedisServer(appendonly=True).start()
    try:
        r1 = relay_factory(server.url)
        r2 = relay_factory(server.url)
        alice_m, bob_m = away(clients, r2.url, room="aof")
        alice = alice_m.connect(r1.url)
        acks = send_all(alice, [f"line {i}" for i in range(150)])
        assert all(a["stored"] for a in acks)
        alice.close()
        r1.kill()
        r1.start()
        server.restart()  # SIGTERM: Redis fsyncs the AOF before it exits
        wait_for(lambda: r2.health().get("redis") == "ok", timeout=30, what="r2 sees redis")
        wait_for(lambda: r1.health().get("redis") == "ok", timeout=30, what="r1 sees redis")
        alice = alice_m.connect(r1.url)
        acks = send_all(alice, [f"line {i}" for i in range(150, 200)])
        assert all(a["stored"] for a in acks)
        alice.close()
        # appendfsync everysec: Redis writes the AOF before it answers, unless a slow fsync
        # makes it hold the write back (up to 2 s). Once nothing is held back or pending, the
        # lines are in the kernel's hands and a SIGKILL of redis-server can lose none of them.
        db = redis.Redis.from_url(server.url)
        wait_for(lambda: aof_settled(db), timeout=30, what="the AOF written, no fsync pending")
        db.close()
        server.stop(sig=9)
        server.start()
        wait_for(lambda: r2.health().get("redis") == "ok", timeout=30, what="r2 sees redis")
        bob = bob_m.connect(r2.url)
        assert bob.wait_for("mailbox_done", timeout=30) == [{"count": 200}]
        assert stored_texts(bob) == [f"line {i}" for i in range(200)]
    finally:
        server.cleanup()
