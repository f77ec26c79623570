"""python-socketio's in-process manager with a disconnect that does not walk every session.

python-socketio's `basic_disconnect` finds the rooms a session is in by copying the
namespace's room map and testing each room: every session has a room of its own, so with
10,000 idle connections on a replica each disconnect copied and tested 10,000 rooms and held
the process for 10 ms and more (gevent's blocking monitor showed it; live pairs' latency on
the same replica paid for every disconnect of anyone).

The relay puts a session in two rooms only: the namespace's room of all sessions (None) and
its own (its sid); delivery is the relay's own (bus.py), not Socket.IO rooms. So a disconnect
leaves exactly those two. Should any session ever enter another room, the manager notices and
falls back to python-socketio's full scan, so the result is the same either way.
"""

from __future__ import annotations

import socketio


class DirectRoomsManager(socketio.Manager):
    """socketio.Manager whose disconnect costs O(1) while sessions use no extra rooms."""

    def __init__(self):
        super().__init__()
        self.other_rooms = False  # set once a session enters a room besides None and its sid

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        if room is not None and room != sid:
            self.other_rooms = True
        return super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)

    def basic_disconnect(self, sid, namespace, **kwargs):
        if self.other_rooms:
            return super().basic_disconnect(sid, namespace, **kwargs)
        rooms = self.rooms.get(namespace)
        if rooms is None:
            return None
        for room in (None, sid):
            members = rooms.get(room)
            if members is not None and sid in members:
                self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]
        return None
