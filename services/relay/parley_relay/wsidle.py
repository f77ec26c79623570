"""Idle websockets without a greenlet (memory per idle connection, docs/operations.md).

A websocket read used to block in the greenlet pywsgi spawned for the connection, at the
bottom of the whole WSGI call chain (pywsgi -> gevent-websocket -> Engine.IO -> the read
loop -> BufferedReader -> recv). Every idle connection therefore held a started greenlet:
about 6 kB of saved C stack, a frame data-stack chunk of its own (a page or two of RSS), the
pywsgi handler with the request state, and the 2 kB read buffer.

After the upgrade the connection is now *detached* (`guard.BoundedHandler.detach`): the WSGI
call chain returns and its greenlet ends, the socket stays open, and an `IdleReader` watches
it with a libev io watcher. When the socket becomes readable, a greenlet is spawned that
reads and handles whole messages until no byte is left in its buffer, re-arms the watcher
and ends. So an idle connection holds no started greenlet at all: an io watcher, an idle
timer and a `SocketReader` whose buffer is empty.

Behaviour kept: at most one reader runs per connection and it handles messages one after the
other, in arrival order (async_handlers=False); frame limits are checked from the header
before the payload is read (fastws); a frame that arrives in pieces is waited for with the
socket's timeout, as before; a connection that sends nothing for `idle_timeout` is closed with
1001, as a read timing out was before; the end of a connection runs the same steps as the end
of the old read loop.
"""

from __future__ import annotations

import contextlib
import logging

import gevent

from .logs import LOGGER_NAME, log_event

# Smallest recv while reading a frame: a frame header and a small message arrive in one call.
READ_CHUNK = 2048
# A reader run yields to the other greenlets after this many messages: while bytes are
# buffered it never blocks, and packets such as Engine.IO pongs or acks reach no handler
# that would yield.
MESSAGES_PER_YIELD = 32
# libev's io event mask for "readable".
EV_READ = 1

_log = logging.getLogger(LOGGER_NAME)


class SocketReader:
    """Exact-length reads from a socket; the buffer holds only bytes not yet consumed.

    Unlike the pywsgi handler's BufferedReader (a fixed buffer for the connection's life),
    an idle connection's buffer is the empty bytes object, and `pending()` tells whether a
    whole next frame may already be here without asking the socket."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock, buffered: bytes = b""):
        self.sock = sock
        self.buf = buffered

    def pending(self) -> bool:
        """True while bytes received from the socket have not been read yet."""
        return bool(self.buf)

    def read(self, n: int) -> bytes:
        """`n` bytes, fewer only at end of stream; blocks with the socket's timeout."""
        buf = self.buf
        if len(buf) >= n:
            self.buf = buf[n:]
            return buf[:n]
        parts, have = [buf], len(buf)
        while have < n:
            chunk = self.sock.recv(max(n - have, READ_CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self.buf = data[n:]
        return data[:n]


def buffered_bytes(rfile, sock) -> bytes:
    """What `rfile` (a BufferedReader on `sock`) holds already, without blocking.

    A client may send its first frame right behind the upgrade request; those bytes sit in
    the handler's buffer. With the socket non-blocking for the call, peek() returns them, or
    nothing, instead of waiting."""
    if rfile is None or rfile.closed:
        return b""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return bytes(rfile.peek(0))
    except OSError:
        return b""
    finally:
        sock.settimeout(timeout)


class IdleReader:
    """Read a websocket only while its socket has something to read.

    `ws` is Engine.IO's websocket wrapper (`wait()` returns the next message, None once the
    websocket ended). `on_message(data)` handles one message and returns False to end the
    connection; `on_end()` runs once, in a greenlet, when it has ended.
    """

    __slots__ = (
        "ws",
        "reader",
        "on_message",
        "on_end",
        "idle_timeout",
        "watcher",
        "timer",
        "running",
        "ended",
        "last_read",
    )

    def __init__(self, ws, reader: SocketReader, idle_timeout: float, on_message, on_end):
        self.ws = ws
        self.reader = reader
        self.on_message = on_message
        self.on_end = on_end
        self.idle_timeout = idle_timeout
        loop = gevent.get_hub().loop
        self.watcher = loop.io(reader.sock.fileno(), EV_READ)
        self.timer = None
        self.running = False
        self.ended = False
        self.last_read = loop.now()

    def start(self) -> None:
        """Begin: read at once if bytes are already buffered, else wait for readability."""
        self._arm_idle(self.idle_timeout)
        if self.reader.pending():
            self._readable()
        else:
            self.watcher.start(self._readable)

    def _readable(self) -> None:
        # In the hub (or start()): nothing may block here, the reading runs in a greenlet.
        self.watcher.stop()
        self.running = True
        gevent.spawn_raw(self._run)

    def _run(self) -> None:
        keep = True
        try:
            handled = 0
            while True:
                try:
                    data = self.ws.wait()
                except Exception:  # the socket went away under us: the session ends
                    data = None
                if data is None or self.on_message(data) is False:
                    keep = False
                    break
                if not self.reader.pending():
                    break  # nothing more buffered: wait for the socket again
                handled += 1
                if handled % MESSAGES_PER_YIELD == 0:
                    gevent.sleep(0)
            self.last_read = gevent.get_hub().loop.now()
        except Exception:  # never leave a connection half-handled
            log_event(_log, "ws_reader_failed", logging.WARNING, exc_info=True)
            keep = False
        self.running = False
        if keep and not self.ended:
            self.watcher.start(self._readable)
        else:
            self._end()

    def _arm_idle(self, seconds: float) -> None:
        timer = gevent.get_hub().loop.timer(max(seconds, 0.001))
        self.timer = timer
        timer.start(self._idle_due)

    def _idle_due(self) -> None:
        # In the hub. The timer is not moved on every read (that would cost a heap update per
        # message): when it fires early, it is set again for the time that is left.
        self.timer.close()
        self.timer = None
        if self.ended:
            return
        left = self.last_read + self.idle_timeout - gevent.get_hub().loop.now()
        if self.running or left > 0:
            self._arm_idle(left if left > 0 else self.idle_timeout)
            return
        self.watcher.stop()
        self.running = True
        gevent.spawn_raw(self._timed_out)

    def _timed_out(self) -> None:
        with contextlib.suppress(Exception):  # as a read that timed out: "going away"
            getattr(self.ws, "_sock", self.ws).close(1001)
        self.running = False
        self._end()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.watcher.stop()
        self.watcher.close()
        if self.timer is not None:
            self.timer.close()
            self.timer = None
        try:
            self.on_end()
        except Exception:
            log_event(_log, "ws_end_failed", logging.WARNING, exc_info=True)
