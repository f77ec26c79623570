"""The hostile-relay policies (tests/support/attacks.py) attack whatever shape the relay's
emits take: an attack test whose policy misses the attack would test nothing (and it did: a
split KEY_EXCHANGE, one emit per member, let the honest handshake through)."""

from __future__ import annotations

from tests.support.attacks import Mitm
from tests.support.tap import Emit

ALICE = {"sid": "s-alice", "name": "alice", "room": "duo"}
BOB = {"sid": "s-bob", "name": "bob", "room": "duo"}


def key_exchange(n: int, *recipients: dict) -> Emit:
    route = {"to": [r["sid"] for r in recipients]}
    return Emit(n, "KEY_EXCHANGE", 1, route, None, list(recipients))


def delivered(actions: list[dict]) -> list[tuple[str, str]]:
    return [(a["route"]["to"], a["event"]) for a in actions]


def test_one_room_emit_starts_both_relay_handshakes():
    actions = Mitm()(key_exchange(1, ALICE, BOB))
    for sid in ("s-alice", "s-bob"):
        assert [e for to, e in delivered(actions) if to == sid] == [
            "KEY_EXCHANGE", "ELGAMAL_PK_BC", "DEFF_HELLMAN_PK_BC"]  # fmt: skip


def test_one_emit_per_member_is_held_until_both_are_known():
    mitm = Mitm()
    assert mitm(key_exchange(1, BOB)) == []  # held: the honest handshake must not start
    assert mitm.sides == {}
    actions = mitm(key_exchange(2, ALICE))
    told = sorted(delivered(actions)[:2])
    assert told == [("s-alice", "KEY_EXCHANGE"), ("s-bob", "KEY_EXCHANGE")]
    assert set(mitm.sides) == {"s-alice", "s-bob"}
    assert mitm.sides["s-alice"]["peer"] == "s-bob" and mitm.sides["s-bob"]["peer"] == "s-alice"
