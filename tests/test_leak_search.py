"""The shared leak search (tests/support/leaks.py) finds a secret in every spelling it claims:
a leak check that cannot see would pass while secrets leak."""

from __future__ import annotations

import base64
import json
import os

import pytest

from tests.support.leaks import find_leaks, forms, redis_repr

SECRET_TEXT = "the vault code is 8271 — grüße"
SECRET_KEY = bytes(range(200, 232))


@pytest.mark.parametrize("prefix_len", range(6))
@pytest.mark.parametrize("altchars", [None, b"-_"])
def test_base64_of_a_secret_inside_longer_bytes_is_found_at_every_offset(prefix_len, altchars):
    for secret in (SECRET_TEXT.encode(), SECRET_KEY):
        blob = os.urandom(prefix_len) + secret + os.urandom(7)
        text = base64.b64encode(blob, altchars=altchars).decode()
        assert find_leaks(f'{{"ct": "{text}"}}', {"s": secret}), (prefix_len, altchars)


def test_raw_json_escaped_hex_and_redis_escaped_forms_are_found():
    key = {"k": SECRET_KEY}
    assert find_leaks(SECRET_KEY.hex().upper(), key) == ["k (hex)"]
    assert find_leaks(f"log {redis_repr(SECRET_KEY)} end", key) == ["k (redis_bytes)"]
    assert "t (json)" in find_leaks(json.dumps({"m": SECRET_TEXT}), {"t": SECRET_TEXT})
    assert "t (raw)" in find_leaks(json.dumps({"m": SECRET_TEXT}, ensure_ascii=False),
                                   {"t": SECRET_TEXT})  # fmt: skip


def test_unrelated_ciphertext_is_not_reported():
    noise = base64.b64encode(os.urandom(4096)).decode() + os.urandom(512).hex()
    assert find_leaks(noise, {"t": SECRET_TEXT, "k": SECRET_KEY}) == []
    assert all(len(f) >= 12 for f in forms(SECRET_KEY).values())
