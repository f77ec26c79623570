"""Run the real ``parley-relay`` with a tap on everything it sends to clients.

Every event the relay delivers goes through python-socketio's ``Server.emit``; this script
wraps that one method before the relay starts, so the relay itself is not modified. Two
modes, chosen by environment variable (arguments are passed to ``parley-relay``):

``DEMO_TAP_FILE=/tmp/tap.jsonl`` (the demo)
    append every emit as one JSON line ``{"t", "event", "payload"}``, then deliver it
    unchanged: exactly what a relay operator could record.

``RELAY_TAP_CONTROL=<port>`` (the attack and leak tests, tests/support/tap.py)
    listen on 127.0.0.1:<port> for one controller. While one is attached, every emit is sent
    to it as ``{"op": "emit", "id", "event", "data", "route", "sender", "recipients"}`` and
    the relay waits for ``{"op": "reply", "id", "actions": [...]}``: each action is
    ``{"pass": true}`` (deliver the original unchanged) or ``{"event", "data", "route"}``
    (deliver this instead, to ``route`` = ``{"to"}`` or ``{"room", "skip_sid"}``); an empty
    list drops the event. The controller may also send ``{"op": "inject", "event", "data",
    "route"}`` at any time, and ``{"op": "inspect", "id"}`` to get counts of the relay's
    per-connection state (for leak checks). Any event is forwarded generically, whatever
    its name. With no controller attached the tap delivers everything unchanged.

    DEMO_TAP_FILE=/tmp/tap.jsonl python scripts/relay_tap.py --port 5000
"""

# Same order as the relay's own entry point: gevent patches sockets before anything else loads.
from gevent import monkey

monkey.patch_all()

import collections  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402
import socketio  # noqa: E402

# A controller that does not answer within this long is treated as gone: the emit is
# delivered unchanged, the tap says so on stderr and tells the controller (`gave_up`), whose
# test then fails with that reason instead of running a scene its policy did not decide. Long
# enough for a test process stalled on a loaded machine (pytest-timeout ends a hung one).
REPLY_TIMEOUT_S = float(os.environ.get("RELAY_TAP_REPLY_TIMEOUT", "60"))


def install_tap(path: str) -> None:
    """Wrap ``socketio.Server.emit`` so every outgoing event is also written to ``path``."""
    original = socketio.Server.emit

    def tapped(self, event, data=None, *args, **kwargs):
        record = {"t": round(time.time(), 3), "event": event, "payload": data}
        with open(path, "a", encoding="utf-8") as tap:
            tap.write(json.dumps(record, default=repr) + "\n")
        return original(self, event, data, *args, **kwargs)

    socketio.Server.emit = tapped


class Controlled:
    """The relay side of the control channel: one controller connection at a time."""

    def __init__(self, port: int):
        self.original = socketio.Server.emit
        self.server: socketio.Server | None = None
        self.conn: socket.socket | None = None
        self.pending: dict[int, gevent.event.AsyncResult] = {}
        self.ids = itertools.count(1)
        self.write_lock = gevent.lock.Semaphore()
        self.listener = socket.create_server(("127.0.0.1", port))
        gevent.spawn(self._accept)

    # -- the emit wrapper -------------------------------------------------------------------
    def install(self) -> None:
        controlled = self
        init = socketio.Server.__init__

        def remember(server, *args, **kwargs):
            init(server, *args, **kwargs)
            controlled.server = server  # the relay builds exactly one Server

        def tapped(server, event, data=None, *args, **kwargs):
            if controlled.conn is None or args:
                return controlled.original(server, event, data, *args, **kwargs)
            return controlled.decide(server, event, data, kwargs)

        socketio.Server.__init__ = remember
        socketio.Server.emit = tapped

    def decide(self, server, event, data, kwargs) -> None:
        route = {k: kwargs.get(k) for k in ("to", "room", "skip_sid") if kwargs.get(k)}
        rid = next(self.ids)
        waiter = self.pending[rid] = gevent.event.AsyncResult()
        request = {
            "op": "emit",
            "id": rid,
            "event": event,
            "data": data,
            "route": route,
            "sender": self._member(server, kwargs.get("skip_sid")),
            "recipients": self._recipients(server, kwargs),
        }
        try:
            self._send(request)
            actions = waiter.get(timeout=REPLY_TIMEOUT_S)
        except (OSError, gevent.Timeout, TypeError, ValueError) as exc:
            print(f"relay_tap: controller failed ({type(exc).__name__}); passing", file=sys.stderr)
            actions = [{"pass": True}]
            with contextlib.suppress(OSError):
                self._send({"op": "gave_up", "id": rid, "event": event, "why": type(exc).__name__})
        finally:
            self.pending.pop(rid, None)
        for action in actions:
            if action.get("pass"):
                self.original(server, event, data, **kwargs)
            else:
                self._deliver(action)

    def _deliver(self, action: dict) -> None:
        route = {k: v for k, v in (action.get("route") or {}).items() if v}
        if self.server is not None and route:
            self.original(self.server, action["event"], action.get("data"), **route)

    # -- what the controller is told about members -------------------------------------------
    @staticmethod
    def _namespace(server):
        return server.namespace_handlers.get("/")

    def _member(self, server, sid) -> dict | None:
        conn = getattr(self._namespace(server), "conns", {}).get(sid) if sid else None
        if conn is None:
            return None
        return {"sid": sid, "name": conn.identity.name, "room": conn.identity.room}

    def _recipients(self, server, kwargs) -> list[dict]:
        """Members on this replica the emit would reach (the tap cannot see other replicas)."""
        target = kwargs.get("to") or kwargs.get("room")
        if target is None:
            return []
        sids = [sid for sid, _ in server.manager.get_participants("/", target)]
        skip = kwargs.get("skip_sid")
        return [m for sid in sids if sid != skip and (m := self._member(server, sid))]

    def _inspect(self, types: bool = False) -> dict:
        """Counts of everything the relay keeps per connection, for leak checks; with
        `types`, also live objects per type name (to name what leaked)."""
        server = self.server
        gc.collect()
        objects = gc.get_objects()
        state: dict = {"objects": len(objects)}
        if types:
            state["types"] = dict(collections.Counter(type(o).__name__ for o in objects))
        if server is not None:
            rooms = server.manager.rooms.get("/", {})
            state.update(
                eio_sockets=len(server.eio.sockets),
                environ=len(server.environ),
                binary_packets=len(server._binary_packet),
                sio_rooms=len(rooms),
                sio_room_members=sum(len(m) for m in rooms.values()),
                conns=len(getattr(self._namespace(server), "conns", {})),
            )
        return state

    # -- the control connection ----------------------------------------------------------------
    def _send(self, message: dict) -> None:
        line = (json.dumps(message, default=repr) + "\n").encode()
        with self.write_lock:
            if self.conn is None:
                raise OSError("no controller")
            self.conn.sendall(line)

    def _accept(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            self.conn = conn
            self._send({"op": "hello"})
            self._read(conn)
            self.conn = None
            for waiter in list(self.pending.values()):
                waiter.set([{"pass": True}])

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for raw in lines:
                msg = json.loads(raw)
                op = msg.get("op")
                if op == "reply" and msg["id"] in self.pending:
                    self.pending[msg["id"]].set(msg["actions"])
                elif op == "inject":
                    gevent.spawn(self._deliver, msg)
                elif op == "inspect":
                    state = self._inspect(msg.get("types", False))
                    self._send({"op": "inspected", "id": msg["id"], "state": state})


def main() -> int:
    path = os.environ.get("DEMO_TAP_FILE")
    control = os.environ.get("RELAY_TAP_CONTROL")
    if control:
        Controlled(int(control)).install()
    elif path:
        install_tap(path)
    else:
        print("relay_tap: set DEMO_TAP_FILE or RELAY_TAP_CONTROL", file=sys.stderr)
        return 2
    from parley_relay.__main__ import main as relay_main

    return relay_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
