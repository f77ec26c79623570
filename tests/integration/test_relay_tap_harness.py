"""The attack tests' harness (scripts/relay_tap.py + tests/support/tap.py) cannot pass a
scene its policy did not decide: when the relay gives up waiting for a decision, it delivers
the emit unchanged AND the test's Tap records that as an error (the attack tests assert
`not relay.tap.errors`). Before, the relay passed it silently: a man-in-the-middle test whose
decision came late then waited for a key change that could never come (issue 10)."""

from __future__ import annotations

import time

from tests.support.relay_clients import clients_fixture, pair  # noqa: F401 - fixture
from tests.support.servers import wait_for
from tests.support.tap import tapped_relay_fixture  # noqa: F401 - fixture


def test_a_decision_the_relay_gave_up_on_is_an_error_of_the_test(tapped_relay, clients):
    relay = tapped_relay(env={"RELAY_TAP_REPLY_TIMEOUT": "1"})

    def slow(e):  # a policy (or a stalled test process) slower than the relay waits
        if e.event == "KEY_EXCHANGE":
            time.sleep(2.5)
            return []  # too late: the relay has delivered it already
        return None

    relay.tap.policy = slow
    pair(clients, relay.url, relay.url, room="late")  # both got KEY_EXCHANGE anyway
    wait_for(lambda: relay.tap.errors, timeout=20, what="the tap's record of the relay giving up")
    assert "KEY_EXCHANGE" in relay.tap.errors[0] and "unchanged" in relay.tap.errors[0]
    assert "controller failed" in relay.log()


def test_a_timely_decision_is_no_error(tapped_relay, clients):
    relay = tapped_relay(env={"RELAY_TAP_REPLY_TIMEOUT": "5"})
    relay.tap.policy = lambda e: None
    pair(clients, relay.url, relay.url, room="timely")
    assert relay.tap.seen("KEY_EXCHANGE") and relay.tap.errors == []
