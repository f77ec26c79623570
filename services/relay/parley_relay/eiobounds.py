"""Engine.IO / Socket.IO session bounds (issue 12: M1, M2, M3, M7).

* `BoundedSocket` (an Engine.IO socket) counts the bytes queued for its client but not yet
  written. Past `outbound_queue_bytes` the client is a slow consumer (it does not read): it
  is disconnected and its TCP socket shut down, instead of the queue growing without limit
  (as Centrifugo's `client_queue_max_size`). At most one queue's worth plus the batch being
  written is held per connection.
* `GuardedServer` (a mixin for socketio.Server):
  - refuses binary Engine.IO messages and Socket.IO binary packets (`5...-`, `6...-`):
    Parley is JSON text only, and attachments would otherwise pile up before any handler;
  - closes an Engine.IO session that has not sent its Socket.IO CONNECT within
    `connect_timeout`;
  - limits CONNECT attempts per client address (token bucket), refused before auth is even
    parsed or Redis asked;
  - closes the Engine.IO session after any refused CONNECT, so one socket cannot be reused
    for thousands of token guesses: at once on the next packet, else after
    `REFUSED_CLOSE_SECONDS` unless the client closed it first (see that constant).

`install(settings)` makes Engine.IO build BoundedSockets (once per process, from server.run).
"""

from __future__ import annotations

import contextlib
import logging
import time

import engineio.exceptions
import engineio.socket
import gevent
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from . import fastws, wsidle
from .config import Settings
from .eioqueue import PacketQueue
from .guard import AddressBuckets
from .logs import LOGGER_NAME, log_event

_log = logging.getLogger(LOGGER_NAME)
# Engine.IO packets that carry no string (OPEN's dict, NOOP): a nominal size for the count.
NON_TEXT_PACKET_BYTES = 64
RATE_LIMITED_TEXT = "too many connection attempts from your address; retry shortly"
NAMESPACE = "/"
# A server-side close waits this long for what is queued (the close packet) to be written;
# a client that does not read must not hold up a disconnect or the graceful shutdown.
CLOSE_FLUSH_SECONDS = 2.0
# After a refused CONNECT the client closes the session itself (python-socketio does so right
# after connect_error); the relay only closes it when the client has not within this time.
# Closing at once raced python-engineio's client: its reader, handling our CLOSE while the
# client was itself disconnecting, emptied the send queue under its writer, which then sat
# out ping_interval + 5 s (30 s) before the client returned from the refusal (about 1 in 6).
# Long enough for a loaded client to close, short enough that a refused session costs little.
REFUSED_CLOSE_SECONDS = 2.0
_BaseSocket = engineio.socket.Socket


class BinaryRefused(ValueError):
    """A binary Engine.IO message or Socket.IO binary packet (Parley is JSON only)."""


def packet_bytes(pkt) -> int:
    """Size counted for one queued Engine.IO packet (O(1): len of its encoded text)."""
    data = pkt.data
    if type(data) is str or type(data) is bytes:
        return len(data) + 1
    return NON_TEXT_PACKET_BYTES


class BoundedSocket(_BaseSocket):
    """Engine.IO socket with a cap on bytes queued for the client but not yet sent.

    Memory per idle connection (docs/operations.md): on a websocket, Engine.IO runs a writer
    greenlet per connection that blocks on the queue for the whole session, and a greenlet
    per ping interval; each running greenlet keeps its saved C stack and a frame data-stack
    chunk (several kB of RSS). Here the writer runs only while packets are queued
    (`_flush`, spawned by `send`), pings come from a libev timer, and the queue is a
    `PacketQueue`. Long-polling sessions keep Engine.IO's own code paths.
    """

    outbound_queue_bytes = 1_048_576  # set by install()

    def __init__(self, server, sid):
        super().__init__(server, sid)
        self.queue = PacketQueue()
        self.queued_bytes = 0
        self.evicted = False
        self.ws = None
        self.opened = time.monotonic()  # for the CONNECT deadline
        self.refused_at: float | None = None  # when its CONNECT was refused (closed soon)
        self._ping_timer = None
        self._direct = None  # the websocket the on-demand writer sends to
        self._flusher = None  # that writer, while it runs

    def schedule_ping(self):
        if self.last_ping:  # as Engine.IO: one ping cycle at a time
            self.last_ping = None
            timer = gevent.get_hub().loop.timer(self.server.ping_interval)
            self._ping_timer = timer
            timer.start(self._ping_fired)

    def _ping_fired(self) -> None:
        # Runs in the hub, where nothing may block: the ping itself runs in a greenlet.
        self._cancel_ping()
        gevent.spawn(self._ping_due)

    def _cancel_ping(self) -> None:
        timer, self._ping_timer = self._ping_timer, None
        if timer is not None:
            timer.close()

    def _ping_due(self) -> None:
        """Queue a PING unless the socket is closing (what Engine.IO's _send_ping did)."""
        if self.closing or self.closed:
            return
        self.last_ping = time.time()
        self.send(eio_packet.Packet(eio_packet.PING))

    def send(self, pkt):
        """Queue `pkt`, or evict this client when its queue would exceed the cap."""
        if self.evicted:
            return
        size = packet_bytes(pkt)
        if self.queued_bytes + size > self.outbound_queue_bytes:
            self.evict()
            return
        self.queued_bytes += size
        super().send(pkt)
        self._wake_writer()

    def poll(self):
        packets = super().poll()
        for pkt in packets:
            self.queued_bytes -= packet_bytes(pkt)
        return packets

    def close(self, wait=True, abort=False, reason=None):
        """Engine.IO's close, but a waiting close gives up after CLOSE_FLUSH_SECONDS."""
        self._cancel_ping()  # no ping for a closed socket
        super().close(wait=False, abort=abort, reason=reason)
        self._wake_writer()  # writes what is queued (the CLOSE), then closes the websocket
        if wait and not self.queue.join(timeout=CLOSE_FLUSH_SECONDS):
            self.evict()  # still not written: the client does not read, cut it

    # -- websocket transport ------------------------------------------------------------

    def _websocket_handler(self, ws):
        self.ws = ws  # kept so evict() can shut the TCP socket down
        if self.connected:  # an upgrade from long-polling: Engine.IO's own writer
            return super()._websocket_handler(ws)
        self.connected = self.upgraded = True
        sock = getattr(ws, "_sock", None)
        if sock is not None:
            fastws.slim_websocket(sock)
        self._direct = ws
        self._wake_writer()  # the OPEN packet is already queued
        if sock is not None and self._detach(ws, sock):
            return []  # the WSGI call chain returns; the IdleReader has the connection now
        self._read_loop(ws)
        self._finish(ws)
        return []

    def _detach(self, ws, sock) -> bool:
        """Hand the connection to an IdleReader (no greenlet while idle), if pywsgi's
        handler is ours; False when it cannot be detached (then the read loop blocks)."""
        handler = getattr(sock, "handler", None)
        if not isinstance(sock, fastws.BoundedWebSocket) or not hasattr(handler, "detach"):
            return False
        server, address = handler.server, handler.client_address
        tcp, buffered = handler.detach()

        def ended() -> None:
            try:
                self._finish(ws)
                sockets = self.server.sockets
                if sockets.get(self.sid) is self:
                    del sockets[self.sid]  # what Engine.IO does once its handler returned
            finally:
                try:
                    if not sock.closed:
                        sock.close()  # what gevent-websocket did once the app returned
                finally:
                    server.release(tcp, address)  # the slot, whatever the close raised

        try:
            reader = wsidle.SocketReader(tcp, buffered)
            sock.use_socket(tcp, reader.read)
            wsidle.IdleReader(ws, reader, server.idle_timeout, self._take, ended).start()
        except BaseException:
            # Handed over but never watched: nobody else would ever close it or free its slot.
            with contextlib.suppress(Exception):
                tcp.close()
            server.release(tcp, address)
            raise
        return True

    def _finish(self, ws) -> None:
        """After the last read: write what is queued, then close (Engine.IO's order)."""
        self._direct = None
        self.queue.put(None)  # as Engine.IO: the writer stops after what is queued
        if self._flusher is not None:
            self._flusher.join()
        self._direct = ws
        self._flush()
        self._direct = None
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    def _read_loop(self, ws) -> None:
        """Hand every packet the client sends to Engine.IO until the websocket ends."""
        while True:
            try:
                data = ws.wait()
            except Exception:  # the socket went away under us: the session ends
                return
            if data is None or not self._take(data):
                return

    def _take(self, data) -> bool:
        """Handle one message from the client; False when the session must end."""
        if len(data) > self.server.max_http_buffer_size:
            return False
        try:
            self.receive(eio_packet.Packet(encoded_packet=data))
        except engineio.exceptions.UnknownPacketError:
            return True
        except Exception:  # SocketIsClosedError, or a handler failure: end the session
            return False
        return True

    def _wake_writer(self) -> None:
        if self._direct is not None and self._flusher is None and not self.queue.empty():
            self._flusher = gevent.spawn(self._flush)

    def _flush(self) -> None:
        """Write what is queued, oldest first; return when the queue is empty.

        Only ever one at a time (`_flusher`): per-connection order is kept. A None in the
        queue (Engine.IO's stop sentinel, from close()) closes the websocket. Every packet
        taken is marked done, written or not, so close()'s join never waits for a dead peer."""
        ws, queue = self._direct, self.queue
        batch = iter(())
        try:
            while ws is not None and not queue.empty():
                batch = iter(queue.take_all())
                texts = []
                for pkt in batch:
                    queue.task_done()
                    if pkt is None:
                        if ws is not None:
                            _write(ws, texts)
                            ws.close()
                        self._direct, ws, texts = None, None, []
                        continue
                    self.queued_bytes -= packet_bytes(pkt)
                    if ws is not None:
                        texts.append(pkt.encode())
                if ws is not None and texts:
                    _write(ws, texts)
        except Exception:  # the peer is gone: drop what is left, close as Engine.IO's writer
            self._direct = None
            for pkt in [*batch, *queue.take_all()]:
                queue.task_done()
                if pkt is not None:
                    self.queued_bytes -= packet_bytes(pkt)
            with contextlib.suppress(Exception):
                ws.close()
        finally:
            self._flusher = None

    def evict(self) -> None:
        """Disconnect a client that does not read (once); the work runs in its own greenlet."""
        if self.evicted:
            return
        self.evicted = True
        log_event(_log, "slow_consumer", logging.WARNING, sid=self.sid, queued=self.queued_bytes)
        gevent.spawn(self._drop)

    def _drop(self) -> None:
        try:
            self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        finally:
            sock = getattr(self.ws, "_sock", None)
            if isinstance(sock, fastws.BoundedWebSocket):
                sock.abort()  # wakes the writer blocked in sendall and the reader


def _write(ws, texts: list) -> None:
    """Write encoded Engine.IO packets to the websocket, in one write when it is ours."""
    sock = getattr(ws, "_sock", None)
    if isinstance(sock, fastws.BoundedWebSocket) and all(type(t) is str for t in texts):
        sock.send_texts(texts)
    else:
        for text in texts:
            ws.send(text)


class GuardedServer:
    """Mixin for socketio.Server: binary refused, CONNECT deadline and rate, refusal closes."""

    connect_timeout: float = 10.0
    connect_buckets: AddressBuckets | None = None

    def configure_bounds(self, settings: Settings) -> None:
        """Take the session limits from `settings`."""
        self.connect_timeout = settings.connect_timeout
        rate = settings.connect_rate
        self.connect_buckets = AddressBuckets(rate) if rate is not None else None

    def _handle_eio_connect(self, eio_sid, environ):
        if getattr(self, "_sweeper", None) is None:
            self._unconnected: dict[str, None] = {}
            self._sweeper = gevent.spawn(self._sweep_loop)
        self._unconnected[eio_sid] = None
        return super()._handle_eio_connect(eio_sid, environ)

    def _handle_eio_disconnect(self, eio_sid, reason):
        getattr(self, "_unconnected", {}).pop(eio_sid, None)
        return super()._handle_eio_disconnect(eio_sid, reason)

    def _sweep_loop(self) -> None:
        """Close sessions without a Socket.IO connection after connect_timeout.

        One greenlet looking a few times per timeout at the sessions that have not connected
        (`_unconnected`, not every session: with 10,000 idle websockets a walk over all of
        them held the process for milliseconds each round), rather than a timer per
        connection: a flood of short connections leaves nothing behind.
        """
        while True:
            gevent.sleep(max(0.2, self.connect_timeout / 4))
            try:
                self._sweep(time.monotonic())
            except Exception:  # never let the sweeper die; the next round retries
                log_event(_log, "connect_sweep_failed", logging.WARNING, exc_info=True)

    def _sweep(self, now: float) -> None:
        pending = getattr(self, "_unconnected", {})
        for eio_sid in list(pending):
            sock = self.eio.sockets.get(eio_sid)
            opened = getattr(sock, "opened", None)
            if opened is None or sock.closed:
                pending.pop(eio_sid, None)
                continue
            refused_at = getattr(sock, "refused_at", None)
            if refused_at is not None:
                if now - refused_at >= REFUSED_CLOSE_SECONDS:
                    self._close_session(eio_sid)  # the refused client did not close it
                continue
            if self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None:
                pending.pop(eio_sid, None)  # connected: no deadline any more
            elif now - opened >= self.connect_timeout:
                log_event(_log, "connect_timeout", peer=self._peer(eio_sid))
                self._close_session(eio_sid)

    def _handle_eio_message(self, eio_sid, data):
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closed:
            return None  # we closed this session (a refusal): what follows is not read
        if getattr(sock, "refused_at", None) is not None:
            self._close_session(eio_sid)  # a second guess after a refusal: not read, closed
            return None
        # O(1): the Socket.IO packet type is the first character.
        if type(data) is bytes or (type(data) is str and data[:1] in ("5", "6")):
            raise BinaryRefused("binary packets are not accepted")
        return super()._handle_eio_message(eio_sid, data)

    def _handle_connect(self, eio_sid, namespace, data):
        buckets = self.connect_buckets
        if buckets is not None and not buckets.allow(self._peer(eio_sid)):
            log_event(_log, "connect_refused", code="rate_limited", peer=self._peer(eio_sid))
            error = {"code": "rate_limited", "message": RATE_LIMITED_TEXT}
            self._send_packet(
                eio_sid,
                self.packet_class(
                    sio_packet.CONNECT_ERROR,
                    data={"message": RATE_LIMITED_TEXT, "data": error},
                    namespace=namespace or NAMESPACE,
                ),
            )
            self._refused(eio_sid)
            return
        super()._handle_connect(eio_sid, namespace, data)
        if self.manager.sid_from_eio_sid(eio_sid, namespace or NAMESPACE) is None:
            self._refused(eio_sid)  # no second guess on this session
        else:
            getattr(self, "_unconnected", {}).pop(eio_sid, None)  # off the sweeper's list

    def _peer(self, eio_sid) -> str | None:
        return self.environ.get(eio_sid, {}).get("REMOTE_ADDR")

    def _refused(self, eio_sid) -> None:
        """Mark a session whose CONNECT was refused: closed by the client, or soon by us.

        Not closed here: see REFUSED_CLOSE_SECONDS. Any further packet closes it at once
        (_handle_eio_message), else the sweeper does after REFUSED_CLOSE_SECONDS.
        """
        sock = self.eio.sockets.get(eio_sid)
        if sock is None:
            return
        if hasattr(sock, "refused_at"):
            sock.refused_at = time.monotonic()
        else:  # not a BoundedSocket (install() not called): close as before
            self._close_session(eio_sid)

    def _close_session(self, eio_sid) -> None:
        """Close the Engine.IO session after what is queued (the refusal) has been sent."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None:
            sock.close(wait=False, abort=False, reason=self.reason.SERVER_DISCONNECT)


_installed = False


def install(settings: Settings) -> None:
    """Make Engine.IO create BoundedSockets with the cap from `settings` (idempotent)."""
    global _installed
    BoundedSocket.outbound_queue_bytes = settings.outbound_queue_bytes
    if _installed:
        return
    engineio.socket.Socket = BoundedSocket
    _installed = True
