"""Offline delivery end to end with real processes: two relay replicas, a real redis-server with
AOF persistence, real `parley` batch clients. First contact with an away peer through its
prekeys, stored messages surviving a relay SIGKILL and a Redis restart, the backlog shown
exactly once in order on the other replica; and a hostile store (Redis edited behind the
relay's back) that replays stored envelopes and one-time prekeys."""

from __future__ import annotations

import hashlib
import json

import pytest
import redis

from tests.support.servers import RedisServer, RelayProcess, wait_for

ROOM = "offline-room"
LINES = [f"line {i:03d} while you were away" for i in range(200)]


@pytest.fixture
def cluster():
    """Redis with AOF (as compose runs it) and two relay replicas sharing it."""
    store = RedisServer(appendonly=True).start()
    relays = [RelayProcess(store.url), RelayProcess(store.url)]
    try:
        for relay in relays:
            relay.start()
        yield store, relays
    finally:
        for relay in relays:
            relay.cleanup()
        store.cleanup()


def seat_tag(home, room: str = ROOM) -> str:
    """The relay's name for a seat in Redis keys: SHA-256 of its secret, first 16 hex."""
    secret = json.loads((home / "seats.json").read_text())["rooms"][room]
    return hashlib.sha256(bytes.fromhex(secret)).hexdigest()[:16]


def bob_joins_once_and_leaves(batch_clients, tmp_path, relay) -> None:
    bob = batch_clients("bob", ROOM, relay.url, home=tmp_path / "bob")
    bob.wait_event(lambda e: e.get("event") == "prekeys", 60, "prekeys published")
    assert bob.wait() == 0


def test_two_hundred_lines_to_an_away_stranger_survive_relay_and_redis_restarts(
    batch_clients, tmp_path, cluster
):
    store, (r1, r2) = cluster
    bob_joins_once_and_leaves(batch_clients, tmp_path, r2)

    alice = batch_clients("alice", ROOM, r1.url, "--timeout", "120", home=tmp_path / "alice")
    alice.send(*LINES)
    assert alice.wait(timeout=180) == 0, alice.stderr()
    assert [e["text"] for e in alice.of("stored")] == LINES  # each one stored once (✓)
    assert not alice.of("delivered")
    assert "stored in the relay's mailbox for bob" in alice.stderr()

    r1.kill()  # the replica Alice used dies
    r1.start()
    store.restart()  # Redis restarts from its append-only file

    bob = batch_clients("bob", ROOM, r2.url, home=tmp_path / "bob")  # the other replica
    bob.wait_received(len(LINES), timeout=120)
    assert bob.wait(timeout=120) == 0, bob.stderr()
    assert bob.received() == LINES  # each line exactly once, in order
    shown = bob.of("message")
    assert all(e.get("backlog") for e in shown)
    assert [e["ts"] for e in shown] == sorted(e["ts"] for e in shown)  # the sender's times
    infos = [e.get("message", "") for e in bob.events]
    assert "── while you were away ──" in infos
    assert any("end of what arrived while you were away (200)" in t for t in infos)

    mbox = f"parley:{{{ROOM}}}:mbox:{seat_tag(tmp_path / 'bob')}"
    assert redis.Redis.from_url(store.url).xlen(mbox) == 0  # every entry acknowledged

    bob_again = batch_clients("bob", ROOM, r1.url, home=tmp_path / "bob")
    assert bob_again.wait(timeout=60) == 0
    assert bob_again.received() == []  # acknowledged: nothing comes twice

    alice_back = batch_clients("alice", ROOM, r2.url, home=tmp_path / "alice")
    alice_back.wait_event(
        lambda e: len(alice_back.of("delivered")) >= len(LINES), 120, "receipts (✓✓)"
    )
    assert alice_back.wait(timeout=60) == 0


def test_a_store_that_replays_envelopes_and_one_time_keys_is_harmless(
    batch_clients, tmp_path, cluster
):
    store, (r1, r2) = cluster
    bob_joins_once_and_leaves(batch_clients, tmp_path, r1)
    tag = seat_tag(tmp_path / "bob")
    db = redis.Redis.from_url(store.url)
    otk_key = f"parley:{{{ROOM}}}:otk:{tag}"
    first_otk = db.lindex(otk_key, 0)

    alice = batch_clients("alice", ROOM, r1.url, home=tmp_path / "alice")
    alice.send("first start", "second line")
    assert alice.wait(timeout=90) == 0, alice.stderr()

    # The store replays the stored envelopes, and hands the used one-time key out again.
    mbox = f"parley:{{{ROOM}}}:mbox:{tag}"
    for _, fields in db.xrange(mbox):
        db.xadd(mbox, fields)
    db.lpush(otk_key, first_otk)
    again = batch_clients("alice", ROOM, r2.url, home=tmp_path / "alice")
    again.send("from a second start")
    assert again.wait(timeout=90) == 0, again.stderr()
    entries = db.xrange(mbox)
    assert len(entries) == 5
    assert json.loads(entries[-1][1][b"p"])["init"]["otk"] is None  # the used key: not again

    bob = batch_clients("bob", ROOM, r2.url, home=tmp_path / "bob")
    bob.wait_event(lambda e: "end of what arrived" in e.get("message", ""), 90, "backlog end")
    assert bob.wait(timeout=60) == 0
    # The replays show nothing (refused as replayed); the second start saw that the re-handed
    # one-time key is the one its saved session used and started without it, so it opens.
    assert bob.received() == ["first start", "second line", "from a second start"]
    assert "could not be opened" in json.dumps(bob.events)


def test_a_full_mailbox_and_expired_messages_are_plain_lines_for_the_sender(
    batch_clients, tmp_path
):
    """The sender's view of the mailbox limits: `mailbox_full` is one plain line and what did
    not fit stays queued (exit 5: it waits for an absent contact); entries older than the TTL
    come back as `expired in the relay's mailbox ... <text>` lines (whenever the relay tells:
    at once if connected, else at the next join) and go out again."""
    store = RedisServer().start()
    limits = {"PARLEY_MAILBOX_MAX_MESSAGES": "3", "PARLEY_MAILBOX_TTL": "2"}
    relay = RelayProcess(store.url, env=limits)
    try:
        relay.start()
        bob_joins_once_and_leaves(batch_clients, tmp_path, relay)
        alice = batch_clients("alice", ROOM, relay.url, "--timeout", "3", home=tmp_path / "a")
        alice.send(*[f"text {i}" for i in range(5)])

        def full() -> list[dict]:
            return [
                e for e in alice.events if "mailbox at the relay is full" in e.get("message", "")
            ]

        # With stdin still open: her 3 s --timeout runs from the end of her input, and must
        # not run out before she has connected, found bob away and stored (about 2 s idle).
        alice.wait_event(lambda e: full() and len(alice.of("stored")) >= 3, 90, "store, then full")
        assert alice.wait(timeout=90) == 5, alice.stderr()  # EXIT_ABSENT
        stored = [e["text"] for e in alice.of("stored")]
        assert stored[:3] == ["text 0", "text 1", "text 2"] and "text 3" not in stored
        assert len(full()) == 1 and not alice.of("relay_error"), alice.events

        # The janitor expires the stored entries (TTL 2 s); the relay tells alice at once if
        # she is connected, else at her next join. A second run stays until it has been told
        # (a run that left after a fixed time could miss it on a loaded machine).
        again = batch_clients("alice", ROOM, relay.url, "--timeout", "120", home=tmp_path / "a")

        def expired() -> list[str]:
            return [e["message"] for e in alice.events + again.events if e.get("expired")]

        wait_for(lambda: any(m.endswith("): text 0") for m in expired()), 90, 0.2, "expiry")
        again.stop()
        assert all(m.startswith("expired in the relay's mailbox before bob") for m in expired())
    finally:
        relay.cleanup()
        store.cleanup()
