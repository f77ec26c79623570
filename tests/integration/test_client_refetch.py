"""Two quick runs of the sender to an away contact, with real processes (redis-server, relay,
`parley` batch clients): the relay hands one asking seat the same one-time key within its
fetch window (PARLEY_PREKEYS_FETCH_WINDOW, 10 s), so the second run's session start must not
name the key the first run already used; otherwise the receiver refuses it and the second
run's lines are never shown."""

from __future__ import annotations

import json

from tests.support.servers import RedisServer, RelayProcess

ROOM = "refetch-room"


def test_a_second_run_within_the_fetch_window_is_still_delivered(batch_clients, tmp_path):
    store = RedisServer().start()
    relay = RelayProcess(store.url)
    try:
        relay.start()
        bob = batch_clients("bob", ROOM, relay.url, home=tmp_path / "bob")
        bob.wait_event(lambda e: e.get("event") == "prekeys", 60, "prekeys published")
        assert bob.wait() == 0
        for line in ("first run", "second run"):  # well within 10 s of each other
            alice = batch_clients("alice", ROOM, relay.url, home=tmp_path / "alice")
            alice.send(line)
            assert alice.wait(timeout=60) == 0, alice.stderr()
        back = batch_clients("bob", ROOM, relay.url, home=tmp_path / "bob")
        back.wait_event(lambda e: "end of what arrived" in e.get("message", ""), 60, "backlog")
        assert back.wait(timeout=60) == 0
        assert back.received() == ["first run", "second run"]
        assert "could not be opened" not in json.dumps(back.events)
    finally:
        relay.cleanup()
        store.cleanup()
