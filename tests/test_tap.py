"""The tap's own reader (tests/support/tap.py): a relay that goes away under it must end the
reader quietly, not leave an exception in a thread (r41 printed one: the relay had closed the
tap socket before the reply to its last emit was sent)."""

from __future__ import annotations

import json
import socket
import struct
import threading

from tests.support.tap import Tap

EMIT = {"op": "emit", "id": 1, "event": "received_message", "data": "x", "route": {"to": "s"}}


def line(message: dict) -> bytes:
    return (json.dumps(message) + "\n").encode()


def test_relay_gone_before_the_reply_ends_the_reader_quietly(monkeypatch):
    raised: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    listener = socket.create_server(("127.0.0.1", 0))
    relay_gone = threading.Event()
    decided: list[int] = []

    def policy(emit):
        decided.append(emit.id)
        assert relay_gone.wait(10), "the fake relay never closed"
        return None  # the reply then goes to a reset connection

    with listener:
        accepted: list[socket.socket] = []

        def greet() -> None:  # the relay side of the tap's handshake
            accepted.append(listener.accept()[0])
            accepted[0].sendall(line({"op": "hello"}))

        greeter = threading.Thread(target=greet, daemon=True)
        greeter.start()
        tap = Tap(listener.getsockname()[1], policy=policy)
        greeter.join(10)
        relay = accepted[0]
        relay.sendall(line(EMIT))
        # Close with a reset (no linger), so the tap's reply cannot go anywhere.
        relay.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        relay.close()
        relay_gone.set()
        tap._reader.join(10)
        tap.close()

    assert decided == [1], "the emit never reached the policy: nothing was tested"
    assert not tap._reader.is_alive()
    assert raised == []
