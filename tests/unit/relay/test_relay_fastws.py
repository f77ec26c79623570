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
