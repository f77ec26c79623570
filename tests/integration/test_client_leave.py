"""`/leave` and `parley --new-room` with real `parley` processes against a real relay + Redis.

A seat belongs to its owner's secret and stays reserved after `/quit` (a stranger gets
`room_full`); `/leave` asks the relay to release it, forgets the secret and exits, and then a
different client takes the freed seat.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.support.clients import REPO, clean_env
from tests.support.relay_clients import (
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    seat_auth,
)
from tests.support.servers import wait_for

ROOM_RULE = re.compile(r"[A-Za-z0-9._-]{1,64}")
EXIT_REFUSED = 4  # batch.py: the relay refused the seat


def new_room() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "parley_client", "--new-room"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=REPO,
        timeout=30,
        check=True,
    )
    assert out.stderr == ""
    return out.stdout.strip()


def test_new_room_prints_a_fresh_unguessable_room_name():
    names = {new_room() for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert ROOM_RULE.fullmatch(name), name
        assert len(name) >= 2 + 22  # "r-" and 16 random bytes in URL-safe base64


def seats_file(home) -> dict:
    path = home / "seats.json"
    return json.loads(path.read_text())["rooms"] if path.exists() else {}


def test_leave_releases_the_seat_so_another_client_can_take_it(
    redis_server, relay_factory, terminal, batch_clients, tmp_path
):
    relay = relay_factory(redis_server.url)
    room = new_room()
    home = tmp_path / "alice"
    args = ("--name", "alice", "--room", room, "--relay", relay.url, "--home", str(home))
    # bob's contact in this room is alice's key; whoever takes her freed seat has another
    # key, which bob accepts only because he is told to (he "compared safety numbers").
    bob = batch_clients("bob", room, relay.url, "--timeout", "120", "--accept-new-key", "alice")
    alice = terminal(*args)
    alice.expect("secure with bob")
    bob.wait_secure()
    # /quit keeps the seat reserved for alice's secret: a stranger is refused.
    alice.line("/quit")
    assert alice.wait_exit() == 0
    assert room in seats_file(home)
    carol = batch_clients("carol", room, relay.url, home=tmp_path / "carol")
    assert carol.wait() == EXIT_REFUSED, carol.stderr()
    # alice comes back (same home: her seat resumes), then leaves for good.
    alice = terminal(*args)
    alice.expect("secure with bob")
    alice.line("/leave")
    alice.expect("the relay released your seat")
    assert alice.wait_exit() == 0
    assert alice.crash_signs() == []
    assert room not in seats_file(home)  # the secret is forgotten
    assert '"event": "released"' in relay.log()
    # The freed seat goes to someone else: dave (his own home, so another secret).
    dave = batch_clients("dave", room, relay.url, home=tmp_path / "dave")
    dave.wait_secure(timeout=60)
    dave.send("hello from the freed seat")
    assert bob.wait_event(
        lambda e: e.get("event") == "message" and e.get("text") == "hello from the freed seat",
        timeout=60,
        what="dave's message",
    )
    assert "accepted the new key of alice" in bob.stderr()
    assert dave.wait() == 0


def test_leave_while_the_relay_is_away_keeps_the_seat_and_says_so(
    relay_factory, terminal, tmp_path
):
    relay = relay_factory()
    home = tmp_path / "alice"
    alice = terminal("--name", "alice", "--room", "lv", "--relay", relay.url, "--home", str(home))
    alice.expect("waiting for peer")
    relay.stop()
    alice.expect("relay connection lost")
    alice.line("/leave")
    alice.expect("your seat cannot be released now")
    assert "lv" in seats_file(home)  # nothing forgotten
    wait_for(lambda: alice.child.isalive(), timeout=1, what="alice still running")
    alice.line("/quit")
    assert alice.wait_exit() == 0
    assert alice.crash_signs() == []


def test_the_relay_acks_leave_before_closing_and_frees_the_seat(
    redis_server, relay_factory, clients
):
    """The wire side (docs/protocol.md): `leave` gets {"ok": true}, then the relay closes
    the connection; the peer gets peer_left and the seat is free for a new secret. Before,
    the relay closed the connection first and the ack never arrived."""
    relay = relay_factory(redis_server.url)
    alice = clients(relay.url, seat_auth("wl", "alice", new_secret(), new_instance())).connect()
    bob = clients(relay.url, seat_auth("wl", "bob", new_secret(), new_instance())).connect()
    bob.wait_for("KEY_EXCHANGE")
    assert alice.call("leave", {}, timeout=10) == {"ok": True}
    assert alice.disconnected.wait(10)
    assert bob.wait_for("peer_left") == [{"name": "alice"}]
    carol = clients(relay.url, seat_auth("wl", "carol", new_secret(), new_instance())).connect()
    assert carol.wait_for("KEY_EXCHANGE") == [1]
