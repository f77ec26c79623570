"""A real `parley` batch process fed by a hostile peer through a real relay.

The peer ("mallory") is a real socketio.Client in the same room. It first throws malformed
identity and handshake payloads at the client while the handshake is open, then completes a
genuine handshake (with parley_crypto, its own identity) and throws hypothesis-generated junk:
wrong types, nested junk, near-valid envelopes with one field broken, tampered and replayed
envelopes, and valid envelopes around plaintexts that are not Parley messages.

For every bad payload the client must print exactly one `error` line (and nothing else
happens: no message shown, no traceback, the process stays alive); afterwards it still shows
a valid message from the peer and exits cleanly (status 0) when its input ends.
PARLEY_FUZZ_EXAMPLES scales the number of cases (default 150).
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_crypto import handshake, identity
from tests.support.clients import BatchClient

ROOM = "hostile"
EVENTS = ["ELGAMAL_PK", "DEFF_HELLMAN_PK", "DIFF_HELLMAN_PK", "KEY_CONFIRM", "message"]


def examples() -> int:
    return int(os.environ.get("PARLEY_FUZZ_EXAMPLES") or 150)


class Mallory:
    """The hostile peer: a Socket.IO client that can also speak the real protocol."""

    def __init__(self, url: str):
        self.me = identity.Identity.generate("mallory")
        self.hs = handshake.Handshake(self.me, ROOM)
        self.session = None
        self.victim_dh = None
        self.got = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("KEY_EXCHANGE", lambda *_: self._note())
        self.sio.on("ELGAMAL_PK_BC", self._on_identity)
        self.sio.on("DEFF_HELLMAN_PK_BC", self._on_dh)
        self.sio.on("KEY_CONFIRM_BC", self._on_confirm)
        self.victim_confirm = None
        self.sio.on("received_message", lambda *_: None)
        self.sio.connect(url, auth={"room": ROOM, "name": "mallory"}, transports=["websocket"])

    def _note(self) -> None:
        with self.got:
            self.got.notify_all()

    def _on_identity(self, payload) -> None:
        self.hs.receive_identity(payload)

    def _on_dh(self, payload) -> None:
        with self.got:
            self.victim_dh = payload
            self.got.notify_all()

    def _on_confirm(self, payload) -> None:
        with self.got:
            self.victim_confirm = payload
            self.got.notify_all()

    def wait_victim_dh(self, timeout: float = 20) -> None:
        with self.got:
            assert self.got.wait_for(lambda: self.victim_dh is not None, timeout)

    def complete_handshake(self, timeout: float = 20) -> None:
        """Send our real identity, DH payload and KEY_CONFIRM; the session follows the
        victim's KEY_CONFIRM."""
        self.sio.emit("ELGAMAL_PK", self.hs.identity_payload())
        self.sio.emit("DEFF_HELLMAN_PK", self.hs.dh_payload())
        self.sio.emit("KEY_CONFIRM", self.hs.receive_dh(self.victim_dh))
        with self.got:
            assert self.got.wait_for(lambda: self.victim_confirm is not None, timeout)
        self.session = self.hs.receive_confirm(self.victim_confirm)

    def sealed_text(self, body: str, kind: str = "text") -> dict:
        plain = {"id": os.urandom(8).hex(), "ts": time.time(), "kind": kind, "body": body}
        return self.session.seal(json.dumps(plain).encode())


# ----- strategies ---------------------------------------------------------------------------
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    # Socket.IO refuses JSON integers over 100 digits (and the relay drops the sender).
    st.integers(min_value=2**64, max_value=2**330),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
junk = st.recursive(
    scalar,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
junk_dict = st.dictionaries(st.text(max_size=8), junk, max_size=5)


def _not_v1(value) -> bool:
    """A v1 payload before any session is a refusal (one clear line, tested in the unit
    tests), not an error line; keep it out of the pre-session cases."""
    return not (type(value) is int and value == 1)


no_v1 = junk.filter(_not_v1)
near_identity = st.fixed_dictionaries(
    {"v": st.one_of(st.just(2), no_v1), "name": st.one_of(st.just("mallory"), junk),
     "group": st.one_of(st.just("ffdhe2048"), junk), "y": junk}
)  # fmt: skip
near_dh = st.fixed_dictionaries(
    {"v": st.one_of(st.just(2), no_v1), "dh": st.one_of(st.just("ab" * 100), junk),
     "nonce": junk, "hash": st.one_of(st.just("sha256"), junk),
     "deniable": st.one_of(st.just(False), junk)}
)  # fmt: skip
near_confirm = st.fixed_dictionaries(
    {"v": st.one_of(st.just(2), junk), "mac": st.one_of(st.just("ab" * 32), junk),
     "sig": st.one_of(st.fixed_dictionaries({"r": junk, "s": junk}), junk)}
)  # fmt: skip
pre_junk_dict = junk_dict.filter(lambda d: _not_v1(d.get("v")))
huge_str = st.sampled_from(["z" * 40_000, "9" * 30_000, "{" * 20_000])


def field_break(envelope_keys=("v", "dh", "pn", "n", "ct", "mac", "sig")):
    """(key, replacement or None to delete) for one envelope field."""
    return st.tuples(st.sampled_from(envelope_keys), st.one_of(st.none(), junk))


# ----- the test -----------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_client_reports_every_bad_payload_and_keeps_working(redis_server, relay_factory, tmp_path):
    relay = relay_factory(redis_server.url)
    victim = BatchClient("victim", ROOM, relay.url, tmp_path / "victim")
    mallory = None
    cases = {"pre_session": 0, "post_session": 0}
    try:
        victim.start()
        mallory = Mallory(relay.url)
        mallory.wait_victim_dh()

        def inject(event: str, payload) -> None:
            """Send one bad payload; exactly one more error line must follow, promptly."""
            before = len(victim.of("error"))
            shown = len(victim.of("message"))
            mallory.sio.emit(event, payload)
            victim.wait_event(
                lambda e: len(victim.of("error")) > before, timeout=10, what=f"error for {event}"
            )
            time.sleep(0.05)  # a second error line for the same payload would land by now
            assert len(victim.of("error")) == before + 1, victim.of("error")[before:]
            assert len(victim.of("message")) == shown
            assert victim.proc.poll() is None, victim.stderr()

        # 1. While the handshake is open: malformed identities and handshake payloads.
        @settings(max_examples=max(10, examples() // 3), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(st.one_of(
            st.tuples(st.just("ELGAMAL_PK"), st.one_of(pre_junk_dict, near_identity)),
            st.tuples(st.sampled_from(["DEFF_HELLMAN_PK", "DIFF_HELLMAN_PK"]),
                      st.one_of(pre_junk_dict, near_dh)),
            st.tuples(st.just("KEY_CONFIRM"), st.one_of(pre_junk_dict, near_confirm)),
        ))  # fmt: skip
        def before_session(case):
            cases["pre_session"] += 1
            inject(*case)

        before_session()

        # 2. A genuine handshake: the client must still complete it.
        mallory.complete_handshake()
        victim.wait_secure(timeout=20)
        mallory.sio.emit("message", mallory.sealed_text("hello after junk"))
        victim.wait_event(lambda e: e.get("text") == "hello after junk", 10, "first message")
        replay = mallory.sealed_text("once only")
        mallory.sio.emit("message", replay)
        victim.wait_event(lambda e: e.get("text") == "once only", 10, "second message")

        # 3. With a session: every event with every kind of junk.
        @settings(max_examples=examples(), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(st.one_of(
            st.tuples(st.sampled_from(EVENTS), st.one_of(junk_dict, st.text(max_size=50),
                                                         huge_str)),
            st.tuples(st.just("ELGAMAL_PK"), near_identity),
            st.tuples(st.sampled_from(["DEFF_HELLMAN_PK", "DIFF_HELLMAN_PK"]), near_dh),
            st.tuples(st.just("KEY_CONFIRM"), near_confirm),
            st.tuples(st.just("broken"), field_break()),
            st.tuples(st.just("plaintext"), st.one_of(st.binary(max_size=80), junk)),
            st.tuples(st.just("replay"), st.none()),
        ))  # fmt: skip
        def with_session(case):
            cases["post_session"] += 1
            kind, value = case
            if kind == "broken":
                envelope = mallory.sealed_text("never shown")
                key, replacement = value
                if replacement == envelope[key]:
                    replacement = None  # unchanged would be valid: break it by deleting
                if replacement is None:
                    del envelope[key]
                else:
                    envelope[key] = replacement
                inject("message", envelope)
            elif kind == "plaintext":
                data = value if isinstance(value, bytes) else json.dumps(value).encode()
                inject("message", mallory.session.seal(data))
            elif kind == "replay":
                inject("message", replay)
            else:
                inject(kind, value)

        with_session()

        # 4. Still responsive: a valid message is shown, then a clean exit on EOF.
        mallory.sio.emit("message", mallory.sealed_text("still here"))
        victim.wait_event(lambda e: e.get("text") == "still here", 10, "message after fuzz")
        assert victim.received() == ["hello after junk", "once only", "still here"]
        status = victim.wait(timeout=30)
        errors = victim.of("error")
        print(
            "\nCLIENT FUZZ FIGURES:",
            json.dumps({**cases, "error_lines": len(errors), "exit": status}),
        )
        assert status == 0, victim.stderr()
        assert "Traceback" not in victim.stderr(), victim.stderr()
        assert all(line.startswith("{") for line in victim.raw), victim.raw[:5]
        assert len(errors) == cases["pre_session"] + cases["post_session"]
    finally:
        if mallory is not None:
            mallory.sio.disconnect()
        victim.cleanup()
