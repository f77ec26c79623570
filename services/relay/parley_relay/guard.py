"""Connection-level bounds: what a client may hold before it has said anything useful.

* `BoundedServer` (gevent WSGIServer) counts open connections per replica and per client
  address and refuses past either cap with one clear HTTP line (503 / 429); sets TCP
  keepalive (half-open peers are noticed) and an idle timeout on every accepted socket.
* `BoundedHandler` gives the request line plus headers `header_timeout` seconds in total
  (a slowloris trickling one byte at a time cannot hold a connection).
* `AddressBuckets` is a token bucket per client address (CONNECT attempts), kept small.
* `SampledEvents` is a logging filter: a flood of refusals costs a few log lines, not one
  line per attempt; the first line after a quiet spell says how many were left out.

Client addresses are the TCP peer (REMOTE_ADDR); no forwarded-for header is trusted.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import time
from collections.abc import Callable

import gevent
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler

from . import wsidle
from .config import RateLimit, Settings
from .core import TokenBucket
from .logs import LOGGER_NAME, log_event

# TCP keepalive: first probe after 60 s of silence, then every 10 s, dropped after 6 misses,
# so a peer that vanished (power cut, NAT timeout) frees its socket within about 2 minutes.
KEEPALIVE_IDLE_SECONDS = 60
KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_PROBES = 6
# File descriptors kept free below the process limit for Redis, logs and the listener.
FD_RESERVE = 64
# Read buffer per connection (request headers, then websocket frames). pywsgi's default is
# io.DEFAULT_BUFFER_SIZE (8 kB) for every connection, idle or not; 2 kB holds a request header
# or a 1 kB message's frame in one recv, and longer reads bypass the buffer anyway.
READ_BUFFER_BYTES = 2048
# How long a refused connection may take to receive its one-line answer.
REFUSAL_SEND_SECONDS = 1.0
# A detached connection that ends reads (and drops) what its peer still sends for up to this
# long, until the peer's FIN: closing with unread bytes sends a reset, and a reset can destroy
# our close frame (and its refusal code, e.g. 1009) before the peer has read it.
CLOSE_LINGER_SECONDS = 2.0
# Refusal log lines: at most this many per second per event, bursts of REFUSAL_LOG_BURST.
REFUSAL_LOG_RATE = 2.0
REFUSAL_LOG_BURST = 10
# Log events that a client can trigger at will, and that are therefore sampled.
SAMPLED_EVENTS = (
    "connect_refused",
    "connection_refused",
    "header_timeout",
    "connect_timeout",
    "ws_refused",
    "bad_packet",
    "slow_consumer",
)

_log = logging.getLogger(LOGGER_NAME)


class AddressBuckets:
    """One token bucket per client address; buckets that refilled are forgotten.

    Memory stays bounded: a full bucket carries no information, so every `prune_every`
    new addresses the full ones are dropped (an attacker's addresses each cost one entry
    only for as long as its bucket is not yet full again).
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}
        self.prune_every = 1024
        self._since_prune = 0

    def allow(self, address: str | None) -> bool:
        """Spend one attempt for `address`; False when it has none left."""
        key = address or ""
        bucket = self.buckets.get(key)
        if bucket is None:
            self._since_prune += 1
            if self._since_prune >= self.prune_every:
                self.prune()
            bucket = self.buckets[key] = TokenBucket(self.limit, self.clock)
        return bucket.allow()

    def prune(self) -> None:
        """Forget every bucket that has refilled completely by now."""
        self._since_prune = 0
        now = self.clock()
        full_after = self.limit.burst / self.limit.rate
        for key, bucket in list(self.buckets.items()):
            if now - bucket.stamp >= full_after:
                del self.buckets[key]


class SampledEvents(logging.Filter):
    """Let through at most REFUSAL_LOG_RATE lines/s (burst REFUSAL_LOG_BURST) per sampled event.

    A line that follows dropped ones carries `suppressed`: how many were left out.
    """

    def __init__(
        self,
        events=SAMPLED_EVENTS,
        rate=REFUSAL_LOG_RATE,
        burst=REFUSAL_LOG_BURST,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.clock = clock
        self.limit = RateLimit(rate, burst)
        self.events = frozenset(events)
        self.buckets: dict[str, TokenBucket] = {}
        self.suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        event = record.msg
        if event not in self.events:
            return True
        bucket = self.buckets.get(event)
        if bucket is None:
            bucket = self.buckets[event] = TokenBucket(self.limit, self.clock)
        if not bucket.allow():
            self.suppressed[event] = self.suppressed.get(event, 0) + 1
            return False
        dropped = self.suppressed.pop(event, 0)
        if dropped:
            fields = dict(getattr(record, "fields", {}))
            fields["suppressed"] = dropped
            record.fields = fields
        return True


def set_keepalive(sock) -> None:
    """TCP keepalive with the probe timings above (Linux option names; others skip them)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def connection_cap(wanted: int) -> int:
    """`wanted`, lowered so that the process can never run out of file descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


class BoundedHandler(WebSocketHandler):
    """WebSocketHandler whose request line + headers must arrive within header_timeout.

    Later requests on a keep-alive connection (long-polling) may wait up to idle_timeout for
    their request line: an idle keep-alive connection is normal, a slow first request is not.
    """

    _header_timer: gevent.Timeout | None = None
    _requests = 0
    detached = False

    def detach(self):
        """Take the upgraded connection away from pywsgi: (socket, bytes already buffered).

        The WSGI call chain then returns and this handler's greenlet ends without closing
        the socket; whoever took it calls `server.release(socket, client_address)` when the
        connection is over (wsidle.py: an idle websocket holds no greenlet)."""
        sock = self.socket
        buffered = wsidle.buffered_bytes(self.__dict__.get("rfile"), sock)
        self.detached = True
        self.server.hand_over(sock)
        self.socket = None  # handle()'s loop ends and its cleanup leaves the socket alone
        return sock, buffered

    def upgrade_websocket(self):
        # An upgrade request has no body. One that announces a body would leave pywsgi
        # reading it from the socket the websocket reader was handed (detach): refused.
        env = self.environ
        if env.get("HTTP_UPGRADE", "").lower() == "websocket" and (
            env.get("CONTENT_LENGTH") not in (None, "", "0") or "HTTP_TRANSFER_ENCODING" in env
        ):
            self.close_connection = True
            self.start_response(
                "400 Bad Request", [("Content-Type", "text/plain"), ("Connection", "close")]
            )
            return [b"a websocket upgrade request carries no body\n"]
        return super().upgrade_websocket()

    def run_websocket(self):
        # gevent-websocket's, without its per-server `clients` registry (nothing reads it,
        # and it kept a Client object per connection) and, for a detached connection,
        # without closing the websocket: its new owner closes it when it ends.
        try:
            list(self.application(self.environ, lambda s, h, e=None: []))
        finally:
            websocket, self.websocket = self.websocket, None
            if not self.detached:
                if not websocket.closed:
                    websocket.close()
                self.environ.update({"wsgi.websocket": None})

    def handle_one_request(self):
        first = self._requests == 0
        self._requests += 1
        timer = gevent.Timeout(self.server.header_timeout if first else self.server.idle_timeout)
        self._header_timer = timer
        timer.start()
        try:
            return super().handle_one_request()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            if first:
                log_event(_log, "header_timeout", peer=_address(self.client_address))
            return None  # handle() closes the connection
        finally:
            timer.close()

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            # Headers are in: the request (maybe a websocket for hours) is no longer timed.
            if self._header_timer is not None:
                self._header_timer.cancel()


def _linger(sock, seconds: float) -> None:
    """Send our FIN, then read what the peer still sends until its FIN or `seconds`."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):  # socket.timeout is an OSError too
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                return


def _address(client_address) -> str:
    return client_address[0] if isinstance(client_address, tuple) else str(client_address or "")


def _refusal(status: str, text: str) -> bytes:
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 5\r\n\r\n"
    )
    return head.encode() + body


class BoundedServer(WSGIServer):
    """WSGIServer with a connection cap per replica and per client address."""

    def __init__(self, listener, application, settings: Settings, **kwargs):
        super().__init__(listener, application, handler_class=BoundedHandler, **kwargs)
        self.header_timeout = settings.header_timeout
        self.idle_timeout = settings.idle_timeout
        self.max_connections = connection_cap(settings.max_connections)
        self.per_address = settings.max_connections_per_address
        self.active = 0
        self.by_address: dict[str, int] = {}
        # Sockets whose handler was detached, between handle() returning and do_close().
        self._handed_over: set[int] = set()

    def handle(self, sock, address):
        addr = _address(address)
        held = self.by_address.get(addr, 0)
        if self.active >= self.max_connections:
            return self._refuse(
                sock, addr, "503 Service Unavailable", "relay at its connection limit"
            )
        if self.per_address and held >= self.per_address:
            return self._refuse(
                sock,
                addr,
                "429 Too Many Requests",
                f"too many connections from {addr} (limit {self.per_address})",
            )
        self.active += 1
        self.by_address[addr] = held + 1
        handler = None
        try:
            set_keepalive(sock)
            # A socket silent for longer than this is dead: reads and writes give up.
            sock.settimeout(self.idle_timeout)
            rfile = sock.makefile("rb", READ_BUFFER_BYTES)
            handler = self.handler_class(sock, address, self, rfile=rfile)
            handler.handle()
        finally:
            if handler is None or not handler.detached:
                self._forget(addr)  # else release() does, when the detached connection ends

    def hand_over(self, sock) -> None:
        """`sock` now belongs to a detached connection: do_close() must not close it."""
        self._handed_over.add(id(sock))

    def do_close(self, sock, *args):
        if id(sock) in self._handed_over:
            self._handed_over.discard(id(sock))
            return
        super().do_close(sock, *args)

    def release(self, sock, address) -> None:
        """A detached connection ended: close its socket as pywsgi would, free its slot."""
        try:
            _linger(sock, CLOSE_LINGER_SECONDS)
            with contextlib.suppress(OSError):
                sock.close()
        finally:
            self._forget(_address(address))

    def _forget(self, addr: str) -> None:
        self.active -= 1
        left = self.by_address.get(addr, 1) - 1
        if left > 0:
            self.by_address[addr] = left
        else:
            self.by_address.pop(addr, None)

    def _refuse(self, sock, addr: str, status: str, text: str) -> None:
        log_event(_log, "connection_refused", logging.WARNING, peer=addr, reason=text)
        try:
            sock.settimeout(REFUSAL_SEND_SECONDS)
            sock.sendall(_refusal(status, text))
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)  # read what the client sent, so closing does not reset the answer
        except OSError:
            pass
        finally:
            sock.close()
