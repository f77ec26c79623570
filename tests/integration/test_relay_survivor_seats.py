"""The fault soak's sequence in small: Redis restarted empty, then one relay SIGKILLed and
restarted. The pairs sitting on the surviving relay must keep their seats throughout.

The soak (tests/faults) once showed a pair on the survivor both told `peer_left` about
each other and about themselves ~60 s after the other relay died, then one of them refused
with `room_full` on every reconnect. These tests assert the invariants that run broke: no
`peer_left` for a live pair, messages flow, a reconnect with the same secret resumes.
"""

from __future__ import annotations

import os
import signal
import time

import redis
import socketio

from parley_relay.redis_store import RESYNC_KEY, room_key
from tests.support.relay_clients import (
    clients_fixture,  # noqa: F401 - fixture
    new_instance,
    new_secret,
    seat_auth,
    seat_sids,
)
from tests.support.servers import wait_for

# Short, so prune and fencing happen within seconds; a live relay the machine holds up
# keeps its lease for 2 s (renewals every 1 s).
HEARTBEAT = 3.0
ARGS = ["--heartbeat-seconds", str(HEARTBEAT), "--connect-rate", "off"]


def _resynced(redis_url: str, room: str, sids: set[str]) -> bool:
    raw = redis.Redis.from_url(redis_url)
    return set(seat_sids(redis_url, room)) == sids and not raw.exists(RESYNC_KEY)


def _resume(clients, url: str, auth: dict, timeout: float = 30):
    """Connect like a client retrying: fresh client per try; return it and the refusal codes
    met on the way ("unavailable" while a relay recovers is fine, "room_full" never is)."""
    codes: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = clients(url, auth)
        try:
            return c.connect(), codes
        except socketio.exceptions.ConnectionError:
            err = c.connect_errors[0] if c.connect_errors else None
            data = err.get("data") if isinstance(err, dict) else None
            codes.append(data.get("code", "?") if isinstance(data, dict) else "no-answer")
            c.close()
            time.sleep(0.3)
    raise AssertionError(f"{auth['name']} could not resume: {codes}")


def _exchange(a, b, text: str) -> None:
    a.emit("message", f"{text} from a")
    b.wait_for_payload("received_message", f"{text} from a", timeout=15)
    b.emit("message", f"{text} from b")
    a.wait_for_payload("received_message", f"{text} from b", timeout=15)


def test_pairs_on_the_survivor_keep_their_seats(redis_server, relay_factory, clients):
    r0 = relay_factory(redis_server.url, extra_args=ARGS)
    r1 = relay_factory(redis_server.url, extra_args=ARGS)
    sa, ia, sb, ib = new_secret(), new_instance(), new_secret(), new_instance()
    # pair "mix": a on r0 (killed later, fails over to r1), b on r1 the whole time
    a = clients(r0.url, seat_auth("mix", "a02", sa, ia)).connect()
    b = clients(r1.url, seat_auth("mix", "b02", sb, ib)).connect()
    # pair "home": both on r1 the whole time
    sc, ic, sd, id_ = new_secret(), new_instance(), new_secret(), new_instance()
    c = clients(r1.url, seat_auth("home", "c", sc, ic)).connect()
    d = clients(r1.url, seat_auth("home", "d", sd, id_)).connect()
    for x in (a, b, c, d):
        x.wait_for("KEY_EXCHANGE")

    redis_server.stop()
    time.sleep(0.5)
    redis_server.start()  # same port, empty
    want = {a.sio.get_sid(), b.sio.get_sid()}
    wait_for(lambda: _resynced(redis_server.url, "mix", want), timeout=30, what="mix restored")
    home = {c.sio.get_sid(), d.sio.get_sid()}
    wait_for(lambda: _resynced(redis_server.url, "home", home), timeout=30, what="home restored")
    _exchange(a, b, "after redis")
    _exchange(c, d, "after redis")

    os.kill(r0.proc.pid, signal.SIGKILL)
    r0.proc.wait(10)
    a2, codes = _resume(clients, r1.url, seat_auth("mix", "a02", sa, ia))
    assert "room_full" not in codes, codes
    a2.wait_for("KEY_EXCHANGE", timeout=15)
    r0.start()  # a new replica on the same port, as the soak does
    # past several leases: r0's dead replica is pruned, r1 keeps renewing its own
    time.sleep(4 * HEARTBEAT)
    _exchange(a2, b, "after the kill")
    _exchange(c, d, "after the kill")
    for x in (b, c, d, a2):
        assert x.named("peer_left") == [], (x.events, r1.log()[-3000:])
        assert not x.disconnected.is_set(), r1.log()[-3000:]
    assert set(seat_sids(redis_server.url, "mix")) == {a2.sio.get_sid(), b.sio.get_sid()}

    # the same client process reconnecting (e.g. after a network cut) resumes its seat
    a2.close()
    a3, codes = _resume(clients, r0.url, seat_auth("mix", "a02", sa, ia))
    assert "room_full" not in codes, codes
    a3.wait_for("KEY_EXCHANGE", timeout=15)
    _exchange(a3, b, "after the reconnect")


def test_survivor_presumed_dead_fences_and_its_members_resume(redis_server, relay_factory, clients):
    """The trigger seen in the soak: the survivor stalls past its lease (a loaded machine)
    right after the other relay came back, and is pruned. Its members must get their own
    seats back by secret, never `room_full`, and nobody is told that they themselves left."""
    r0 = relay_factory(redis_server.url, extra_args=ARGS)
    r1 = relay_factory(redis_server.url, extra_args=ARGS)
    sa, ia, sb, ib = new_secret(), new_instance(), new_secret(), new_instance()
    a = clients(r1.url, seat_auth("stall", "a07", sa, ia)).connect()
    b = clients(r1.url, seat_auth("stall", "b07", sb, ib)).connect()
    a.wait_for("KEY_EXCHANGE")
    b.wait_for("KEY_EXCHANGE")
    redis_server.stop()
    time.sleep(0.5)
    redis_server.start()
    want = {a.sio.get_sid(), b.sio.get_sid()}
    wait_for(lambda: _resynced(redis_server.url, "stall", want), timeout=30, what="restored")
    os.kill(r1.proc.pid, signal.SIGSTOP)
    try:
        raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
        wait_for(
            lambda: seat_sids(redis_server.url, "stall") == ["", ""],
            timeout=30,
            what="r0 prunes the stalled r1",
        )
        assert raw.hlen(room_key("stall", "seats")) == 2  # reserved for their secrets
    finally:
        os.kill(r1.proc.pid, signal.SIGCONT)
    # r1 lets both go, told "unavailable" (retry: resume by secret): its lease loop fences,
    # or its janitor round, when its timer fires first after the stop, drops the connections
    # Redis no longer lists (r7 saw the second and waited for a "fenced" line in vain).
    wait_for(lambda: r1.health()["connections"] == 0, timeout=20, what="r1 drops its members")
    for x in (a, b):
        codes = [e.get("code") for e in x.wait_for("error", timeout=10)]
        assert set(codes) == {"unavailable"}, x.events
    for x in (a, b):
        names = [p.get("name") for p in x.named("peer_left")]
        assert x.auth["name"] not in names, x.events
    a2, codes_a = _resume(clients, r0.url, seat_auth("stall", "a07", sa, ia))
    b2, codes_b = _resume(clients, r1.url, seat_auth("stall", "b07", sb, ib))
    assert "room_full" not in codes_a + codes_b, (codes_a, codes_b)
    a2.wait_for("KEY_EXCHANGE", timeout=15)
    _exchange(a2, b2, "after the stall")
