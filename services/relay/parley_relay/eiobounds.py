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

import logging
import time

import engineio.socket
import gevent
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from . import fastws
from .config import Settings
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
    """Engine.IO socket with a cap on bytes queued for the client but not yet sent."""

    outbound_queue_bytes = 1_048_576  # set by install()

    def __init__(self, server, sid):
        super().__init__(server, sid)
        self.queued_bytes = 0
        self.evicted = False
        self.ws = None
        self.opened = time.monotonic()  # for the CONNECT deadline
        self.refused_at: float | None = None  # when its CONNECT was refused (closed soon)
        self._ping_timer = None

    # Pings from a timer, not a sleeping greenlet (memory per idle connection, see
    # docs/operations.md). Engine.IO's own schedule_ping spawns a greenlet that sleeps
    # ping_interval: one more running greenlet per connection, with its saved C stack and
    # data-stack chunk (several kB of RSS each). gevent.spawn_later creates the greenlet but
    # only starts it when the ping is due: until then it is a small object and a libev timer.
    def schedule_ping(self):
        if self.last_ping:  # as Engine.IO: one ping cycle at a time
            self.last_ping = None
            self._ping_timer = gevent.spawn_later(self.server.ping_interval, self._ping_due)

    def _ping_due(self) -> None:
        """Queue a PING unless the socket is closing (what Engine.IO's _send_ping did)."""
        self._ping_timer = None
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

    def poll(self):
        packets = super().poll()
        for pkt in packets:
            self.queued_bytes -= packet_bytes(pkt)
        return packets

    def close(self, wait=True, abort=False, reason=None):
        """Engine.IO's close, but a waiting close gives up after CLOSE_FLUSH_SECONDS."""
        pending, self._ping_timer = self._ping_timer, None
        if pending is not None:
            pending.kill(block=False)  # not yet due: cancelled, no ping for a closed socket
        super().close(wait=False, abort=abort, reason=reason)
        if wait and not self.queue.join(timeout=CLOSE_FLUSH_SECONDS):
            self.evict()  # still not written: the client does not read, cut it

    def _websocket_handler(self, ws):
        self.ws = ws  # kept so evict() can shut the TCP socket down
        return super()._websocket_handler(ws)

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
            self._sweeper = gevent.spawn(self._sweep_loop)
        return super()._handle_eio_connect(eio_sid, environ)

    def _sweep_loop(self) -> None:
        """Close sessions without a Socket.IO connection after connect_timeout.

        One greenlet looking at every session a few times per timeout, rather than a timer
        per connection: a flood of short connections leaves nothing behind.
        """
        while True:
            gevent.sleep(max(0.2, self.connect_timeout / 4))
            try:
                self._sweep(time.monotonic())
            except Exception:  # never let the sweeper die; the next round retries
                log_event(_log, "connect_sweep_failed", logging.WARNING, exc_info=True)

    def _sweep(self, now: float) -> None:
        for eio_sid, sock in list(self.eio.sockets.items()):
            opened = getattr(sock, "opened", None)
            if opened is None or sock.closed:
                continue
            refused_at = getattr(sock, "refused_at", None)
            if refused_at is not None:
                if now - refused_at >= REFUSED_CLOSE_SECONDS:
                    self._close_session(eio_sid)  # the refused client did not close it
                continue
            if now - opened < self.connect_timeout:
                continue
            if self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is None:
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
