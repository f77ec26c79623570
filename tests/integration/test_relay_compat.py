"""The original design's client, unchanged, through the relay (also across two replicas).

It connects with no auth, waits for KEY_EXCHANGE, sends its ElGamal key as a decimal string,
answers ELGAMAL_PK_BC with its signed DH key as a JSON *string* (older clients call the event
DEFF_HELLMAN_PK and the field deff_public_key), and then chats with JSON strings
{"message": b64, "iv": b64}, expecting received_message with exactly the same string.
Plain socketio.Client with default transports (polling, then upgrade), as the original used.
"""

from __future__ import annotations

import base64
import json
import os
import threading

import pytest
import socketio


class LegacyClient:
    """Follows the original client's event sequence; records what it receives."""

    def __init__(self, url: str, elgamal_pk: int, dh_event: str, dh_field: str):
        self.url = url
        self.sio = socketio.Client(reconnection=False)
        self.pk = elgamal_pk
        self.dh_event, self.dh_field = dh_event, dh_field
        self.peer_pk: str | None = None
        self.peer_dh: str | None = None
        self.received: list[str] = []
        self.key_exchange = threading.Event()
        self.ready = threading.Event()
        self.got_message = threading.Event()
        self.sio.on("KEY_EXCHANGE", self.on_key_exchange)
        self.sio.on("ELGAMAL_PK_BC", self.on_elgamal)
        for name in ("DIFF_HELLMAN_PK_BC", "DEFF_HELLMAN_PK_BC"):
            self.sio.on(name, self.on_dh)
        self.sio.on("received_message", self.on_message)

    def on_key_exchange(self, data):
        assert data == 1
        self.key_exchange.set()
        self.sio.emit("ELGAMAL_PK", str(self.pk))

    def on_elgamal(self, data):
        self.peer_pk = data
        body = {self.dh_field: self.pk * 7 + 3, "s1": 12345, "s2": 67890}
        self.sio.emit(self.dh_event, json.dumps(body))

    def on_dh(self, data):
        self.peer_dh = data
        self.ready.set()

    def on_message(self, data):
        self.received.append(data)
        self.got_message.set()

    def send(self, text: str) -> str:
        wire = json.dumps(
            {
                "message": base64.b64encode(text.encode()).decode(),
                "iv": base64.b64encode(os.urandom(16)).decode(),
            }
        )
        self.sio.emit("message", wire)
        return wire


@pytest.fixture(params=["two-replicas", "one-replica", "in-memory"])
def urls(request, relay_factory):
    if request.param == "in-memory":
        relay = relay_factory(None)
        return relay.url, relay.url
    r1, r2 = request.getfixturevalue("two_relays")
    return (r1.url, r2.url) if request.param == "two-replicas" else (r1.url, r1.url)


def test_original_client_handshake_and_chat(urls):
    a = LegacyClient(urls[0], 55, "DIFF_HELLMAN_PK", "diff_public_key")
    b = LegacyClient(urls[1], 77, "DEFF_HELLMAN_PK", "deff_public_key")  # older version
    try:
        a.sio.connect(a.url)
        b.sio.connect(b.url)
        for c in (a, b):
            assert c.key_exchange.wait(10)
            assert c.ready.wait(10), "handshake did not complete"
        assert a.peer_pk == "77" and b.peer_pk == "55"
        assert json.loads(a.peer_dh) == {"deff_public_key": 77 * 7 + 3, "s1": 12345, "s2": 67890}
        assert json.loads(b.peer_dh) == {"diff_public_key": 55 * 7 + 3, "s1": 12345, "s2": 67890}
        wire = a.send("hello bob")
        assert b.got_message.wait(10)
        assert b.received == [wire]
        back = b.send("hi alice")
        assert a.got_message.wait(10)
        assert a.received == [back]
    finally:
        a.sio.disconnect()
        b.sio.disconnect()
