"""guard.py and fastws.py pieces that need no server: buckets, log sampling, keepalive, frames."""

from __future__ import annotations

import io
import logging
import socket

import pytest

from parley_relay import fastws, guard
from parley_relay.config import RateLimit
from tests.support.rawws import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, frame, frame_header


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_address_buckets_limit_each_address_on_its_own():
    clock = FakeClock()
    buckets = guard.AddressBuckets(RateLimit(2.0, 3), clock)
    assert [buckets.allow("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert buckets.allow("10.0.0.2")  # another address has its own bucket
    clock.now += 0.5  # one token back at 2/s
    assert buckets.allow("10.0.0.1") and not buckets.allow("10.0.0.1")


def test_address_buckets_forget_refilled_addresses():
    clock = FakeClock()
    buckets = guard.AddressBuckets(RateLimit(10.0, 10), clock)
    buckets.prune_every = 100
    for i in range(99):
        buckets.allow(f"10.0.{i // 256}.{i % 256}")
    clock.now += 1.0  # every bucket is full again: nothing worth remembering
    buckets.allow("10.9.9.9")  # the 100th new address triggers a prune
    assert len(buckets.buckets) == 1


def _record(event: str, **fields) -> logging.LogRecord:
    record = logging.LogRecord("parley_relay", logging.INFO, __file__, 1, event, (), None)
    record.fields = fields
    return record


def test_sampled_events_let_a_burst_through_then_count_what_they_drop():
    clock = FakeClock()
    sampler = guard.SampledEvents(rate=1.0, burst=3, clock=clock)
    passed = [sampler.filter(_record("connect_refused", code="x")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert all(sampler.filter(_record("joined")) for _ in range(10))  # not a sampled event
    clock.now += 1.0
    record = _record("connect_refused", code="x")
    assert sampler.filter(record)
    assert record.fields == {"code": "x", "suppressed": 7}


def test_accepted_sockets_get_tcp_keepalive():
    with socket.socket() as s:
        guard.set_keepalive(s)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            idle = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
            assert idle == guard.KEEPALIVE_IDLE_SECONDS


def test_connection_cap_stays_below_the_open_file_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert guard.connection_cap(10**9) <= soft - guard.FD_RESERVE
    assert guard.connection_cap(5) == 5


# -- frames, read from an in-memory stream ---------------------------------------------------


class Closed(Exception):
    pass


def reader(data: bytes, limit: int = 1000) -> fastws.BoundedWebSocket:
    ws = fastws.BoundedWebSocket.__new__(fastws.BoundedWebSocket)
    stream = io.BytesIO(data)
    ws.stream, ws.raw_read, ws.closed, ws.handler, ws.environ = stream, stream.read, False, None, {}
    fastws.BoundedWebSocket.max_message_bytes = limit
    return ws


@pytest.mark.parametrize(
    "data,code",
    [
        (frame_header(OP_TEXT, 1001), 1009),  # refused from the header: no payload follows
        (frame_header(OP_TEXT, 1 << 62), 1009),
        (frame(OP_TEXT, b"a" * 600, fin=False) + frame_header(OP_CONT, 600), 1009),
        (frame(OP_TEXT, b"a", mask=None), 1002),
        (frame(OP_BINARY, b"a"), 1003),
        (frame(OP_PING, b"p", fin=False), 1002),
        (frame(OP_CONT, b"a"), 1002),
    ],
)
def test_refused_frames_name_their_close_code(data, code):
    with pytest.raises(fastws.FrameRefused) as refused:
        reader(data).read_message()
    assert refused.value.code == code


def test_large_frames_are_unmasked_in_chunks_with_the_mask_aligned():
    payload = bytes(range(256)) * 1000  # 256,000 bytes: four chunks
    mask = b"\x01\x02\x03\x04"
    wire = frame(OP_TEXT, fastws.unmask(mask, payload), mask=mask)
    header, got = reader(wire, limit=len(payload)).read_frame()
    assert got == payload and header.length == len(payload)


def test_close_frames_carry_the_status_code():
    sent = []
    ws = reader(b"")
    ws.raw_write = sent.append
    ws.close(1009, "message too big")
    assert sent[0][2:4] == b"\x03\xf1" and sent[0][4:] == b"message too big"
    assert ws.closed
