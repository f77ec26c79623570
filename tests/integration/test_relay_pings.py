"""Engine.IO pings come from a timer per connection, not a sleeping greenlet (issue 14).

The relay's own ping schedule (eiobounds.BoundedSocket.schedule_ping) must keep doing what
Engine.IO's did: a PING every ping interval to a client that answers, so the client outlives
the idle timeout; a client that stops answering is dropped (test_relay_bounds covers that).
"""

from __future__ import annotations

import time

from tests.support.rawws import RawWs

# Pings every second; 3 s to answer one (a relay or test the machine held up for 1 s would
# otherwise drop a client that does answer).
PING_ARGS = ["--ping-interval", "1", "--ping-timeout", "3", "--idle-timeout", "5"]


def test_a_client_that_answers_pings_outlives_the_idle_timeout(redis_server, relay_factory):
    relay = relay_factory(redis_server.url, extra_args=PING_ARGS)
    ws = RawWs(relay.port, timeout=6)
    try:
        assert ws.connect_sio('{"room":"pinged","name":"p"}').startswith("40")
        started, pings = time.monotonic(), 0
        while time.monotonic() - started < 9:  # longer than idle timeout + ping timeout
            packet = ws.recv_text()  # raises if the relay closes the socket
            if packet == "2":
                pings += 1
                ws.send_text("3")
        elapsed = time.monotonic() - started
        # One PING per interval; half of that leaves room for a loaded machine.
        assert pings >= elapsed / 2 - 1, f"{pings} pings in {elapsed:.1f} s"
        assert relay.health()["connections"] == 1
    finally:
        ws.close()


def test_pings_stop_for_a_socket_the_client_closed(redis_server, relay_factory):
    relay = relay_factory(redis_server.url, extra_args=PING_ARGS)
    for i in range(5):
        ws = RawWs(relay.port)
        assert ws.connect_sio(f'{{"room":"gone{i}","name":"g"}}').startswith("40")
        ws.close()
    time.sleep(3)  # several ping intervals: a ping for a closed socket would log an error
    assert '"ping_failed"' not in relay.log()
    assert "Traceback" not in relay.log()
    assert relay.health()["connections"] == 0
