"""DirectRoomsManager: a disconnect leaves the session's rooms without walking all rooms."""

from __future__ import annotations

import pytest
import socketio

from parley_relay.siomanager import DirectRoomsManager

NS = "/"


class NoWalk(dict):
    """A room map that fails the test if anyone copies or iterates it."""

    def copy(self):
        raise AssertionError("the whole room map was copied")

    def items(self):
        raise AssertionError("the whole room map was walked")

    def __iter__(self):
        raise AssertionError("the whole room map was walked")


def _manager(cls, sessions: int):
    mgr = cls()
    mgr.set_server(socketio.Server(client_manager=mgr))
    sids = [mgr.connect(f"eio-{i}", NS) for i in range(sessions)]
    return mgr, sids


def test_disconnect_leaves_exactly_the_sessions_rooms_without_a_walk():
    mgr, sids = _manager(DirectRoomsManager, 1000)
    gone = sids[500]
    mgr.callbacks[gone] = {1: lambda *a: None}
    mgr.rooms[NS] = NoWalk(mgr.rooms[NS])
    mgr.disconnect(gone, NS)
    assert gone not in mgr.rooms[NS] and gone not in mgr.rooms[NS][None]
    assert gone not in mgr.callbacks
    assert len(mgr.rooms[NS][None]) == 999 and all(s in mgr.rooms[NS] for s in sids if s != gone)


@pytest.mark.parametrize("cls", [socketio.Manager, DirectRoomsManager])
def test_same_rooms_afterwards_as_python_socketios_manager(cls):
    mgr, sids = _manager(cls, 5)
    mgr.enter_room(sids[1], NS, "extra")  # the fallback: a room besides None and the sid
    mgr.enter_room(sids[2], NS, "extra")
    for sid in sids[:3]:
        mgr.disconnect(sid, NS)
    assert set(mgr.rooms[NS]) == {None, sids[3], sids[4]}
    assert set(mgr.rooms[NS][None]) == {sids[3], sids[4]}
    mgr.disconnect(sids[3], NS)
    mgr.disconnect(sids[4], NS)
    assert NS not in mgr.rooms
