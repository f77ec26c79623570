"""Compact JSON for the hot path: every forwarded message is encoded and decoded several times
(the Socket.IO packets in and out, the bus message between replicas).

The output is exactly the standard library's (`json.dumps(obj, ensure_ascii=False,
separators=(",", ":"))`: same floats, NaN/Infinity, integers of any size, errors), it only
skips the per-call setup: `JSONEncoder.encode` builds a new C encoder object for every list
or dict it encodes, and `json.loads` of bytes first sniffs their encoding. orjson and the
like differ from `json` on integers beyond 64 bits and on float formatting, so they are not
an option (docs/operations.md, "Performance notes").

One difference: no circular-reference check. Everything encoded here was decoded from JSON
or built by the relay, so it has no cycles; a cycle would raise RecursionError instead of
ValueError.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder

_encode_str = json.encoder.encode_basestring  # the C version when available
_standard = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

if json.encoder.c_make_encoder is not None:
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
    #  skipkeys, allow_nan): what JSONEncoder.iterencode passes, markers None = no check.
    _c_encoder = json.encoder.c_make_encoder(
        None, _standard.default, _encode_str, None, ":", ",", False, False, True
    )
else:  # pragma: no cover - CPython always has the C accelerator
    _c_encoder = None


def dumps(obj) -> str:
    """`json.dumps(obj, ensure_ascii=False, separators=(",", ":"))`, faster."""
    if type(obj) is str:
        return _encode_str(obj)
    if _c_encoder is None:  # pragma: no cover
        return _standard.encode(obj)
    return "".join(_c_encoder(obj, 0))


_scan_once = json.decoder.JSONDecoder().scan_once


def loads(data: str | bytes | bytearray):
    """`json.loads(data)` for UTF-8 `data` (what the relay and its clients send)."""
    text = data.decode("utf-8", "surrogatepass") if type(data) is not str else data
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:  # not a JSON value at the start (e.g. whitespace): the long way
        return json.loads(text)
    if end != len(text):  # trailing whitespace or junk: json.loads accepts or explains it
        return json.loads(text)
    return obj
