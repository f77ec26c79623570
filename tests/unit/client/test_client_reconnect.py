"""The client's reconnect decisions (parley_client.transport): which attempts count as failed
(they fail over and grow the backoff) and how long it waits before the next one. The timing
itself is checked with a real relay behind a proxy in tests/integration/test_client_network.py."""

from __future__ import annotations

import pytest

from parley_client.transport import (
    MAX_BACKOFF,
    SHORT_LIVED_CONNECTION,
    failed_attempt,
    reconnect_delay,
)


def test_no_connection_is_a_failed_attempt():
    assert failed_attempt(None)


@pytest.mark.parametrize("lived", [0.0, 0.01, SHORT_LIVED_CONNECTION - 0.001])
def test_a_connection_ended_at_once_is_a_failed_attempt(lived):
    assert failed_attempt(lived)


@pytest.mark.parametrize("lived", [SHORT_LIVED_CONNECTION, 2.5, 3600.0])
def test_a_connection_that_lived_resets_the_backoff(lived):
    assert not failed_attempt(lived)


def test_the_delay_doubles_from_0_2_s_to_the_cap():
    assert [reconnect_delay(k, 1.0) for k in range(6)] == [0.2, 0.4, 0.8, 1.6, 3.2, MAX_BACKOFF]
    assert reconnect_delay(100, 1.0) == MAX_BACKOFF  # no overflow however long the outage


def test_the_jitter_scales_the_delay():
    assert reconnect_delay(0, 0.7) == pytest.approx(0.14)
    assert reconnect_delay(10, 1.3) == pytest.approx(MAX_BACKOFF * 1.3)
