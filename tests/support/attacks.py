"""Hostile relay behaviours as policies for a `tests.support.tap.Tap` on a REAL relay.

Each policy is a callable `policy(emit) -> actions | None` (None = deliver unchanged) that
also records what it did, so a test can assert the attack really happened:

* `Replay`: every envelope (`received_message`) is delivered, then delivered again.
* `Reorder`: each sender's first `swaps` pairs of envelopes are delivered swapped (held back
  until the next one comes, released after `hold_s` if none does); swapping forever would
  be a denial of service no client can beat.
* `Reroute`: a sender's first `count` envelopes go to a member of ANOTHER room instead.
* `Mitm`: answers each side's handshake with its own keys under the other side's name,
  drops the real handshake, and re-seals every envelope: it reads everything.

They work on whatever the relay emits; only `Mitm` speaks the protocol (parley_crypto).
"""

from __future__ import annotations

import threading
from collections import Counter

from tests.support.tap import Emit, Tap, to

ENVELOPE = "received_message"


class Replay:
    """Deliver every envelope twice."""

    def __init__(self) -> None:
        self.replayed = 0

    def __call__(self, e: Emit):
        if e.event != ENVELOPE:
            return None
        self.replayed += 1
        return [e.passed(), e.passed()]


class Reorder:
    """Swap each sender's first `swaps` pairs of consecutive envelopes."""

    def __init__(self, tap: Tap, swaps: int = 3, hold_s: float = 1.0):
        self.tap, self.swaps, self.hold_s = tap, swaps, hold_s
        self.swapped: Counter[str] = Counter()
        self._held: dict[str, tuple[Emit, threading.Timer]] = {}
        self._lock = threading.Lock()

    def __call__(self, e: Emit):
        sender = e.sender_name
        if e.event != ENVELOPE or sender is None or self.swapped[sender] >= self.swaps:
            return None
        with self._lock:
            if sender in self._held:
                first, timer = self._held.pop(sender)
                timer.cancel()
                self.swapped[sender] += 1
                return [e.passed(), first.replaced(first.data)]  # second, then first
            timer = threading.Timer(self.hold_s, self._release, (sender, e))
            self._held[sender] = (e, timer)
            timer.start()
            return []

    def _release(self, sender: str, e: Emit) -> None:
        with self._lock:
            if self._held.get(sender, (None,))[0] is not e:
                return
            del self._held[sender]
        self.tap.inject(e.replaced(e.data))

    def close(self) -> None:
        with self._lock:
            for _, timer in self._held.values():
                timer.cancel()


class Reroute:
    """Send `sender`'s first `count` envelopes to the member named `victim` (any room)."""

    def __init__(self, sender: str, victim: str, count: int = 1):
        self.sender, self.victim, self.count = sender, victim, count
        self.victim_sid: str | None = None
        self.rerouted: list[dict] = []

    def __call__(self, e: Emit):
        for member in e.recipients:  # learn where the victim is from what it receives
            if member["name"] == self.victim:
                self.victim_sid = member["sid"]
        if (
            e.event == ENVELOPE
            and e.sender_name == self.sender
            and self.victim_sid is not None
            and len(self.rerouted) < self.count
        ):
            self.rerouted.append(e.data)
            return [to(self.victim_sid, ENVELOPE, e.data)]
        return None


class Mitm:
    """A relay in the middle: its own handshake with each side, under the other's name."""

    def __init__(self, tap: Tap | None = None, hold_confirms: bool = False) -> None:
        self.sides: dict[str, dict] = {}  # sid -> {"hs", "session", "peer", "confirm"}
        self.read: list[bytes] = []
        self.failures: list[str] = []
        self._announced: dict[str, dict] = {}  # sid -> member told KEY_EXCHANGE, not started
        # Each side's KEY_CONFIRM goes out only once BOTH sides' offers are in, all in one
        # go: a side that completes first exits at once (batch: 3) and the relay's peer_left
        # would otherwise reach the other side mid-round, which drops it (no key_changed).
        # `hold_confirms`: also wait for `release()` (the test queues its text meanwhile).
        self.tap, self._hold = tap, hold_confirms
        self._confirmed = False
        self._lock = threading.Lock()

    def __call__(self, e: Emit):
        if e.event == "KEY_EXCHANGE":
            return self._key_exchange(e)
        side = self.sides.get(e.sender["sid"]) if e.sender else None
        if side is None:
            return None
        if e.event == "ELGAMAL_PK_BC":
            side["hs"].receive_identity(e.data)
            return []
        if e.event in ("DEFF_HELLMAN_PK_BC", "DIFF_HELLMAN_PK_BC"):
            side["confirm"] = side["hs"].receive_dh(e.data)
            return self._confirms()
        if e.event == "KEY_CONFIRM_BC":
            side["session"] = side["hs"].receive_confirm(e.data)
            return []
        if e.event == ENVELOPE:
            return self._reseal(side, e.data)
        return None

    def _key_exchange(self, e: Emit) -> list[dict]:
        """The relay announces a room in one emit to both members, or in one emit per member
        (a member still draining its backlog gets its own, after it): each is held until both
        members are known, then both are told and the relay's handshakes start at once."""
        for member in e.recipients:
            self._announced[member["sid"]] = member
        if len(self._announced) < 2:
            return []
        members, self._announced = list(self._announced.values()), {}
        return [to(m["sid"], e.event, e.data) for m in members] + self._start(members)

    @property
    def offered(self) -> bool:
        """Both sides' offers are in (their KEY_CONFIRMs are ready)."""
        return len(self.sides) == 2 and all(s.get("confirm") for s in self.sides.values())

    def _confirms(self) -> list[dict]:
        with self._lock:
            if self._confirmed or self._hold or not self.offered:
                return []
            self._confirmed = True
            return [to(sid, "KEY_CONFIRM_BC", s["confirm"]) for sid, s in self.sides.items()]

    def release(self) -> None:
        """Let the held KEY_CONFIRMs go (now, or with the second offer if not yet in)."""
        with self._lock:
            self._hold = False
        for action in self._confirms():
            self.tap.inject(action)

    def _start(self, members: list[dict]) -> list[dict]:
        from parley_crypto import handshake, identity

        actions = []
        for me, other in ((members[0], members[1]), (members[1], members[0])):
            fake = identity.Identity.generate(other["name"])
            hs = handshake.Handshake(fake, me["room"])
            self.sides[me["sid"]] = {
                "hs": hs,
                "session": None,
                "peer": other["sid"],
                "confirm": None,
            }
            actions += [
                to(me["sid"], "ELGAMAL_PK_BC", hs.identity_payload()),
                to(me["sid"], "DEFF_HELLMAN_PK_BC", hs.dh_payload()),
            ]
        return actions

    def _reseal(self, side: dict, envelope) -> list[dict]:
        target = self.sides.get(side["peer"])
        if side["session"] is None or target is None or target["session"] is None:
            return []
        try:
            plaintext = side["session"].open(envelope)
        except Exception as exc:  # noqa: BLE001 - recorded; the test asserts on it
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return []
        self.read.append(plaintext)
        return [to(side["peer"], ENVELOPE, target["session"].seal(plaintext))]
