"""The soak's fault-effect checks can see: each says "not seen" when its evidence is missing."""

from __future__ import annotations

from tests.faults.bounds import ATTACK_RSS_BOUND_KB, Attack
from tests.faults.effects import FaultRecord, fault_effects


class FakeClient:
    def __init__(self, room: str, events: list[dict]):
        self.args = ["--room", room]
        self.events = events

    def timed_events(self):
        return [(1.0, e) for e in self.events]


class FakeSoak:
    def __init__(self, attacks: dict, victim_events: list[list[dict]]):
        self.done = sorted(attacks, key=lambda f: f.began)
        self.attacks = attacks
        self.clients = {
            "a05": FakeClient("soak05", victim_events[0]),
            "b05": FakeClient("soak05", victim_events[1]),
            "a01": FakeClient("soak01", []),
        }
        self.relays, self.proxies = [], []

    def victim(self):
        return "soak05", "a05"


def secure(fp: str) -> dict:
    return {"event": "secure", "fingerprint": fp}


def seen(soak) -> dict[str, bool]:
    return {row["action"]: row["seen"] for row in fault_effects(soak)}


def test_an_attack_is_seen_only_if_refused_and_bounded():
    ok = FaultRecord("bounds:oversized_frame:0", 1.0, 2.0)
    grew = FaultRecord("bounds:fragment_flood:1", 3.0, 4.0)
    taken = FaultRecord("bounds:binary:0", 5.0, 6.0)
    soak = FakeSoak(
        {
            ok: Attack("oversized_frame", True, 100, ""),
            grew: Attack("fragment_flood", True, ATTACK_RSS_BOUND_KB, ""),
            taken: Attack("binary", False, 0, ""),
        },
        [[], []],
    )
    assert seen(soak) == {ok.action: True, grew.action: False, taken.action: False}


def test_seat_by_name_needs_the_pair_to_have_met_only_each_other():
    fault = FaultRecord("bounds:seat_by_name:1", 1.0, 2.0)
    attack = {fault: Attack("seat_by_name", True, 0, "")}
    same = [[secure("A"), secure("A")], [secure("B")]]
    assert seen(FakeSoak(attack, same)) == {fault.action: True}
    stranger = [[secure("A")], [secure("B"), secure("EVE")]]
    assert seen(FakeSoak(attack, stranger)) == {fault.action: False}
    changed = [[secure("A"), {"event": "key_changed"}], [secure("B")]]
    assert seen(FakeSoak(attack, changed)) == {fault.action: False}
