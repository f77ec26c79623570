"""Every limit is hit and answered with its error while a well-behaved pair keeps working."""

from __future__ import annotations

import threading
import time

import pytest
import websocket

from tests.support.relay_clients import (
    clients_fixture,  # noqa: F401 - fixture
    pair,
)

MAX = 2048
RATE_PER_S, RATE_BURST = 5, 10


@pytest.fixture
def limited(redis_server, relay_factory):
    """Two replicas with a small payload limit, a tight rate limit and a token."""
    args = ["--max-message-bytes", str(MAX), "--rate-limit", f"{RATE_PER_S},{RATE_BURST}"]
    env = {"PARLEY_RELAY_TOKEN": TOKEN}
    return (
        relay_factory(redis_server.url, extra_args=args, env=env),
        relay_factory(redis_server.url, extra_args=args, env=env),
    )


TOKEN = "tok-123-long-enough-for-128-bits"


def auth(room, name, token=TOKEN):
    return {"room": room, "name": name, "token": token}


def good_pair_still_works(a, b, tag):
    a.emit("message", f"ping-{tag}")
    b.wait_for_payload("received_message", f"ping-{tag}", timeout=5)


def rate_limited_burst(client, batch: int = 3 * RATE_BURST, max_batches: int = 10):
    """Fire batches of pipelined calls until one is refused; return (acks, seconds taken)."""
    acks: list[dict] = []
    started = time.monotonic()
    for _ in range(max_batches):
        done = threading.Semaphore(0)
        batch_acks: list[dict] = []

        def acked(ack, out=batch_acks, sem=done):
            out.append(ack)
            sem.release()

        for i in range(batch):
            client.sio.emit("message", f"m{len(acks) + i}", callback=acked)
        for _ in range(batch):
            assert done.acquire(timeout=30), "an ack never came"
        acks += batch_acks
        if not all(a["ok"] for a in batch_acks):
            break
    return acks, time.monotonic() - started


def test_limits_answered_while_others_keep_working(limited, clients):
    r1, r2 = limited
    good_a = clients(r1.url, auth("good", "alice")).connect()
    good_b = clients(r2.url, auth("good", "bob")).connect()
    good_a.wait_for("KEY_EXCHANGE")
    bad = clients(r1.url, auth("bad", "mallory")).connect()
    peer = clients(r2.url, auth("bad", "peer")).connect()
    bad.wait_for("KEY_EXCHANGE")

    # payload_too_large: the error event and the negative ack, nothing forwarded.
    ack = bad.call("message", "x" * (MAX + 1))
    assert ack == {"ok": False, "code": "payload_too_large"}
    err = bad.wait_for("error")[0]
    assert err["code"] == "payload_too_large" and err["message"]
    assert bad.call("message", {"blob": "x" * MAX})["code"] == "payload_too_large"
    good_pair_still_works(good_a, good_b, 1)

    # bad_request: unknown events, wrong payload types, wrong argument counts.
    for event, args in [
        ("HACK", ("x",)),
        ("message", (5,)),
        ("message", ([1, 2],)),
        ("ELGAMAL_PK", (None,)),
        ("message", ("a", "b")),
        ("KEY_EXCHANGE", (1,)),
        ("connect", ({"room": "x"},)),
    ]:
        ack = bad.call(event, args[0]) if len(args) == 1 else None
        if ack is not None:
            assert ack == {"ok": False, "code": "bad_request"}, (event, args)
        else:
            bad.emit(event, *args)
    bad.wait_for("error", 8)
    assert all(e["code"] in ("bad_request", "payload_too_large") for e in bad.named("error"))
    good_pair_still_works(good_a, good_b, 2)

    # rate_limited: burst of 10, then refused; the bucket is per connection. The calls are
    # pipelined and their number is derived from the time they took, not assumed.
    time.sleep(RATE_BURST / RATE_PER_S)  # at least a full refill after the calls above
    acks, elapsed = rate_limited_burst(bad)
    accepted = sum(a["ok"] for a in acks)
    codes = [a.get("code") for a in acks if not a["ok"]]
    # A full bucket accepts its burst; over `elapsed` it can refill at most RATE_PER_S/s.
    assert RATE_BURST <= accepted <= RATE_BURST + RATE_PER_S * elapsed + 1, (accepted, elapsed)
    assert codes and set(codes) == {"rate_limited"}
    assert any(e["code"] == "rate_limited" for e in bad.named("error"))
    good_pair_still_works(good_a, good_b, 3)

    # Only accepted messages reached the peer, none of the rejected ones: a barrier sent
    # after a refill arrives after anything the relay forwarded before it.
    time.sleep(1 / RATE_PER_S + 0.1)
    assert bad.call("message", "barrier")["ok"]
    peer.wait_for_payload("received_message", "barrier")
    forwarded = peer.named("received_message")[:-1]
    assert len(forwarded) == accepted
    assert all(not isinstance(p, str) or len(p) <= MAX for p in forwarded)
    status, text = r1.get("/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert 'parley_relay_rejections_total{code="rate_limited"}' in text
    assert 'parley_relay_rejections_total{code="payload_too_large"} 2.0' in text


@pytest.mark.parametrize("token", [None, "", TOKEN[:-1] + "x", TOKEN[:-1], 123])
def test_wrong_or_missing_token_is_unauthorized(limited, clients, token):
    r1, _ = limited
    a = {"room": "t", "name": "x"} if token is None else auth("t", "x", token)
    err = clients(r1.url, a).try_connect()
    assert err["data"] == {"code": "unauthorized", "message": err["data"]["message"]}


def test_no_auth_at_all_is_unauthorized_when_token_set(limited, clients):
    r1, _ = limited
    assert clients(r1.url, None).try_connect()["data"]["code"] == "unauthorized"


@pytest.mark.parametrize("room", ["bad room", "x" * 65, "a|b", ""])
def test_bad_room_names_refused(two_relays, clients, room):
    r1, _ = two_relays
    err = clients(r1.url, {"room": room, "name": "n"}).try_connect()
    assert err["data"]["code"] == "bad_request"
    assert r1.health()["connections"] == 0


def test_huge_packet_costs_only_the_sender_its_connection(two_relays, clients):
    r1, r2 = two_relays
    a = clients(r1.url, {"room": "g", "name": "a"}).connect()
    b = clients(r2.url, {"room": "g", "name": "b"}).connect()
    a.wait_for("KEY_EXCHANGE")
    m = clients(r1.url, {"room": "h", "name": "m"}).connect()
    m.emit("message", "x" * 2_000_000)
    assert m.disconnected.wait(10)
    good_pair_still_works(a, b, "after-huge")
    assert r1.health()["_status"] == 200


def raw_socket(relay_url: str) -> websocket.WebSocket:
    """A hand-driven Engine.IO v4 WebSocket, Socket.IO-connected to room `raw`."""
    ws = websocket.create_connection(
        relay_url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=5
    )
    assert ws.recv().startswith("0{")  # Engine.IO open
    ws.send('40{"room":"raw","name":"r"}')
    assert ws.recv().startswith("40")  # Socket.IO connect accepted
    return ws


def assert_closed_by_relay(ws: websocket.WebSocket) -> None:
    """The relay closes the socket (pings may arrive first); a 5 s silence fails the test."""
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        for _ in range(5):
            if ws.recv() in ("", b""):
                raise ConnectionError("closed")
    ws.close()


def test_invalid_utf8_frame_closes_only_that_socket(two_relays, clients):
    """A text frame that is not UTF-8 closes that socket (1007); everyone else is served."""
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url, "u")
    ws = raw_socket(r1.url)
    ws.send(b'42["message","\xff\xfe"]', opcode=websocket.ABNF.OPCODE_TEXT)
    assert_closed_by_relay(ws)
    good_pair_still_works(a, b, "after-bad-utf8")
    assert r1.health()["_status"] == 200


@pytest.mark.parametrize("frame", ["42[", "49", b"\x00\x01", "4\xe9"])
def test_undecodable_packet_closes_that_socket_with_one_log_line(two_relays, clients, frame):
    r1, r2 = two_relays
    a, b = pair(clients, r1.url, r2.url, "p")
    ws = raw_socket(r1.url)
    ws.send_binary(frame) if isinstance(frame, bytes) else ws.send(frame)
    assert_closed_by_relay(ws)
    good_pair_still_works(a, b, "after-junk")
    log = r1.log()
    # A binary frame is refused by the websocket layer (close 1003), text junk by Socket.IO.
    assert log.count('"event": "bad_packet"') + log.count('"event": "ws_refused"') == 1
    assert "Traceback" not in log


def engineio_handshake(relay_url: str, origin: str | None) -> int:
    """HTTP status of an Engine.IO polling handshake sent with `origin` (None: no header)."""
    import requests

    headers = {"Origin": origin} if origin is not None else {}
    resp = requests.get(
        f"{relay_url}/socket.io/?EIO=4&transport=polling", headers=headers, timeout=5
    )
    return resp.status_code


def websocket_accepted(relay_url: str, origin: str) -> bool:
    """Whether a WebSocket upgrade sent with this Origin gets an Engine.IO OPEN packet."""
    url = relay_url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    try:
        ws = websocket.create_connection(url, timeout=5, origin=origin)
    except (websocket.WebSocketException, OSError):
        return False
    try:
        return ws.recv().startswith("0{")
    except (websocket.WebSocketException, OSError):
        return False
    finally:
        ws.close()


def test_cors_default_is_same_origin_only(relay_factory):
    relay = relay_factory()
    evil = "https://evil.example"
    assert engineio_handshake(relay.url, None) == 200  # the parley client sends no Origin
    assert engineio_handshake(relay.url, relay.url) == 200  # same origin
    assert engineio_handshake(relay.url, evil) == 400
    assert not websocket_accepted(relay.url, evil)
    assert websocket_accepted(relay.url, relay.url)


def test_cors_list_admits_exactly_the_listed_origins(relay_factory):
    relay = relay_factory(extra_args=["--cors-origins", "https://a.example,https://b.example"])
    assert engineio_handshake(relay.url, "https://a.example") == 200
    assert engineio_handshake(relay.url, "https://b.example") == 200
    for origin in ("https://c.example", "https://a.example.evil", "http://a.example", "null"):
        assert engineio_handshake(relay.url, origin) == 400, origin
    assert not websocket_accepted(relay.url, "https://c.example")
    assert websocket_accepted(relay.url, "https://b.example")


def test_cors_star_admits_any_origin(relay_factory):
    relay = relay_factory(extra_args=["--cors-origins", "*"])
    assert engineio_handshake(relay.url, "https://anything.example") == 200
    assert websocket_accepted(relay.url, "https://anything.example")
