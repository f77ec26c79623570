"""The recording test client (tests/support/relay_clients.py) sees events in wire order.

python-engineio's threaded client runs each message's handler in a thread of its own, so a
test could record a relay's in-order stream out of order and blame the relay (seen in CI: a
mailbox drain recorded s72 before s71 at load 4). `InOrderClient` runs them one after the
other. A handler that takes a varying time (as a loaded machine makes any handler) shows it."""

from __future__ import annotations

import random
import threading
import time

from tests.support.relay_clients import clients_fixture, pair  # noqa: F401 - fixture

COUNT = 300


def test_a_burst_is_handled_in_the_order_the_relay_sent_it(relay_factory, clients):
    relay = relay_factory(env={"PARLEY_RATE_LIMIT": "off"})
    alice, bob = pair(clients, relay.url, relay.url, room="order")
    seen, done = [], threading.Event()
    jitter = random.Random(7)

    def handler(message):
        time.sleep(jitter.random() / 2000)  # 0-0.5 ms, as scheduling on a busy machine does
        seen.append(int(message["t"]))
        if len(seen) == COUNT:
            done.set()

    bob.sio.on("received_message", handler)
    for i in range(COUNT):
        alice.emit("message", {"v": 2, "t": str(i)})
    assert done.wait(60), f"{len(seen)} of {COUNT} arrived"
    assert seen == list(range(COUNT))
