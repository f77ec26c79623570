"""Room state: one contract suite against the in-memory and the on-disk store; private files."""

from __future__ import annotations

import json
import os
import stat

import pytest

from parley_client.keystore import Home
from parley_client.messages import Outbox, SeenIds, new_text
from parley_client.roomstate import DiskRoomState, MemoryRoomState, RoomBusy, room_folder
from parley_client.store import HomeError, Journal, check_private


def _disk(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    return DiskRoomState(room_folder(home, "duo"), "duo")


@pytest.fixture(params=["memory", "disk"])
def state(request, tmp_path):
    made = MemoryRoomState() if request.param == "memory" else _disk(tmp_path)
    yield made
    made.close()


def test_outbox_records_add_address_and_deliver(state):
    state.queued({"id": "a", "ts": 1.0, "body": "one", "to": None})
    state.queued({"id": "b", "ts": 2.0, "body": "two", "to": "k1"})
    state.addressed("a", "k1")
    assert [(r["id"], r["to"]) for r in state.pending()] == [("a", "k1"), ("b", "k1")]
    state.delivered("a")
    state.delivered("nope")
    assert [r["id"] for r in state.pending()] == ["b"]


def test_seen_ids_and_session_state(state):
    for mid in ("x", "y"):
        state.saw(mid)
    assert state.seen() == ["x", "y"]
    assert state.session_state() is None
    state.save_session({"rk": "00"})
    assert state.session_state() == {"rk": "00"}
    state.save_session(None)
    assert state.session_state() is None


def test_outbox_and_seen_ids_survive_a_restart(tmp_path):
    first = _disk(tmp_path)
    box = Outbox(first)
    kept = box.add(new_text("kept"), "k1")
    gone = box.add(new_text("receipted"), "k1")
    assert box.delivered(gone.message.id, "k1") is gone
    SeenIds(state=first).add("shown-1")
    first.close()
    second = _disk(tmp_path)
    again = Outbox(second)
    assert [(i.message.id, i.message.body, i.to) for i in again] == [
        (kept.message.id, "kept", "k1")
    ]
    assert "shown-1" in SeenIds(state=second)
    second.close()


def test_a_torn_last_journal_line_is_ignored_and_compacted(tmp_path):
    state = _disk(tmp_path)
    Outbox(state).add(new_text("whole"), "k1")
    state.close()
    log = room_folder(tmp_path / "home", "duo") / "outbox.log"
    with open(log, "ab") as f:
        f.write(b'{"op":"add","id":"torn","bo')  # kill -9 in the middle of an append
    again = _disk(tmp_path)
    assert [r["body"] for r in again.pending()] == ["whole"]
    assert b"torn" not in log.read_bytes()
    again.close()


def test_files_are_0600_in_0700_folders(tmp_path):
    state = _disk(tmp_path)
    Outbox(state).add(new_text("x"), "k1")
    SeenIds(state=state).add("y")
    folder = room_folder(tmp_path / "home", "duo")
    for path in (folder, folder.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for name in ("outbox.log", "seen.log"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    state.close()


def test_a_second_client_on_the_same_room_and_home_is_refused(tmp_path):
    first = _disk(tmp_path)
    with pytest.raises(RoomBusy, match="already connected"):
        _disk(tmp_path)
    first.close()
    _disk(tmp_path).close()  # free again once the first one is gone


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_a_home_others_can_enter_is_refused_naming_the_chmod(tmp_path, mode):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(mode)
    with pytest.raises(HomeError) as info:
        Home(home).load_or_create_identity("alice")
    assert f"chmod 700 {home}" in str(info.value) and "\n" not in str(info.value)
    assert not (home / "identity.json").exists()  # nothing written


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_readable_key_file_is_refused_naming_the_chmod(tmp_path, mode):
    home = Home(tmp_path / "home")
    home.load_or_create_identity("alice")
    home.identity_path.chmod(mode)
    with pytest.raises(HomeError) as info:
        Home(tmp_path / "home").load_or_create_identity("alice")
    assert f"chmod 600 {home.identity_path}" in str(info.value)


def test_a_symlinked_file_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("{}")
    link = tmp_path / "link"
    os.symlink(target, link)
    with pytest.raises(HomeError, match="symbolic link"):
        check_private(link)
    with pytest.raises(OSError):
        Journal(link).append({"x": 1})  # O_NOFOLLOW


def test_a_text_not_marked_shown_survives_a_restart_with_its_text(tmp_path):
    first = _disk(tmp_path)
    first.saw("a", {"from": "alice", "ts": 1.5, "body": "shown"})
    first.showed("a")
    first.saw("b", {"from": "alice", "ts": 2.5, "body": "cut short"})
    first.close()
    second = _disk(tmp_path)
    assert second.seen() == ["a", "b"]
    assert second.unshown() == [{"id": "b", "from": "alice", "ts": 2.5, "body": "cut short"}]
    log = room_folder(tmp_path / "home", "duo") / "seen.log"
    assert b"shown" not in log.read_bytes().replace(b"cut short", b"")  # compacted on load
    second.showed("b")
    second.close()
    third = _disk(tmp_path)
    assert third.unshown() == [] and third.seen() == ["a", "b"]
    third.close()


@pytest.mark.parametrize(
    "text",
    [{"from": "a", "ts": "1", "body": "b"}, {"from": 1, "ts": 1, "body": "b"}, "b", None,
     {"from": "a", "ts": True, "body": "b"}, {"from": "a", "ts": 1}],
)  # fmt: skip
def test_a_malformed_saved_text_is_not_shown_again(tmp_path, text):
    log = room_folder(tmp_path / "home", "duo") / "seen.log"
    _disk(tmp_path).close()
    log.write_bytes(f'{{"id":"x","text":{json.dumps(text)}}}\n'.encode())
    os.chmod(log, 0o600)
    state = _disk(tmp_path)
    assert state.seen() == ["x"] and state.unshown() == []
    state.close()


def test_the_seen_journal_is_compacted_in_a_session_once_texts_fill_it(tmp_path, monkeypatch):
    monkeypatch.setattr("parley_client.roomstate.SEEN_COMPACT_BYTES", 10_000)
    state = _disk(tmp_path)
    log = room_folder(tmp_path / "home", "duo") / "seen.log"
    for i in range(100):
        state.saw(f"m{i}", {"from": "alice", "ts": 1.0, "body": "x" * 500})
        state.showed(f"m{i}")
    assert log.stat().st_size < 10_000 + 2_000  # without compaction: over 50 kB
    state.close()
    again = _disk(tmp_path)
    assert again.seen() == [f"m{i}" for i in range(100)] and again.unshown() == []
    again.close()
