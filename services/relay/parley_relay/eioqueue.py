"""A small packet queue for Engine.IO sockets (memory per idle connection, docs/operations.md).

Engine.IO gives every session a gevent `JoinableQueue`: three deques (items, getters,
putters; 760 bytes each even when empty) and an Event for `join()`, about 2.5 kB that an idle
connection holds for hours. `PacketQueue` keeps the same contract Engine.IO and
`eiobounds.BoundedSocket` use (put, get with block/timeout, task_done, join with timeout,
qsize) in a list plus a read index; the Events that blocked callers wait on exist only while
someone waits. Items are consumed from the front without shifting the list, so draining a long
queue (a slow consumer, up to `outbound_queue_bytes`) stays linear.
"""

from __future__ import annotations

import queue
import time

import gevent.event

Empty = queue.Empty  # what Engine.IO's poll() catches (gevent.queue.Empty is this class)

# The consumed head of the list is dropped once it is this long and at least half the list.
COMPACT_AFTER = 64


class PacketQueue:
    """FIFO of Engine.IO packets (None is the writer's stop sentinel, as in Engine.IO)."""

    __slots__ = ("_items", "_head", "_unfinished", "_readable", "_done")

    def __init__(self):
        self._items: list = []
        self._head = 0
        self._unfinished = 0
        self._readable: gevent.event.Event | None = None  # set by put() for a blocked get()
        self._done: gevent.event.Event | None = None  # set when unfinished reaches 0

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head >= len(self._items)

    def put(self, item) -> None:
        """Append `item` (never blocks: the byte cap is BoundedSocket's job)."""
        self._items.append(item)
        self._unfinished += 1
        if self._readable is not None:
            self._readable.set()

    def get(self, block: bool = True, timeout: float | None = None):
        """The oldest item; raise Empty if there is none (within `timeout` when blocking)."""
        if self.empty() and block:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.empty():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                if self._readable is None:
                    self._readable = gevent.event.Event()
                self._readable.clear()
                self._readable.wait(left)
            self._readable = None
        if self.empty():
            raise Empty
        return self._pop()

    def take_all(self) -> list:
        """Every queued item, oldest first, at once (each still needs task_done)."""
        items = self._items[self._head :] if self._head else self._items
        self._items, self._head = [], 0
        return items

    def _pop(self):
        items, head = self._items, self._head
        item = items[head]
        items[head] = None
        head += 1
        if head >= len(items):
            items.clear()
            head = 0
        elif head >= COMPACT_AFTER and head * 2 >= len(items):
            del items[:head]
            head = 0
        self._head = head
        return item

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._done is not None:
            self._done.set()
            self._done = None

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item put has been marked done; False if `timeout` ran out."""
        if self._unfinished == 0:
            return True
        if self._done is None:
            self._done = gevent.event.Event()
        return self._done.wait(timeout)
