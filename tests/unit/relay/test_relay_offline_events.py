"""Offline-delivery event parsing (mailbox.py) and settings: hostile input is a Rejection
with a one-line reason, never another exception; limits come from the settings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley_relay.config import ConfigError, load_settings
from parley_relay.core import Rejection
from parley_relay.mailbox import (
    MAX_ACK_IDS,
    MAX_ONE_TIME_PER_EVENT,
    Limits,
    parse_ack,
    parse_fetch,
    parse_prekeys,
)

junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=30),
        st.binary(max_size=8),
    ),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(["ids", "bundle", "one_time", "id", "dh", "x"]), kids)
    ),
    max_leaves=20,
)
argses = st.one_of(st.just(()), junk.map(lambda j: (j,)), st.lists(junk, max_size=3).map(tuple))


@settings(max_examples=400, deadline=None)
@given(argses)
def test_hostile_payloads_are_rejected_cleanly(args):
    for parse in (parse_ack, parse_prekeys, parse_fetch):
        try:
            parse(args)
        except Rejection as rej:
            assert rej.code == "bad_request"
            assert rej.message and "\n" not in rej.message


def test_valid_shapes():
    ids = [f"{1700000000000 + i}-0" for i in range(MAX_ACK_IDS)]
    assert parse_ack(({"ids": ids},)) == ids
    assert parse_ack(({"ids": ["1-0", "1-0"]},)) == ["1-0"]  # duplicates collapse
    keys = [{"id": f"{i:016x}", "dh": "ab"} for i in range(MAX_ONE_TIME_PER_EVENT)]
    assert parse_prekeys(({"bundle": {"v": 2}, "one_time": keys},)) == ({"v": 2}, keys)
    assert parse_prekeys(({},)) == (None, [])
    assert parse_fetch(({},)) is None and parse_fetch(()) is None


@pytest.mark.parametrize(
    "args",
    [
        ({"ids": ["1-0"] * (MAX_ACK_IDS + 1)},),
        ({"ids": ["18446744073709551616-0"]},),  # 2**64: no Redis id
        ({"ids": ["1-18446744073709551616"]},),
        ({"ids": ["1-0 "]},),
        ({"ids": ["1"]},),
    ],
)
def test_ack_bounds(args):
    with pytest.raises(Rejection):
        parse_ack(args)


def test_offline_settings_defaults_env_and_checks():
    s = load_settings([], {})
    assert Limits.from_settings(s) == Limits(1000, 10_485_760, 604_800_000, 200)
    env = {
        "PARLEY_MAILBOX_MAX_MESSAGES": "5",
        "PARLEY_MAILBOX_MAX_BYTES": "70000",
        "PARLEY_MAILBOX_TTL": "1.5",
        "PARLEY_PREKEYS_MAX": "7",
    }
    assert Limits.from_settings(load_settings([], env)) == Limits(5, 70000, 1500, 7)
    env = {"PARLEY_MAILBOX_TOTAL_BYTES": "100000", "PARLEY_PREKEYS_FETCH_WINDOW": "2.5"}
    limits = Limits.from_settings(load_settings([], env))
    assert (limits.total_bytes, limits.fetch_window_ms) == (100_000, 2500)
    for argv in (
        ["--mailbox-total-bytes", "1000"],  # below one largest message
        ["--prekeys-fetch-window", "0"],
        ["--mailbox-max-messages", "0"],
        ["--mailbox-max-bytes", "1000"],  # below one largest message (65536)
        ["--mailbox-ttl", "-1"],
        ["--prekeys-max", "many"],
    ):
        with pytest.raises(ConfigError):
            load_settings(argv, {})
