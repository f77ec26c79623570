"""The client's per-room resume secrets (seats.json) and the auth the transport sends."""

from __future__ import annotations

import json
import re
import stat

import pytest

from parley_client.seats import (
    SeatFileError,
    forget_room,
    new_instance,
    room_secret,
    seat_auth,
)
from parley_client.transport import TRANSPORTS, Transport


def test_secret_is_created_once_per_room_and_kept(tmp_path):
    home = tmp_path / "home"
    first = room_secret(home, "r1")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert room_secret(home, "r1") == first  # the same seat on every run
    assert room_secret(home, "r2") != first
    path = home / "seats.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["rooms"] == {"r1": first, "r2": room_secret(home, "r2")}
    assert [p.name for p in home.iterdir()] == ["seats.json"]  # no temp file left behind


def test_forgetting_a_room_keeps_the_others_and_a_new_join_gets_a_new_secret(tmp_path):
    home = tmp_path / "home"
    old, other = room_secret(home, "r1"), room_secret(home, "r2")
    assert forget_room(home, "r1") is True
    assert json.loads((home / "seats.json").read_text())["rooms"] == {"r2": other}
    assert stat.S_IMODE((home / "seats.json").stat().st_mode) == 0o600
    assert forget_room(home, "r1") is False  # nothing left to forget
    assert room_secret(home, "r1") != old
    assert forget_room(tmp_path / "empty", "r1") is False


def test_instance_is_new_per_process():
    a, b = new_instance(), new_instance()
    assert re.fullmatch(r"[0-9a-f]{32}", a) and a != b


BROKEN = ["{not json", '{"rooms": {"r": "short"}}', "[]", '{"rooms": 5}']


@pytest.mark.parametrize("content", BROKEN)
def test_a_broken_seats_file_is_a_clear_error_and_is_not_overwritten(tmp_path, content):
    (tmp_path / "seats.json").write_text(content)
    with pytest.raises(SeatFileError, match="seats.json"):
        room_secret(tmp_path, "r")
    assert (tmp_path / "seats.json").read_text() == content


def test_transport_sends_secret_and_instance_and_uses_websocket_only(tmp_path):
    auth = {"room": "r", "name": "alice"}
    t = Transport(("http://x",), auth, lambda e: None, home=tmp_path)
    assert t.auth["secret"] == room_secret(tmp_path, "r") and len(t.auth["instance"]) == 32
    assert TRANSPORTS == ["websocket"]
    assert Transport(("http://x",), auth, lambda e: None).auth == auth  # no home: as before
    assert seat_auth(auth, tmp_path, "ab" * 16)["instance"] == "ab" * 16


def test_seat_refusals_stop_the_client(tmp_path):
    t = Transport(("http://x",), {"room": "r", "name": "a"}, lambda e: None, home=tmp_path)
    t.ever_connected = True
    assert t._is_fatal("already_connected") and t._is_fatal("room_full")
    assert not t._is_fatal("unavailable") and not t._is_fatal("rate_limited")
