"""codec: the hot path's JSON is exactly the standard library's (same text, same values, same
errors), and the JSON-only Socket.IO packet encodes as the stock one does."""

from __future__ import annotations

import json
import math

import pytest
import socketio

from parley_relay import codec
from parley_relay.app import JsonPacket, Utf8Json

VALUES = [
    "",
    "plain",
    'Zoë \u00e9\u4e2d\U0001f600 tab\t nl\n quote" backslash\\ nul\x00 \x1f',
    "\ud800",  # a lone surrogate: json writes it as is
    0,
    -1,
    2**64 + 1,
    -(2**200),
    0.1,
    -0.0,
    1e300,
    1e-310,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
    None,
    [],
    {},
    ["m", "sid", "received_message", "1|2.5|" + "x" * 1000],
    {"ok": True, "id": "abc", "nested": [{"a": [1, 2.5, None]}, {"ü": "ß"}], "": 0},
    ("a", "tuple"),
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
]


def standard(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_is_the_standard_text(value):
    assert codec.dumps(value) == standard(value)


@pytest.mark.parametrize("bad", [b"bytes", {"k": b"bytes"}, {1, 2}, object(), {("t",): 1}])
def test_dumps_refuses_what_json_refuses(bad):
    with pytest.raises(TypeError):
        standard(bad)
    with pytest.raises(TypeError):
        codec.dumps(bad)


def same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


TEXTS = [standard(v) for v in VALUES] + [
    " [1, 2] ",
    '{"a" : 1 }\n',
    "123456789012345678901234567890",
    "NaN",
    "-Infinity",
    '"\\u00e9\\ud83d\\ude00"',
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_loads_is_the_standard_value(text):
    assert same(codec.loads(text), json.loads(text))
    assert same(codec.loads(text.encode("utf-8", "surrogatepass")), json.loads(text))


@pytest.mark.parametrize("junk", ["", " ", "[1,", "[1] x", "{'a': 1}", "nul", "[1]]", "\x00"])
def test_loads_refuses_what_json_refuses(junk):
    with pytest.raises(ValueError):
        json.loads(junk)
    with pytest.raises(ValueError):
        codec.loads(junk)


def test_utf8json_packets_use_the_codec_and_keep_other_options():
    obj = {"a": [1, 2**70, 0.1], "é": "x"}
    assert Utf8Json.dumps(obj, separators=(",", ":")) == standard(obj)
    assert Utf8Json.dumps(obj) == json.dumps(obj, ensure_ascii=False)
    assert Utf8Json.dumps(obj, indent=2) == json.dumps(obj, ensure_ascii=False, indent=2)


@pytest.mark.parametrize(
    "kind, data, id_",
    [
        (socketio.packet.EVENT, ["received_message", {"k": [1, "é", None]}], None),
        (socketio.packet.EVENT, ["KEY_EXCHANGE", 1], None),
        (socketio.packet.ACK, [{"ok": True, "id": "x"}], 7),
    ],
)
def test_json_packet_encodes_as_the_stock_packet(kind, data, id_):
    class StockPacket(socketio.packet.Packet):
        json = Utf8Json

    ours = JsonPacket(kind, data=data, id=id_)
    ours.json = Utf8Json
    assert ours.encode() == StockPacket(kind, data=data, id=id_).encode()
    decoded = JsonPacket(encoded_packet=ours.encode())
    assert (decoded.packet_type, decoded.data, decoded.id) == (kind, data, id_)
