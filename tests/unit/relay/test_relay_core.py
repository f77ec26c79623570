"""Relay core without sockets: auth parsing, routing decisions, limits, token bucket."""

from __future__ import annotations

import hashlib

import pytest

from parley_relay.config import RateLimit
from parley_relay.core import (
    DEFAULT_NAME,
    DEFAULT_ROOM,
    FORWARD,
    Identity,
    Rejection,
    Router,
    TokenBucket,
    parse_auth,
    payload_size,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- auth -------------------------------------------------------------------------------------


def test_no_auth_is_the_original_clients_lobby():
    assert parse_auth(None, None) == Identity(DEFAULT_ROOM, DEFAULT_NAME)
    assert parse_auth({}, None) == Identity("lobby", "anonymous")


def test_auth_room_and_name():
    assert parse_auth({"room": "team-1.a_b", "name": "Alice Ö"}, None) == Identity(
        "team-1.a_b", "Alice Ö"
    )


def test_names_are_any_printable_unicode_in_nfc():
    decomposed = "Zoe\u0308"  # e + combining diaeresis
    assert parse_auth({"name": decomposed}, None).name == "Zo\u00eb"
    assert parse_auth({"name": "Łukasz Żółć"}, None).name == "Łukasz Żółć"
    assert parse_auth({"name": "李小龙"}, None).name == "李小龙"
    for hostile in ("bob\u202e", "a\u200bb", "\x1b[31m"):  # bidi override, zero width, escape
        with pytest.raises(Rejection):
            parse_auth({"name": hostile}, None)


@pytest.mark.parametrize(
    "room", ["", "a b", "x" * 65, "r|1", "r:1", "ümlaut", 5, None, ["r"], "room\n"]
)
def test_bad_room_names_are_bad_request(room):
    with pytest.raises(Rejection) as err:
        parse_auth({"room": room}, None)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("name", ["", " alice", "alice ", "a\nb", "x" * 65, 7, {"n": 1}])
def test_bad_names_are_bad_request(name):
    with pytest.raises(Rejection) as err:
        parse_auth({"name": name}, None)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("auth", ["lobby", 5, ["room"], True])
def test_auth_must_be_an_object(auth):
    with pytest.raises(Rejection) as err:
        parse_auth(auth, None)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("auth", [None, {}, {"token": "nope"}, {"token": 123}, {"token": ""}])
def test_token_required_when_configured(auth):
    with pytest.raises(Rejection) as err:
        parse_auth(auth, "s3cret")
    assert err.value.code == "unauthorized"
    assert err.value.payload() == {"code": "unauthorized", "message": err.value.message}


def test_right_token_accepted_and_checked_before_room():
    assert parse_auth({"token": "s3cret", "room": "r"}, "s3cret").room == "r"
    # A wrong token is unauthorized even if the room is also bad: no information leak.
    with pytest.raises(Rejection) as err:
        parse_auth({"token": "x", "room": "bad room"}, "s3cret")
    assert err.value.code == "unauthorized"


# -- payload size -----------------------------------------------------------------------------


def test_payload_size_counts_utf8_bytes_and_compact_json():
    assert payload_size("abc") == 3
    assert payload_size("é") == 2
    assert payload_size({"a": 1}) == len('{"a":1}')
    assert payload_size({"k": "€"}) == len('{"k":"€"}'.encode())


def test_payload_size_is_the_forwarded_form_not_the_text():
    """L2: escapes count (NUL is 6 bytes in JSON), non-ASCII counts UTF-8 (not 12 per emoji)."""
    assert payload_size("\x00" * 10) == 60
    assert payload_size('a"b') == 4
    assert payload_size("😀" * 16384) == 65536
    assert payload_size({"t": "😀"}) == len('{"t":"😀"}'.encode())


# -- token bucket -----------------------------------------------------------------------------


def test_token_bucket_burst_then_refill():
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=2.0, burst=3), clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back at 2/s
    assert bucket.allow() is True
    assert bucket.allow() is False
    clock.now += 100  # never more than the burst
    assert sum(bucket.allow() for _ in range(10)) == 3


def test_token_bucket_refused_call_spends_nothing():
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=1.0, burst=1), clock)
    assert bucket.allow()
    for _ in range(5):
        assert not bucket.allow()
    clock.now += 1.0
    assert bucket.allow()


# -- routing ----------------------------------------------------------------------------------


def make_router(limit=None, max_bytes=100):
    clock = FakeClock()
    router = Router(max_bytes, limit, clock)
    conn = router.new_connection("sid1", Identity("room1", "alice"))
    return router, conn, clock


@pytest.mark.parametrize("event", sorted(FORWARD))
@pytest.mark.parametrize("payload", ["55", {"v": 1, "y": "ab"}])
def test_every_event_forwards_to_its_bc_name(event, payload):
    router, conn, _ = make_router()
    fwd = router.route(conn, event, (payload,))
    assert fwd.event == FORWARD[event]
    assert fwd.room == "room1"
    assert conn.sent == 1


def test_forward_names_match_the_wire_protocol():
    assert FORWARD == {
        "ELGAMAL_PK": "ELGAMAL_PK_BC",
        "DEFF_HELLMAN_PK": "DEFF_HELLMAN_PK_BC",
        "DIFF_HELLMAN_PK": "DIFF_HELLMAN_PK_BC",
        "KEY_CONFIRM": "KEY_CONFIRM_BC",
        "message": "received_message",
    }


@pytest.mark.parametrize(
    "event,args",
    [
        ("nope", ("x",)),
        ("KEY_EXCHANGE", (1,)),
        ("received_message", ("x",)),
        (5, ("x",)),
        ("message", ()),
        ("message", ("a", "b")),
        ("message", (5,)),
        ("message", (None,)),
        ("message", (["x"],)),
        ("message", (b"bytes",)),
        ("message", (True,)),
    ],
)
def test_bad_requests_are_rejected_and_change_nothing(event, args):
    router, conn, _ = make_router()
    with pytest.raises(Rejection) as err:
        router.route(conn, event, args)
    assert err.value.code == "bad_request"
    assert conn.sent == 0


def test_payload_over_limit():
    router, conn, _ = make_router(max_bytes=10)
    assert router.route(conn, "message", ("x" * 10,)).event == "received_message"
    with pytest.raises(Rejection) as err:
        router.route(conn, "message", ("x" * 11,))
    assert err.value.code == "payload_too_large"
    with pytest.raises(Rejection):
        router.route(conn, "message", ({"k": "x" * 5},))
    assert conn.sent == 1


def test_rate_limit_applies_per_connection():
    router, conn, clock = make_router(limit=RateLimit(1.0, 2))
    other = router.new_connection("sid2", Identity("room1", "bob"))
    router.route(conn, "message", ("a",))
    router.route(conn, "message", ("b",))
    with pytest.raises(Rejection) as err:
        router.route(conn, "message", ("c",))
    assert err.value.code == "rate_limited"
    # Another connection has its own bucket.
    assert router.route(other, "message", ("x",)).event == "received_message"
    clock.now += 1.0
    assert router.route(conn, "message", ("d",)).event == "received_message"


def test_no_rate_limit_when_disabled():
    router, conn, _ = make_router(limit=None)
    for _ in range(1000):
        router.route(conn, "message", ("x",))
    assert conn.sent == 1000


def test_note_rejection_counts_codes():
    router, conn, _ = make_router()
    router.note_rejection(conn, "bad_request")
    router.note_rejection(conn, "bad_request")
    assert conn.rejected == {"bad_request": 2}


def test_secret_and_instance_give_the_seat_hash_never_the_secret():
    secret, instance = "ab" * 32, "cd" * 16
    ident = parse_auth({"room": "r", "name": "a", "secret": secret, "instance": instance}, None)
    assert ident.secret_hash == hashlib.sha256(bytes.fromhex(secret)).hexdigest()
    assert ident.secret_hash != secret and ident.instance == instance
    assert parse_auth({"room": "r"}, None).secret_hash == ""  # the original client


@pytest.mark.parametrize(
    "extra",
    [
        {"secret": "AB" * 32, "instance": "cd" * 16},  # upper case
        {"secret": "ab" * 31, "instance": "cd" * 16},  # short
        {"secret": "ab" * 32},  # no instance
        {"secret": "ab" * 32, "instance": "cd" * 15},
        {"secret": 5, "instance": "cd" * 16},
        {"secret": "ab" * 32, "instance": ["x"]},
    ],
)
def test_malformed_secret_or_instance_is_bad_request(extra):
    with pytest.raises(Rejection) as err:
        parse_auth({"room": "r", "name": "a", **extra}, None)
    assert err.value.code == "bad_request"
