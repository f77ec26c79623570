"""A text whose showing a kill cut short (the offline soak, r14 of the 2026-12-01 session: a
receiver SIGKILLed right after it opened a live text). Its id is journaled as seen *before*
the text is shown, so that a restart never shows it twice; on the old code the restarted
client then took the sender's resend for a duplicate and receipted it: the sender saw ✓✓ for
a line nobody had seen. Now the journal keeps the text until it is marked shown."""

from __future__ import annotations

import json

import pytest

from parley_client.messages import BadPlaintext, Plaintext
from parley_client.roomstate import DiskRoomState, MemoryRoomState
from tests.unit.client.mailbox_relay import MailboxRelay


class Killed(BaseException):
    """The process ends here (SIGKILL): nothing after this line of the client runs."""


@pytest.fixture(params=["memory", "disk"])
def relay(request, clock, tmp_path):
    r = MailboxRelay(clock)
    if request.param == "disk":
        r["bob"].state = DiskRoomState(tmp_path / "bob", "demo")
    r.start("alice")
    r.start("bob")
    yield r
    if isinstance(r["bob"].state, DiskRoomState):
        r["bob"].state.close()


def killed_while_showing(relay, line: str) -> None:
    """Bob, live with Alice, dies inside the display of `line` (after the journal write)."""
    relay.join("alice")
    relay.join("bob")
    bob = relay["bob"]
    show = bob.core._emit

    def dies(event):
        if event.kind == "message":
            raise Killed
        show(event)

    bob.core._emit = dies
    relay["alice"].core.submit(line)
    with pytest.raises(Killed):
        relay.pump()
    relay.live.discard("bob")  # gone: no leave, no goodbye
    relay.queue.clear()


def restarted(relay):
    """Bob as a new process on his durable state (the disk folder opened again), joined."""
    bob = relay["bob"]
    if isinstance(bob.state, DiskRoomState):
        bob.state.close()
        bob.state = DiskRoomState(bob.state.folder, "demo")
    relay.start("bob")
    relay.join("bob")
    return bob


def test_a_text_cut_short_while_shown_is_shown_at_the_next_start(relay, clock):
    killed_while_showing(relay, "cut short")
    bob = restarted(relay)
    assert bob.texts() == ["cut short"]
    (shown,) = bob.kinds("message")
    assert shown.data["recovered"] is True and shown.data["from"] == "alice"
    # Alice's resend (no receipt came) is a duplicate now: receipted, not shown again.
    clock.now += 10
    relay["alice"].core.tick()
    relay.pump()
    assert bob.texts() == ["cut short"]
    assert relay["alice"].kinds("delivered")
    assert bob.state.unshown() == []


def test_a_recovered_text_is_shown_once_across_further_restarts(relay, clock):
    killed_while_showing(relay, "only once")
    bob = restarted(relay)
    assert bob.texts() == ["only once"]
    relay.leave("bob")
    restarted(relay)
    assert bob.texts() == []  # this process: nothing again


def test_texts_shown_normally_leave_nothing_to_recover(relay):
    relay.join("alice")
    relay.join("bob")
    relay["alice"].core.submit("plain")
    relay.pump()
    assert relay["bob"].texts() == ["plain"]
    assert relay["bob"].state.unshown() == []
    assert "recovered" not in relay["bob"].kinds("message")[0].data


def test_the_memory_store_keeps_the_same_contract():
    state = MemoryRoomState()
    state.saw("a", {"from": "x", "ts": 1.0, "body": "one"})
    state.saw("b")
    assert state.unshown() == [{"id": "a", "from": "x", "ts": 1.0, "body": "one"}]
    state.showed("a")
    assert state.unshown() == [] and state.seen() == ["a", "b"]


@pytest.mark.parametrize("ts", [1e300, float("inf"), float("nan"), -1, 10**400, True, "1"])
def test_a_peer_text_with_an_impossible_time_is_rejected(ts):
    """A time no local clock can format (`time.localtime` raises) would fail the display of
    that text, and, saved unshown, every later start (found by review)."""
    raw = json.dumps({"id": "x", "ts": ts, "kind": "text", "body": "b"}).encode()
    with pytest.raises(BadPlaintext, match="timestamp"):
        Plaintext.decode(raw)


def test_one_unshowable_saved_text_does_not_stop_the_others(relay, clock):
    """A record whose display fails (here: the UI raises) is reported, marked, and the texts
    after it are still recovered; the connect goes on."""
    killed_while_showing(relay, "first")
    bob = relay["bob"]
    bob.state.saw("z1", {"from": "alice", "ts": 2.0, "body": "second"})
    relay.start("bob")
    show, failed = bob.core._emit, []

    def fails_once(event):
        if event.kind == "message" and not failed:
            failed.append(event)
            raise RuntimeError("display failed")
        show(event)

    bob.core._emit = fails_once
    relay.join("bob")
    assert bob.texts() == ["second"]
    assert any("could not show a recovered message" in t for t in bob.infos())
    assert bob.state.unshown() == []


def test_the_seen_journal_is_compacted_while_a_text_stays_unshown(tmp_path, monkeypatch):
    """One text never marked shown must not turn compaction off (found by review: the
    journal then grew by each later text until the next start refused it, over 64 MiB)."""
    monkeypatch.setattr("parley_client.roomstate.SEEN_COMPACT_BYTES", 10_000)
    state = DiskRoomState(tmp_path / "room", "demo")
    state.saw("stuck", {"from": "alice", "ts": 1.0, "body": "never marked"})
    for i in range(100):
        state.saw(f"m{i}", {"from": "alice", "ts": 1.0, "body": "x" * 500})
        state.showed(f"m{i}")
    assert (tmp_path / "room" / "seen.log").stat().st_size < 10_000 + 2_000
    state.close()
    again = DiskRoomState(tmp_path / "room", "demo")
    assert [t["id"] for t in again.unshown()] == ["stuck"]
    again.close()
