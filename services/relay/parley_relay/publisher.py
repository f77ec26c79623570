"""PUBLISHes to Redis, batched: one pipeline round trip for what many greenlets publish at once.

Profiling a 2-replica, 50-pair run (py-spy, docs/operations.md "Performance notes") put about
a third of the relay's CPU in `publish`: one command, one `sendall` and one blocking read per
forwarded message. `BatchingPublisher.publish(channel, body)` has the redis client's signature
and semantics (it returns once Redis has answered, with the receiver count, or raises the
client's error), but the publishes queued while a round trip is on the wire leave together as
one pipeline: under load N messages cost one write and one read instead of N of each. A lone
publish goes out at once (no delay is added to wait for company).

Order: entries leave in the order they were queued, and each caller waits for its own answer
before it goes on, so a connection's messages (handled one after another in its greenlet)
keep their order, as with the plain client.
"""

from __future__ import annotations

import contextlib
from collections import deque

import gevent
import gevent.event
import redis

# At most this many PUBLISHes per pipeline: bounds one batch's buffer and the wait of the
# first caller in it (1,000 x 1 kB messages = 1 MB per write).
MAX_BATCH = 1000


class _Batch:
    __slots__ = ("entries", "done", "results", "error")

    def __init__(self):
        self.entries: list[tuple[str, bytes | str]] = []
        self.done = gevent.event.Event()
        self.results: list = []
        self.error: BaseException | None = None


class BatchingPublisher:
    """`publish` through a pipeline shared by every caller waiting at the same time."""

    def __init__(self, client: redis.Redis, max_batch: int = MAX_BATCH):
        self.client = client
        self.max_batch = max_batch
        self._waiting: deque[_Batch] = deque()  # the last one collects while a trip runs
        self._writer: gevent.Greenlet | None = None
        self._conn = None  # the writer's connection, taken from the client's pool once

    def publish(self, channel: str, body) -> int:
        """PUBLISH `body` on `channel`; the number of receivers, or the client's error."""
        waiting = self._waiting
        if not waiting or len(waiting[-1].entries) >= self.max_batch:
            waiting.append(_Batch())
        batch = waiting[-1]
        index = len(batch.entries)
        batch.entries.append((channel, body))
        if self._writer is None:
            self._writer = gevent.spawn(self._run)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        result = batch.results[index]
        if isinstance(result, Exception):
            raise result
        return result

    def _run(self) -> None:
        """Send batches until none is waiting (then end: no greenlet while idle)."""
        try:
            while self._waiting:
                batch = self._waiting.popleft()
                try:
                    batch.results = self._trip(batch.entries)
                except Exception as exc:  # Redis away: every caller of the batch gets it
                    batch.error = exc
                except BaseException:  # killed (shutdown): its callers must not wait
                    batch.error = redis.ConnectionError("publisher stopped")
                    raise
                finally:
                    batch.done.set()
        finally:
            self._writer = None
            while self._waiting:  # killed with batches queued: nobody would send them
                left = self._waiting.popleft()
                left.error = redis.ConnectionError("publisher stopped")
                left.done.set()

    def _trip(self, entries: list) -> list:
        """One write of every PUBLISH, then their answers in order (an error reply is
        the caller's result; a broken link raises for the whole batch).

        On the writer's own connection, kept between batches: redis-py's pipeline costs a
        pool checkout, its bookkeeping and a `sendall` per 6 kB chunk for every batch."""
        conn = self._conn
        if conn is None:
            conn = self._conn = self.client.connection_pool.get_connection()
        try:
            packed = conn.pack_commands([("PUBLISH", ch, body) for ch, body in entries])
            conn.send_packed_command([b"".join(packed)])
            results = []
            for _ in entries:
                try:
                    results.append(conn.read_response())
                except redis.ResponseError as exc:
                    results.append(exc)
            return results
        except BaseException:
            # Answers may be left unread on this link: never reuse it (the next batch
            # dials a fresh one).
            self._conn = None
            with contextlib.suppress(Exception):
                conn.disconnect()
                self.client.connection_pool.release(conn)
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                self.client.connection_pool.release(conn)
        self.client.close()

    def __getattr__(self, name):
        # Everything else (ping, close of the pool, ...) is the plain client's.
        return getattr(self.client, name)
