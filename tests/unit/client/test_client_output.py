"""Batch-mode output, relay error parsing and UI commands, without sockets or a terminal."""

from __future__ import annotations

import io
import json

import pytest

from parley_client.batch import BatchClient
from parley_client.config import load_settings
from parley_client.core import Event, relay_error_fields
from parley_client.ui import TerminalUI

NUMBER = "0123456789" * 6


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"message": "full", "data": {"code": "room_full", "message": "room is full"}},
            ("room_full", "room is full"),
        ),
        ({"code": "rate_limited", "message": "slow"}, ("rate_limited", "slow")),
        ("a string", ("error", "a string")),
        (None, ("error", "None")),
    ],
)
def test_relay_error_fields_handles_documented_and_odd_shapes(payload, expected):
    assert relay_error_fields(payload) == expected


def _batch(tmp_path, *flags):
    settings = load_settings(["--home", str(tmp_path), "--name", "alice", *flags], env={})
    out, err = io.StringIO(), io.StringIO()
    return BatchClient(settings, stdin=io.StringIO(), stdout=out, stderr=err), out, err


def test_plain_batch_output(tmp_path):
    client, out, err = _batch(tmp_path)
    client.on_event(
        Event("message", "hi there", {"from": "bob", "id": "1", "text": "hi there", "ts": 1.0})
    )
    client.on_event(Event("secure", "secure with bob (ab)", {"safety_number": NUMBER}))
    client.on_event(Event("error", "rejected message from peer: bad"))
    assert out.getvalue() == "bob: hi there\n"
    lines = err.getvalue().splitlines()
    assert lines[0] == "parley: secure with bob (ab); safety number: 01234 56789" + (
        " 01234 56789" * 5
    )
    assert lines[1] == "parley: rejected message from peer: bad"


def test_json_batch_output(tmp_path):
    client, out, err = _batch(tmp_path, "--json")
    client.on_event(Event("message", "hi", {"from": "bob", "id": "7", "text": "hi", "ts": 2.0}))
    client.on_event(Event("state", "secure", {"state": "secure"}))
    client.on_event(Event("key_changed", "WARNING", {"safety_number": NUMBER}))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0] == {"event": "message", "from": "bob", "id": "7", "text": "hi", "ts": 2.0}
    assert events[1] == {"event": "status", "state": "secure"}
    assert events[2]["event"] == "key_changed" and events[2]["safety_number"] == NUMBER
    assert client.verify_failed == "WARNING"
    assert err.getvalue() == ""


def test_ui_commands_without_a_terminal(tmp_path, monkeypatch):
    settings = load_settings(["--home", str(tmp_path), "--name", "alice"], env={})
    ui = TerminalUI(settings)
    printed: list[str] = []
    monkeypatch.setattr(ui, "_print", lambda text, style="": printed.append(text))
    assert ui.command("exit") is False and ui.command("/quit") is False
    assert ui.command("/help") and any("/verify" in p for p in printed)
    assert ui.command("/verify") and "no peer yet" in printed[-1]
    assert ui.command("/trust") and "nothing to trust" in printed[-1]
    assert ui.command("/bogus") and "unknown command" in printed[-1]
    assert ui.command("hello")  # queued, not lost
    assert [i.message.body for i in ui.core.outbox] == ["hello"]
    assert ui.command("/status") and "pending" in printed[-1] and "hello" in printed[-1]
    assert "waiting" in str(ui.toolbar()) or "connecting" in str(ui.toolbar())


def test_stdin_lines_from_files_dev_null_and_pipes(tmp_path):
    import asyncio
    import os

    from parley_client.batch import _lines

    async def collect(stream):
        return [line async for line in _lines(stream)]

    path = tmp_path / "in.txt"
    path.write_text("one\ntwo\n")
    with open(path) as f:
        assert asyncio.run(collect(f)) == ["one\n", "two\n"]
    with open(os.devnull) as f:
        assert asyncio.run(collect(f)) == []
    r, w = os.pipe()
    os.write(w, "über\nzwei\n".encode())
    os.close(w)
    with os.fdopen(r) as f:
        assert asyncio.run(collect(f)) == ["über\n", "zwei\n"]
