"""The light Engine.IO packet queue and the writer that runs only while packets are queued.

Both replace per-connection objects that an idle websocket held for hours (docs/operations.md,
"Memory per connection"); these tests pin the contract Engine.IO relies on: FIFO order, the
None stop sentinel, join() after task_done(), a blocking get() woken by put(), and that every
queued packet is written once, in order, by at most one writer at a time.
"""

from __future__ import annotations

import gevent
import pytest
from engineio import packet as eio_packet

from parley_relay import eiobounds
from parley_relay.eioqueue import COMPACT_AFTER, Empty, PacketQueue


def test_fifo_and_empty():
    q = PacketQueue()
    with pytest.raises(Empty):
        q.get(block=False)
    for i in range(COMPACT_AFTER * 3):
        q.put(i)
    got = [q.get(block=False) for _ in range(COMPACT_AFTER * 2)]
    q.put("tail")
    got += [q.get(block=False) for _ in range(q.qsize())]
    assert got == list(range(COMPACT_AFTER * 3)) + ["tail"]
    assert q.empty()


def test_take_all_after_partial_get_keeps_order():
    q = PacketQueue()
    for i in range(5):
        q.put(i)
    assert q.get(block=False) == 0
    assert q.take_all() == [1, 2, 3, 4]
    assert q.empty() and q.qsize() == 0


def test_blocking_get_is_woken_by_put_and_times_out_when_nothing_comes():
    q = PacketQueue()
    waiter = gevent.spawn(q.get, timeout=5)
    gevent.sleep(0)
    q.put("x")
    assert waiter.get(timeout=60) == "x"
    with pytest.raises(Empty):
        q.get(timeout=0.01)


def test_join_waits_for_task_done():
    q = PacketQueue()
    assert q.join(timeout=0)
    q.put("a")
    q.put("b")
    assert not q.join(timeout=0.01)
    q.get(block=False)
    q.task_done()
    joiner = gevent.spawn(q.join, 5)
    gevent.sleep(0)
    assert not joiner.ready()
    q.get(block=False)
    q.task_done()
    assert joiner.get(timeout=60) is True
    with pytest.raises(ValueError):
        q.task_done()


class FakeWs:
    """The websocket end the writer sends to; each send yields, as a socket write may."""

    def __init__(self, fail_after: int | None = None):
        self.sent: list[str] = []
        self.closed = 0
        self.fail_after = fail_after

    def send(self, text):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise OSError("peer gone")
        gevent.sleep(0)
        self.sent.append(text)

    def close(self):
        self.closed += 1


class FakeServer:
    ping_interval = 25
    ping_timeout = 20

    def create_queue(self):
        return None  # replaced by PacketQueue in BoundedSocket.__init__


def make_socket(ws: FakeWs) -> eiobounds.BoundedSocket:
    sock = eiobounds.BoundedSocket(FakeServer(), "sid")
    sock._direct = ws
    return sock


def message(text: str):
    return eio_packet.Packet(eio_packet.MESSAGE, data=text)


def test_writer_sends_everything_in_order_and_then_ends():
    ws = FakeWs()
    sock = make_socket(ws)
    for i in range(50):
        sock.queue.put(message(str(i)))
        sock.queued_bytes += eiobounds.packet_bytes(message(str(i)))
        sock._wake_writer()
        if i % 7 == 0:
            gevent.sleep(0)  # the writer runs between some of the sends
    first = sock._flusher
    assert first is not None
    gevent.wait([first], timeout=5)
    assert ws.sent == [f"4{i}" for i in range(50)]
    assert sock._flusher is None, "no writer greenlet is left while nothing is queued"
    assert sock.queued_bytes == 0
    assert sock.queue.join(timeout=0)


def test_only_one_writer_at_a_time():
    ws = FakeWs()
    sock = make_socket(ws)
    sock.queue.put(message("a"))
    sock._wake_writer()
    writer = sock._flusher
    sock.queue.put(message("b"))
    sock._wake_writer()
    assert sock._flusher is writer
    gevent.wait([writer], timeout=5)
    assert ws.sent == ["4a", "4b"]


def test_stop_sentinel_closes_the_websocket_once():
    ws = FakeWs()
    sock = make_socket(ws)
    sock.queue.put(message("bye"))
    sock.queue.put(None)
    sock.queue.put(message("after the close"))
    sock._flush()
    assert ws.sent == ["4bye"]
    assert ws.closed == 1
    assert sock._direct is None
    assert sock.queue.join(timeout=0), "every item is marked done, also those not sent"


def test_a_failed_write_drops_the_rest_and_closes():
    ws = FakeWs(fail_after=1)
    sock = make_socket(ws)
    for text in ("a", "b", "c"):
        sock.queue.put(message(text))
    sock._flush()
    assert ws.sent == ["4a"]
    assert ws.closed == 1
    assert sock._direct is None and sock._flusher is None
    assert sock.queue.empty() and sock.queue.join(timeout=0)
