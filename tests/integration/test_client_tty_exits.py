"""Leaving the interactive client: Ctrl-C, Ctrl-D and signals end it cleanly in every state
(connection closed, pending messages reported, no traceback), and errors are one plain line."""

from __future__ import annotations

import signal

import pytest

from tests.support.relay_clients import RelayClient
from tests.support.servers import free_port
from tests.support.terminal import CRASH_SIGNS

STATES = ("connecting", "waiting", "mid-handshake", "secure")


def _start_in(state, relay_factory, terminal, batch_clients, tmp_path, room):
    """An interactive alice in ``state``; returns (terminal, things to keep alive)."""
    url = f"http://127.0.0.1:{free_port()}" if state == "connecting" else relay_factory().url
    alice = terminal("--name", "alice", "--room", room, "--relay", url, "--home", str(tmp_path))
    alice.expect("alice>")
    keep = []
    if state == "connecting":
        alice.expect(rf"no relay at {url} \(connection refused\); start one with parley-relay")
        alice.expect(r"retrying in \d s")  # the countdown on the status line
    elif state == "waiting":
        alice.expect(r"waiting for peer")
    elif state == "mid-handshake":
        # A peer that joins but never answers the handshake: alice stays "verifying".
        keep.append(RelayClient(url, {"room": room, "name": "silent"}).connect())
        alice.expect(r"verifying")
    else:
        bob = batch_clients("bob", room, url)
        keep.append(bob)
        bob.wait_secure()
        alice.expect(r"secure with bob")
        # Lines being printed while the key arrives: prompt_toolkit prints in cooked mode,
        # where a Ctrl-C used to become SIGINT (a traceback) and a Ctrl-D was swallowed.
        bob.send(*[f"incoming {i}" for i in range(60)])
        alice.expect("incoming 1")
    return alice, keep


@pytest.mark.parametrize("key", ["c", "d"])
@pytest.mark.parametrize("state", STATES)
def test_ctrl_c_and_ctrl_d_leave_cleanly(
    state, key, relay_factory, terminal, batch_clients, tmp_path
):
    room = f"exit-{state}-{key}".replace("_", "-")
    alice, keep = _start_in(state, relay_factory, terminal, batch_clients, tmp_path, room)
    if state != "secure":
        alice.line("still pending when I leave")
        alice.expect(r"still pending when I leave  [·.] pending")
    alice.ctrl(key)
    status = alice.wait_exit()
    text = alice.screen_text()
    assert status == 0, text[-2000:]
    assert alice.crash_signs() == [], text[-3000:]
    if state != "secure":
        assert "1 message(s) were not delivered" in text
    for thing in keep:
        if isinstance(thing, RelayClient):
            thing.close()


def test_signals_leave_cleanly_too(relay_factory, terminal, tmp_path):
    relay = relay_factory()
    home = str(tmp_path)
    alice = terminal("--name", "alice", "--room", "sig", "--relay", relay.url, "--home", home)
    alice.expect("waiting for peer")
    alice.child.kill(signal.SIGTERM)
    assert alice.wait_exit() == 0
    assert alice.crash_signs() == []


@pytest.mark.parametrize(
    ("relay_arg", "needle"),
    [
        ("http://localhost:99999", "port must be 1-65535"),
        ("localhost:5000", "relay URL must look like http://host:port"),
        ("http://localhost:5000/some/path", "only scheme, host and port"),
    ],
)
def test_bad_relay_urls_are_refused_before_connecting(relay_arg, needle, terminal, tmp_path):
    alice = terminal("--name", "alice", "--relay", relay_arg, "--home", str(tmp_path))
    alice.expect(needle)
    assert alice.wait_exit() == 2
    assert alice.crash_signs() == []


def test_tls_to_a_plain_relay_says_so(relay_factory, terminal, tmp_path):
    relay = relay_factory()
    tls_url = relay.url.replace("http://", "https://")
    alice = terminal("--name", "alice", "--relay", tls_url, "--home", str(tmp_path))
    alice.expect(rf"{tls_url} does not speak TLS \(a plain relay\?\); try --relay {relay.url}")
    alice.ctrl("d")
    assert alice.wait_exit() == 0
    assert alice.crash_signs() == []


def test_unicode_display_name(relay_factory, terminal, batch_clients, tmp_path):
    relay = relay_factory()
    zoe = terminal("--name", "Zoë", "--room", "uni", "--relay", relay.url, "--home", str(tmp_path))
    zoe.expect("Zoë>")
    bob = batch_clients("bob", "uni", relay.url)
    assert bob.wait_secure()["peer"] == "Zoë"
    zoe.ctrl("d")
    assert zoe.wait_exit() == 0


def test_scripted_mode_stops_cleanly_on_sigint(relay_factory, batch_clients):
    relay = relay_factory()
    alice = batch_clients("alice", "batch-int", relay.url)
    alice.wait_event(lambda e: e.get("state") == "waiting for peer", what="waiting")
    alice.send("nobody will get this")
    alice.proc.send_signal(signal.SIGINT)
    assert alice.proc.wait(timeout=30) == 130
    err = alice.stderr()
    assert "interrupted; 1 message(s) not delivered" in err
    assert not [sign for sign in CRASH_SIGNS if sign in err], err
