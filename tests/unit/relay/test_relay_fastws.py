"""fastws: the integer XOR unmask equals gevent-websocket's byte loop; validation still holds."""

from __future__ import annotations

import os

import pytest
from geventwebsocket.websocket import Header

from parley_relay import fastws


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 125, 126, 1024, 65537])
def test_unmask_matches_reference(n):
    payload = os.urandom(n)
    mask = os.urandom(4)
    ref = Header(length=n)
    ref.mask = mask
    expected = bytes(Header.mask_payload(ref, payload))  # the library's own byte loop
    assert fastws.unmask(mask, payload) == expected
    assert fastws.unmask(mask, expected) == payload  # XOR twice is the identity


def test_leading_zero_bytes_survive():
    mask = b"\x00\x00\x00\x00"
    assert fastws.unmask(mask, b"\x00\x00ab") == b"\x00\x00ab"


def test_fast_websocket_still_rejects_invalid_utf8_at_decode():
    class Closed(Exception):
        pass

    class Probe(fastws.FastWebSocket):
        def close(self, code=None, message=b""):
            raise Closed(code)

    ws = Probe.__new__(Probe)
    ws.validate_utf8(b"\xff\xfe")  # the pass is gone...
    with pytest.raises(Closed) as err:  # ...but decoding refuses it with close code 1007
        ws._decode_bytes(b"\xff\xfe")
    assert err.value.args == (1007,)
    assert ws._decode_bytes("é".encode()) == "é"


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse unmasked server frames: (first byte, payload) each."""
    out, i = [], 0
    while i < len(data):
        b0, n = data[i], data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n = int.from_bytes(data[i : i + 2], "big")
            i += 2
        elif n == 127:
            n = int.from_bytes(data[i : i + 8], "big")
            i += 8
        out.append((b0, data[i : i + n]))
        i += n
    return out


def test_send_texts_writes_one_final_text_frame_per_message_in_one_write():
    ws = fastws.BoundedWebSocket.__new__(fastws.BoundedWebSocket)
    writes: list[bytes] = []
    ws.closed = False
    ws.raw_write = writes.append
    texts = ["4short", "4" + "é" * 100, "4" + "x" * 70_000, "2"]
    ws.send_texts(texts)
    assert len(writes) == 1
    frames = _frames(writes[0])
    assert [b0 for b0, _ in frames] == [0x81] * 4  # FIN + text opcode, never masked
    assert [p.decode("utf-8") for _, p in frames] == texts


def test_send_texts_on_a_closed_socket_raises():
    ws = fastws.BoundedWebSocket.__new__(fastws.BoundedWebSocket)
    ws.closed = True
    ws.raw_write = None
    with pytest.raises(fastws.WebSocketError):
        ws.send_texts(["4x"])
