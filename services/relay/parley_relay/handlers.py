"""Socket.IO transport: a Namespace that asks `core` and the seat store what to do and does it.

Every entry point is wrapped so nothing raises out of a handler: a bad event gets an `error`
event (and a negative ack), an internal failure is logged (without payload) and answered.

Routing by membership: the seat store (Redis across replicas) is the one truth. At join a
connection learns where its peers' connections are (`Connection.peers`: replica + sid);
changes arrive as peer updates and the reconciliation loop (`janitor.py`) re-reads them.
A message goes straight to the peer's sid, locally or through that replica's own channel
(`bus.py`). No Socket.IO rooms are used: a socket the store does not list receives nothing.

python-socketio's disconnect(sid) does nothing while that sid is inside its connect handler,
so nothing here relies on it: a connection superseded while connecting is marked in
`kicked` and its own handler rolls it back, as it does when the socket closed meanwhile.
"""

from __future__ import annotations

import logging
import secrets

import gevent
import socketio

from .bus import LocalBus, RedisBus
from .config import Settings
from .core import (
    OFFLINE_EVENTS,
    RECOVERING_TEXT,
    Connection,
    Rejection,
    Router,
    parse_auth,
    payload_size,
)
from .lease import Lease
from .logs import log_event
from .mailbox import MailboxStore
from .metrics import Metrics
from .offline import Held, Offline
from .store import Conn, JoinRequest, JoinResult, SeatStore

NAMESPACE = "/"
# A connection dropped before python-socketio finished its CONNECT is disconnected once
# it has: checked every step, for up to STEPS x STEP seconds (then its session is ended).
CONNECT_WAIT_STEPS = 200
CONNECT_WAIT_STEP_SECONDS = 0.005


def refuse(rejection: Rejection) -> socketio.exceptions.ConnectionRefusedError:
    """A connect refusal whose connect_error data is {"message", "data": {"code","message"}}."""
    return socketio.exceptions.ConnectionRefusedError(rejection.message, rejection.payload())


def join_refusal(result: JoinResult) -> Rejection:
    """The wire refusal for a join the store did not grant."""
    if result.status == "already_connected":
        return Rejection(
            "already_connected",
            f"you are already connected as {result.holder} from another terminal",
        )
    if result.status == "recovering":
        return Rejection("unavailable", RECOVERING_TEXT)
    return Rejection("room_full")


def pairs(conns) -> tuple[tuple[str, str], ...]:
    """Store Conn objects (or [replica, sid] lists) as hashable (replica, sid) pairs."""
    return tuple((c.replica, c.sid) if isinstance(c, Conn) else (c[0], c[1]) for c in conns)


class RelayNamespace(socketio.Namespace):
    """The relay's only namespace; one instance per process."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        store: SeatStore,
        bus: LocalBus | RedisBus,
        metrics: Metrics,
        logger: logging.Logger,
        lease: Lease,
        mailbox: MailboxStore,
    ):
        super().__init__(NAMESPACE)
        self.settings = settings
        self.me = settings.replica_id
        self.router = router
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.log = logger
        self.lease = lease
        self.conns: dict[str, Connection] = {}
        self.connecting: set[str] = set()
        self.kicked: set[str] = set()
        # Peer updates that arrived while their connection was still joining (its join
        # committed, its handler not yet resumed): applied when the handler finishes.
        self.early: dict[str, tuple] = {}
        # Live events for a connection that is joining or draining its mailbox backlog:
        # emitted in order once the backlog is out (offline.py), never before it.
        self.holding: dict[str, Held] = {}
        self.mailbox = mailbox
        self.offline = Offline(self, mailbox)
        # Set once an event's handling has yielded to other greenlets (see trigger_event).
        # Shared by all greenlets: one that runs while we wait can only clear it, which
        # costs a needless yield, never a missing one.
        self.waited = False

    # -- dispatch ---------------------------------------------------------------------------

    def trigger_event(self, event, *args):
        """Single entry point for every Socket.IO event, lifecycle ones included."""
        sid = args[0] if args else None
        try:
            if event == "connect" and sid not in self.conns and len(args) >= 2:
                return self.on_connect(sid, args[1], args[2] if len(args) > 2 else None)
            if event == "disconnect" and not self.server.manager.is_connected(sid, NAMESPACE):
                return self.on_disconnect(sid)
            self.waited = False
            answer = self.on_client_event(sid, event, args[1:])
            # Yield after every event: a client whose frames are already buffered would
            # otherwise keep this greenlet (and the whole process) busy until its buffer is
            # drained, and a flooder could delay everyone else's messages. Not after
            # `leave`: its closing greenlet would run first and the ack never leave. Not
            # when the event waited for Redis already (a publish to another replica): the
            # others had their turn then, and a switch per message is CPU per message.
            if event != "leave" and not self.waited:
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
        """Validate auth and take a seat atomically, or refuse with {code, message}."""
        try:
            identity = parse_auth(auth, self.settings.token)
        except Rejection as rej:
            self._refused(sid, rej, peer=environ.get("REMOTE_ADDR"))
        req = JoinRequest(sid, self.me, identity.name, identity.secret_hash, identity.instance)
        self.connecting.add(sid)
        self.holding[sid] = Held()
        try:
            try:
                result = self.store.join(identity.room, req)
            except Exception as exc:  # Redis unreachable: refuse clearly, the client retries
                self._refused(sid, Rejection("unavailable"), error=type(exc).__name__)
            if not result.joined:
                self._refused(sid, join_refusal(result), room=identity.room)
            if result.replaced is not None:
                gevent.spawn(self.kick, result.replaced)
            if sid in self.kicked or not self._socket_open(sid):
                # Superseded or closed while we waited for the store: roll the seat back.
                self._rollback(identity.room, sid)
            conn = self.router.new_connection(sid, identity)
            conn.peers, conn.version = pairs(result.peers), result.version
            announce = bool(result.peers)
            early = self.early.pop(sid, None)
            if early is not None and early[3] > conn.version:
                conn.peers, conn.version = pairs(early[0]), early[3]
            conn.event_version = conn.version
            # No yield from here to the end of the handler: python-socketio marks the socket
            # connected right after we return, so what we checked above still holds then.
            self.conns[sid] = conn
        finally:
            if sid not in self.conns:
                self.holding.pop(sid, None)
            self.connecting.discard(sid)
            self.kicked.discard(sid)
            self.early.pop(sid, None)
        self.metrics.connections.set(len(self.conns))
        self.metrics.joins.inc()
        log_event(
            self.log,
            "joined",
            sid=sid,
            room=identity.room,
            name=identity.name,
            seat="secret" if identity.secret_hash else "open",
            peers=len(result.peers),
            replaced=result.replaced.sid if result.replaced else None,
        )
        gevent.spawn(self._announce, sid, announce and result.version, early)

    def _refused(self, sid: str, rej: Rejection, **fields) -> None:
        self.metrics.reject(rej.code)
        level = logging.WARNING if rej.code == "unavailable" else logging.INFO
        log_event(self.log, "connect_refused", level, sid=sid, code=rej.code, **fields)
        raise refuse(rej) from None

    def _socket_open(self, sid: str) -> bool:
        eio_sid = self.server.manager.eio_sid_from_sid(sid, NAMESPACE)
        return eio_sid is not None and eio_sid in self.server.environ

    def _rollback(self, room: str, sid: str) -> None:
        try:
            self.store.leave(room, sid)
        except Exception:  # the reconciliation loop removes it once Redis answers
            log_event(self.log, "rollback_failed", logging.WARNING, sid=sid, room=room)
        self._refused(sid, Rejection("unavailable", "connection superseded"), rolled_back=True)

    def _announce(self, sid: str, announce: int, early: tuple | None) -> None:
        """Once `sid` is connected: if the room is complete, KEY_EXCHANGE to it and to its
        peers, who learn its place; an event of an early peer update is emitted now."""
        joiner = ((self.me, sid),)
        conn = self.conns.get(sid)
        if conn is not None and announce and conn.peers:
            # The peers learn the joiner's place at once: their live events then reach this
            # connection (held until its backlog is out), not one it replaced.
            self.tell_peers(conn.peers, joiner, None, None, announce)
        manager = self.server.manager
        for _ in range(200):
            if manager.is_connected(sid, NAMESPACE):
                break
            gevent.sleep(0.005)
        conn = self.conns.get(sid)
        if conn is None:
            self.holding.pop(sid, None)
            return
        if early is not None and early[1]:
            self.deliver(sid, early[1], early[2])
        self.offline.drain(sid, conn)  # the backlog first; then the held live events
        if not announce or not conn.peers or sid not in self.conns:
            return
        local = tuple(p for p in conn.peers if p[0] == self.me)
        # One emit reaches every local member (an emit wrapper such as scripts/relay_tap.py
        # then sees the room's KEY_EXCHANGE as one event, as before).
        targets = [sid] + [p for _, p in local if p in self.conns and p not in self.holding]
        self.server.emit("KEY_EXCHANGE", 1, to=targets, namespace=NAMESPACE)
        for _, p in local:
            if p in self.holding:  # still draining its own backlog: after it
                self.deliver(p, "KEY_EXCHANGE", 1)
        remote = tuple(p for p in conn.peers if p not in local)
        self.tell_peers(remote, joiner, "KEY_EXCHANGE", 1, announce, reliable=True)
        log_event(self.log, "key_exchange", room=conn.identity.room, sid=sid)

    def on_disconnect(self, sid: str) -> None:
        """Vacate the seat (reserved if it has a secret) and tell the peers, exactly once."""
        conn = self.conns.pop(sid, None)
        held = self.offline.take_held(sid)
        self.metrics.connections.set(len(self.conns))
        if conn is None:
            return
        room = conn.identity.room
        try:
            self.vacated(self.store.leave(room, sid))
            self.offline.reroute(conn, held)  # acked lines it never got: into the mailbox
        except Exception:
            # Redis is down: the seat stays listed under this replica, and the
            # reconciliation loop vacates it (and tells the peers) once Redis answers.
            log_event(self.log, "leave_failed", logging.WARNING, sid=sid, room=room)
        log_event(
            self.log,
            "left",
            sid=sid,
            room=room,
            name=conn.identity.name,
            sent=conn.sent,
            rejected=sum(conn.rejected.values()),
        )

    def vacated(self, result) -> None:
        """After a seat was vacated (LeaveResult, Pruned): `peer_left` to the remaining peers."""
        if getattr(result, "removed", True):
            self.tell_peers(result.peers, (), "peer_left", {"name": result.name}, result.version)

    def on_leave(self, sid: str, conn: Connection) -> dict:
        """`leave`: the member goes for good; release its seat, then close the connection."""
        try:
            result = self.store.leave(conn.identity.room, sid, release=True)
        except Exception:
            return self.reject(sid, conn, Rejection("unavailable"), "leave")
        self.conns.pop(sid, None)
        self.vacated(result)
        if conn.identity.secret_hash:  # the seat is gone: nobody can ever drain it
            self._safe(self.mailbox.drop_seat, conn.identity.room, conn.identity.secret_hash)
        log_event(self.log, "released", sid=sid, room=conn.identity.room)
        # Runs at this greenlet's next yield, after python-socketio queued the ack.
        gevent.spawn(self._safe, self.server.disconnect, sid, namespace=NAMESPACE)
        return {"ok": True}

    # -- seats taken over, peers, bus ---------------------------------------------------------

    def kick(self, conn: Conn) -> None:
        """The connection lost its seat (resumed elsewhere): drop it wherever it is."""
        if conn.replica == self.me:
            self.drop(conn.sid)
        else:
            self._safe(self.bus.send, conn.replica, ["k", conn.sid])

    def drop(self, sid: str, rej: Rejection | None = None) -> None:
        """Close a local connection without vacating its seat (someone else holds it).

        Its Engine.IO session is ended too (after the DISCONNECT, which it flushes first):
        a python-socketio client ignores a DISCONNECT that arrives between its CONNECT and
        the end of its own connect() call, which is just when a racing resume takes the
        seat, and would stay on a socket that holds nothing (test_relay_seats.py H2). The
        relay serves one namespace, so a socket without it has nothing left to carry."""
        if sid in self.conns:
            conn = self.conns.pop(sid)
            held = self.offline.take_held(sid)
            if held:  # acked lines held during its drain: to the seat's new connection
                gevent.spawn(self.offline.reroute, conn, held)
            self.metrics.connections.set(len(self.conns))
            if rej is not None:
                self.deliver_raw(sid, "error", rej.payload())
            log_event(self.log, "dropped", sid=sid, code=rej.code if rej else "replaced")
            eio_sid = self.server.manager.eio_sid_from_sid(sid, NAMESPACE)
            if self.server.manager.is_connected(sid, NAMESPACE):
                self._safe(self.server.disconnect, sid, namespace=NAMESPACE)
                if eio_sid is not None:
                    gevent.spawn(self._safe, self.server.eio.disconnect, eio_sid)
            else:
                gevent.spawn(self._disconnect_once_connected, sid)
        elif sid in self.connecting:
            self.kicked.add(sid)  # its own connect handler rolls it back

    def _disconnect_once_connected(self, sid: str) -> None:
        """Disconnect `sid` once python-socketio has finished its CONNECT, then end its
        Engine.IO session. Until then the session is "pending" and `server.disconnect()`
        does nothing, so a connection dropped in that window would be told CONNECT and
        keep a socket that holds no seat and that no one closes."""
        manager = self.server.manager
        eio_sid = manager.eio_sid_from_sid(sid, NAMESPACE)
        for _ in range(CONNECT_WAIT_STEPS):
            if manager.is_connected(sid, NAMESPACE):
                self._safe(self.server.disconnect, sid, namespace=NAMESPACE)
                break
            if not self._socket_open(sid):
                return  # closed meanwhile: nothing left to disconnect
            gevent.sleep(CONNECT_WAIT_STEP_SECONDS)
        if eio_sid is not None:
            self._safe(self.server.eio.disconnect, eio_sid)

    def tell_peers(
        self,
        peers,
        joiner: tuple,
        event: str | None,
        data: object,
        version: int,
        reliable: bool = False,
    ) -> None:
        """Each peer's peers become `joiner` + the other peers as of seat state `version`;
        then it gets `event`. `reliable` waits out a Redis failover (bus.ClusterBus): only
        where nothing else waits on us (never the janitor, whose lease would lapse)."""
        peers = pairs(peers)
        for replica, sid in peers:
            theirs = list(joiner) + [p for p in peers if p != (replica, sid)]
            if replica == self.me:
                self.peer_update(sid, theirs, event, data, version)
            else:
                message = ["p", sid, theirs, event, data, version]
                self._safe(self.bus.send, replica, message, reliable=reliable)

    def peer_update(self, sid: str, peers, event: str | None, data: object, version: int) -> None:
        """Apply a peer update unless the connection already knows a newer seat state."""
        conn = self.conns.get(sid)
        if conn is None:
            if sid in self.connecting and version > self.early.get(sid, (0, 0, 0, 0))[3]:
                self.early[sid] = (peers, event, data, version)
            return
        if version >= conn.version:  # else: crossed on the wire with a newer change
            conn.peers, conn.version = pairs(peers), version
        if event and version > conn.event_version:
            conn.event_version = version
            self.deliver(sid, event, data)

    def on_bus(self, message: list) -> None:
        """A message from another replica's `bus.send` (see bus.py for the shapes)."""
        kind = message[0]
        if kind == "m":
            self.deliver(message[1], message[2], message[3])
        elif kind == "p":
            self.peer_update(message[1], message[2], message[3], message[4], message[5])
        elif kind == "k":
            self.drop(message[1])
        elif kind == "x":
            self.offline.on_notice(message[1])

    def deliver(self, sid: str, event: str, data: object, sender: str | None = None) -> None:
        """Emit to a local connection, only if it holds a seat (in `conns`). `sender` (a
        local sid, excluded anyway) tells an emit wrapper such as scripts/relay_tap.py
        whose event this is."""
        held = self.holding.get(sid)
        if held is not None:
            self.offline.hold(sid, held, event, data, sender)
        elif sid in self.conns:
            self.server.emit(event, data, to=sid, skip_sid=sender, namespace=NAMESPACE)

    def _seated(self, sid: str) -> bool:
        return sid in self.conns or sid in self.holding

    def send_to(self, peer: tuple, event: str, data: object, sender: str) -> None:
        """Deliver to a (replica, sid) here or through that replica's channel."""
        if peer[0] == self.me:
            self.deliver(peer[1], event, data, sender)
        else:
            # reliable: a client's message, acked to its sender (waits out a failover)
            self.bus.send(peer[0], ["m", peer[1], event, data], reliable=True)
            # A publish returns only once Redis answered: this greenlet has yielded.
            self.waited = getattr(self.bus, "waits", False)

    def deliver_raw(self, sid: str, event: str, data: object) -> None:
        self._safe(self.server.emit, event, data, to=sid, namespace=NAMESPACE)

    # -- events -----------------------------------------------------------------------------

    def on_client_event(self, sid: str, event: object, args: tuple) -> dict:
        """Forward one client event to the peers' connections, or answer with an error."""
        conn = self.conns.get(sid)
        if conn is None:
            return {"ok": False, "code": "bad_request"}
        if event == "leave":
            return self.on_leave(sid, conn)
        if event in OFFLINE_EVENTS:
            return self.offline.handle(sid, conn, event, args)
        try:
            fwd = self.router.route(conn, event, args)
        except Rejection as rej:
            return self.reject(sid, conn, rej, event)
        if not self.lease.valid():
            return self.reject(sid, conn, Rejection("unavailable"), event)
        payload = args[0]
        # A local peer that is gone (not seated, not joining) is no live target.
        live = [p for p in conn.peers if p[0] != self.me or self._seated(p[1])]
        try:
            if not live and fwd.event == "received_message" and conn.identity.secret_hash:
                ack = self.offline.store(sid, conn, payload, payload_size(payload))
                if ack is not None:
                    return ack
            for peer in live:
                self.send_to(peer, fwd.event, payload, sid)
        except Exception:
            log_event(self.log, "forward_failed", logging.WARNING, sid=sid, room=fwd.room)
            return self.reject(sid, conn, Rejection("unavailable"), event)
        self.metrics.forward(fwd.event)
        # Opaque: a counter would tell anyone how many messages this replica forwards.
        return {"ok": True, "id": secrets.token_urlsafe(12)}

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
        self.deliver_raw(sid, "error", rej.payload())
        return {"ok": False, "code": rej.code}

    # -- helpers ----------------------------------------------------------------------------

    def _safe(self, fn, *args, **kwargs) -> bool:
        """Call an emit/disconnect/publish; log and swallow failures (Redis may be down)."""
        try:
            fn(*args, **kwargs)
            return True
        except Exception:
            log_event(self.log, "emit_failed", logging.WARNING, target=getattr(fn, "__name__", "?"))
            return False
