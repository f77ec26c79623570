"""Socket.IO transport: a Namespace that asks `core` what to do and does it.

Every entry point is wrapped so nothing raises out of a handler: a bad event gets an `error`
event (and a negative ack), an internal failure is logged (without payload) and answered.

Routing: each connection joins the Socket.IO room `room:<name>` on its own replica. The
manager (RedisManager) publishes every emit to all replicas, and each one delivers to its
local members of that room, so "emit to the room, skipping the sender" reaches the other
member wherever it is connected. No Redis lookup happens per message.
"""

from __future__ import annotations

import itertools
import logging

import gevent
import socketio

from .config import Settings
from .core import Connection, Rejection, Router, parse_auth, sio_room
from .logs import log_event
from .metrics import Metrics
from .store import Member, MembershipStore

NAMESPACE = "/"


def refuse(rejection: Rejection) -> socketio.exceptions.ConnectionRefusedError:
    """A connect refusal whose connect_error data is {"message", "data": {"code","message"}}."""
    return socketio.exceptions.ConnectionRefusedError(rejection.message, rejection.payload())


class RelayNamespace(socketio.Namespace):
    """The relay's only namespace; one instance per process."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        store: MembershipStore,
        metrics: Metrics,
        logger: logging.Logger,
    ):
        super().__init__(NAMESPACE)
        self.settings = settings
        self.router = router
        self.store = store
        self.metrics = metrics
        self.log = logger
        self.conns: dict[str, Connection] = {}
        self._ids = itertools.count(1)

    # -- dispatch ---------------------------------------------------------------------------

    def trigger_event(self, event, *args):
        """Single entry point for every Socket.IO event, lifecycle ones included."""
        sid = args[0] if args else None
        try:
            if event == "connect" and sid not in self.conns and len(args) >= 2:
                return self.on_connect(sid, args[1], args[2] if len(args) > 2 else None)
            if event == "disconnect" and not self.server.manager.is_connected(sid, NAMESPACE):
                return self.on_disconnect(sid)
            answer = self.on_client_event(sid, event, args[1:])
            # Yield after every event: a client whose frames are already buffered would
            # otherwise keep this greenlet (and the whole process) busy until its buffer is
            # drained, and a flooder could delay everyone else's messages.
            gevent.sleep(0)
            return answer
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception:
            log_event(
                self.log,
                "handler_error",
                logging.ERROR,
                exc_info=True,
                sid=sid,
                event_name=event if isinstance(event, str) else None,
            )
            if event == "connect":
                raise refuse(Rejection("unavailable")) from None
            return {"ok": False, "code": "unavailable"}

    # -- lifecycle --------------------------------------------------------------------------

    def on_connect(self, sid: str, environ: dict, auth: object) -> None:
        """Validate auth, join the room atomically, or refuse with {code, message}."""
        try:
            identity = parse_auth(auth, self.settings.token)
        except Rejection as rej:
            self.metrics.reject(rej.code)
            log_event(
                self.log, "connect_refused", sid=sid, code=rej.code, peer=environ.get("REMOTE_ADDR")
            )
            raise refuse(rej) from None
        member = Member(sid=sid, name=identity.name, replica=self.settings.replica_id)
        try:
            result = self.store.join(identity.room, member)
        except Exception as exc:  # Redis unreachable: refuse clearly, the client retries
            self.metrics.reject("unavailable")
            log_event(
                self.log,
                "connect_refused",
                logging.WARNING,
                sid=sid,
                code="unavailable",
                room=identity.room,
                error=type(exc).__name__,
            )
            raise refuse(Rejection("unavailable")) from None
        if not result.joined:
            self.metrics.reject("room_full")
            log_event(self.log, "connect_refused", sid=sid, code="room_full", room=identity.room)
            raise refuse(Rejection("room_full"))
        self.conns[sid] = self.router.new_connection(sid, identity)
        self.enter_room(sid, sio_room(identity.room))
        self.metrics.connections.set(len(self.conns))
        self.metrics.joins.inc()
        log_event(
            self.log,
            "joined",
            sid=sid,
            room=identity.room,
            name=identity.name,
            members=len(result.members),
            replaced=result.replaced.sid if result.replaced else None,
        )
        if result.replaced is not None:
            self._safe(self.server.disconnect, result.replaced.sid, namespace=NAMESPACE)
        if len(result.members) >= 2:
            # The CONNECT packet is sent after this handler returns; announce afterwards.
            gevent.spawn(self._announce, sid, identity.room)

    def _announce(self, sid: str, room: str) -> None:
        """Emit KEY_EXCHANGE to the room once `sid` is fully connected."""
        manager = self.server.manager
        for _ in range(200):
            if manager.is_connected(sid, NAMESPACE):
                break
            if sid not in self.conns:
                return
            gevent.sleep(0.005)
        if self._safe(self.emit, "KEY_EXCHANGE", 1, room=sio_room(room)):
            log_event(self.log, "key_exchange", room=room, sid=sid)

    def on_disconnect(self, sid: str) -> None:
        """Leave the room and tell the other member (`peer_left`), exactly once."""
        conn = self.conns.pop(sid, None)
        self.metrics.connections.set(len(self.conns))
        if conn is None:
            return
        room = conn.identity.room
        try:
            removed = self.store.leave(room, sid)
        except Exception:
            # Redis is down: the heartbeat resync / pruning will clean up; still tell the peer.
            log_event(self.log, "leave_failed", logging.WARNING, sid=sid, room=room)
            removed = True
        if removed:
            self._safe(
                self.emit,
                "peer_left",
                {"name": conn.identity.name},
                room=sio_room(room),
                skip_sid=sid,
            )
        log_event(
            self.log,
            "left",
            sid=sid,
            room=room,
            name=conn.identity.name,
            sent=conn.sent,
            rejected=sum(conn.rejected.values()),
        )

    # -- events -----------------------------------------------------------------------------

    def on_client_event(self, sid: str, event: object, args: tuple) -> dict:
        """Forward one client event to the other member, or answer with an error."""
        conn = self.conns.get(sid)
        if conn is None:
            return {"ok": False, "code": "bad_request"}
        try:
            fwd = self.router.route(conn, event, args)
        except Rejection as rej:
            return self.reject(sid, conn, rej, event)
        try:
            self.emit(fwd.event, args[0], room=sio_room(fwd.room), skip_sid=sid)
        except Exception:
            log_event(self.log, "forward_failed", logging.WARNING, sid=sid, room=fwd.room)
            return self.reject(sid, conn, Rejection("unavailable"), event)
        self.metrics.forward(fwd.event)
        return {"ok": True, "id": f"{self.settings.replica_id}:{next(self._ids)}"}

    def reject(self, sid: str, conn: Connection, rej: Rejection, event: object) -> dict:
        """Send `error {code, message}` to the sender and return the negative ack."""
        self.router.note_rejection(conn, rej.code)
        self.metrics.reject(rej.code)
        log_event(
            self.log,
            "rejected",
            logging.DEBUG if rej.code == "rate_limited" else logging.INFO,
            sid=sid,
            code=rej.code,
            event_name=event if isinstance(event, str) and len(event) <= 64 else None,
        )
        # The sender is always on this replica: no need to go through Redis.
        self._safe(self.emit, "error", rej.payload(), to=sid, ignore_queue=True)
        return {"ok": False, "code": rej.code}

    # -- helpers ----------------------------------------------------------------------------

    def _safe(self, fn, *args, **kwargs) -> bool:
        """Call an emit/disconnect; log and swallow failures (Redis may be down)."""
        try:
            fn(*args, **kwargs)
            return True
        except Exception:
            log_event(self.log, "emit_failed", logging.WARNING, target=getattr(fn, "__name__", "?"))
            return False

    def local_members(self) -> list[tuple[str, Member]]:
        """(room, member) for every connection on this replica (for resync after Redis loss)."""
        return [
            (
                c.identity.room,
                Member(sid=c.sid, name=c.identity.name, replica=self.settings.replica_id),
            )
            for c in list(self.conns.values())
        ]
