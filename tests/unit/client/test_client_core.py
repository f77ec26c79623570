"""ChatCore driven without terminal or sockets: two cores wired through an in-memory relay."""

from __future__ import annotations

import json

import pytest

from parley_client.core import State
from parley_crypto import identity


def secure(pair):
    pair.connect()
    assert pair.a.core.state is State.SECURE
    assert pair.b.core.state is State.SECURE
    return pair


def test_handshake_makes_both_sides_secure_with_the_same_safety_number(pair):
    secure(pair)
    na, nb = pair.a.core.safety_number(), pair.b.core.safety_number()
    assert na == nb and len(na) == 60 and na.isdigit()
    assert pair.a.kinds("secure")[-1].data["safety_number"] == na
    # first use pins the peer's key
    assert pair.a.contacts.get("demo").key_id == pair.b.core.me.public.key_id
    assert pair.a.contacts.get("demo").label == "bob"


def test_text_round_trip_receipt_empties_the_outbox(pair):
    secure(pair)
    pair.a.core.submit("hello bob")
    assert len(pair.a.core.outbox) == 1
    pair.pump()
    assert pair.b.texts() == ["hello bob"]
    assert pair.b.kinds("message")[0].data["from"] == "alice"
    assert len(pair.a.core.outbox) == 0
    assert len(pair.a.kinds("delivered")) == 1


def test_nothing_on_the_wire_is_plaintext(pair):
    secure(pair)
    pair.a.core.submit("attack at dawn")
    pair.pump()
    assert "attack at dawn" not in json.dumps([p for _, _, p in pair.wire_log], default=str)
    assert pair.b.texts() == ["attack at dawn"]


def test_messages_typed_before_the_peer_arrives_are_sent_once_secure(pair):
    pair.a.core.connected()
    pair.a.core.submit("early one")
    assert pair.a.core.state is State.WAITING
    assert not [e for _, e, _ in pair.wire_log if e == "message"]
    pair.connect()
    assert pair.b.texts() == ["early one"]
    assert len(pair.a.core.outbox) == 0


def test_resend_after_timeout_is_deduplicated_but_receipted_again(pair, clock):
    secure(pair)
    lost_receipts = []

    def drop_receipts_to_alice(to, event, payload):
        if to == "alice" and event == "received_message" and not lost_receipts:
            lost_receipts.append(payload)
            return []
        return [payload]

    pair.tamper = drop_receipts_to_alice
    pair.a.core.submit("say it once")
    pair.pump()
    assert len(pair.a.core.outbox) == 1  # receipt was lost
    pair.a.core.tick()
    pair.pump()
    assert len(pair.a.core.outbox) == 1  # not due yet
    clock.now += pair.a.core.resend_after
    pair.a.core.tick()
    pair.pump()
    assert pair.b.texts() == ["say it once"]  # shown once, though it arrived twice
    assert len(pair.a.core.outbox) == 0  # the second receipt got through


def test_outbox_is_resealed_after_the_peer_reconnects(pair):
    secure(pair)
    pair.b.online = False  # bob's link is cut; the relay drops what is sent to him
    pair.a.core.submit("one")
    pair.a.core.submit("two")
    pair.pump()
    assert pair.b.texts() == []
    pair.b.core.disconnected()
    pair.a.core.handle("peer_left", {"name": "bob"})
    assert pair.a.core.state is State.PEER_LEFT
    pair.connect()  # bob is back: KEY_EXCHANGE, fresh handshake, outbox re-sealed
    assert pair.b.texts() == ["one", "two"]
    assert len(pair.a.core.outbox) == 0


def test_duplicates_across_sessions_are_dropped_by_id(pair):
    secure(pair)
    pair.a.core.submit("only once")
    (pending,) = list(pair.a.core.outbox)
    pair.pump()
    assert len(pair.a.core.outbox) == 0
    # alice lost the receipt (say she reconnected first): the text is still in her outbox
    pair.a.core.outbox.add(pending.message, pending.to)
    pair.connect()  # new session, sequence numbers start over; only the id can catch it
    assert pair.b.texts() == ["only once"]
    assert len(pair.a.core.outbox) == 0


def test_replayed_envelope_is_rejected_reported_and_not_shown_twice(pair):
    secure(pair)

    def replay(to, event, payload):
        return [payload, payload] if event == "received_message" and to == "bob" else [payload]

    pair.tamper = replay
    pair.a.core.submit("no echo")
    pair.pump()
    assert pair.b.texts() == ["no echo"]
    errors = [e.text for e in pair.b.kinds("error")]
    assert any("rejected message" in t for t in errors), errors
    assert pair.b.core.state is State.SECURE


def test_reordered_envelopes_open_and_show_in_order_once(pair, clock):
    secure(pair)
    held, swapped = [], []

    def swap(to, event, payload):
        if to == "bob" and event == "received_message" and not held and not swapped:
            held.append(payload)
            swapped.append(True)  # swap only the first two envelopes
            return []
        if held and to == "bob" and event == "received_message":
            return [payload, held.pop()]
        return [payload]

    pair.tamper = swap
    pair.a.core.submit("first")
    pair.a.core.submit("second")
    pair.pump()
    # The ratchet opens out-of-order envelopes (skipped message keys); the core still shows
    # texts in the sender's order, each once.
    assert swapped and not held
    assert pair.b.kinds("error") == []
    clock.now += pair.a.core.resend_after
    pair.a.core.tick()
    pair.pump()
    assert pair.b.texts() == ["first", "second"]
    assert len(pair.a.core.outbox) == 0


def test_changed_key_blocks_sending_until_trust(pair, clock):
    secure(pair)
    # bob comes back with a different key under the same name (or a MITM pretends to be him)
    impostor = identity.Identity.generate("bob")
    pair.b.core.me = impostor
    pair.connect()
    warning = pair.a.kinds("key_changed")
    assert warning and "CHANGED" in warning[0].text and "/trust" in warning[0].text
    assert pair.a.core.blocked_by is not None and not pair.a.core.can_send
    sent_before = sum(1 for _, e, _ in pair.wire_log if e == "message")
    pair.a.core.submit("secret plans")
    pair.pump()
    assert sum(1 for _, e, _ in pair.wire_log if e == "message") == sent_before
    assert pair.b.texts() == []
    assert len(pair.a.core.outbox) == 1
    # messages from the changed key are withheld (not shown, not receipted)
    pair.b.core.submit("trust me")
    pair.pump()
    assert pair.a.texts() == []
    assert any("withheld" in e.text for e in pair.a.kinds("error"))
    assert pair.a.core.trust()
    pair.pump()
    # typed for the old key: the new key gets it only when the user says so, naming both keys
    assert pair.b.texts() == []
    held = pair.a.kinds("warning")[-1].text
    assert "/forward" in held and pair.b.core.me.public.key_id[:16] in held
    assert pair.a.core.forward() == 1
    pair.pump()
    assert pair.b.texts() == ["secret plans"]
    assert pair.a.contacts.get("demo").key_id == impostor.public.key_id
    assert pair.a.contacts.get("demo").label == "bob"  # the user's label stays
    clock.now += pair.b.core.resend_after
    pair.b.core.tick()
    pair.pump()
    assert pair.a.texts() == ["trust me"]


def test_the_changed_side_is_told_once_that_its_key_is_not_accepted(pair, clock):
    secure(pair)
    pair.b.core.me = identity.Identity.generate("bob")  # bob's new laptop
    pair.connect()
    assert pair.a.core.blocked_by is not None
    pair.b.core.submit("it is me")
    pair.pump()
    for _ in range(3):  # bob resends; alice withholds each copy
        clock.now += pair.b.core.resend_after
        pair.b.core.tick()
        pair.pump()
    notices = pair.b.kinds("peer_notice")
    assert len(notices) == 1 and "has not accepted your key yet" in notices[0].text
    assert pair.b.texts() == [] and pair.a.texts() == []
    assert len(pair.b.core.outbox) == 1  # still waiting, not dropped


def test_trust_without_a_changed_key_does_nothing(pair):
    secure(pair)
    before = pair.a.contacts.all()
    assert pair.a.core.trust() is False
    assert pair.a.contacts.all() == before


def test_long_conversation_ratchets_without_new_handshakes(pair):
    secure(pair)
    first = pair.a.core.session
    for i in range(8):
        pair.a.core.submit(f"m{i}")
        pair.pump()
    assert pair.b.texts() == [f"m{i}" for i in range(8)]
    assert pair.a.core.session is first  # one handshake; the ratchet renews the keys
    keys = {p["dh"] for who, event, p in pair.wire_log if event == "message" and who == "alice"}
    assert len(keys) >= 8  # a DH step per turn (each text is answered by a receipt)
    assert len(pair.a.core.outbox) == 0


def test_envelope_arriving_before_our_session_is_kept_and_opened(pair):
    pair.a.core.connected()
    pair.b.core.connected()
    pair.a.core.handle("KEY_EXCHANGE", 1)
    pair.b.core.handle("KEY_EXCHANGE", 1)
    # Hold alice's KEY_CONFIRM to bob: she becomes secure (bob's confirmation reached her)
    # and sends, and her message overtakes her confirmation (a reordering network).
    held = []

    def hold(to, event, payload):
        if to == "bob" and event == "KEY_CONFIRM_BC" and not held:
            held.append(payload)
            return []
        return [payload]

    pair.tamper = hold
    pair.pump()
    assert held and pair.a.core.state is State.SECURE and pair.b.core.session is None
    pair.tamper = lambda to, event, payload: [] if event == "received_message" else [payload]
    pair.a.core.submit("racing ahead")
    msgs = [q for q in pair.wire_log if q[1] == "message"]
    assert msgs
    pair.b.core.handle("received_message", msgs[-1][2])  # before alice's confirmation
    assert pair.b.texts() == [] and pair.b.core.state is not State.SECURE
    pair.tamper = None
    pair.queue.clear()
    pair.b.core.handle("KEY_CONFIRM_BC", held[0])
    pair.pump()
    assert pair.b.texts() == ["racing ahead"]


def test_peer_left_and_relay_error_are_reported(pair):
    secure(pair)
    pair.a.core.handle("peer_left", {"name": "bob"})
    assert pair.a.core.state is State.PEER_LEFT
    assert any("bob left" in e.text for e in pair.a.kinds("info"))
    pair.a.core.handle("error", {"code": "rate_limited", "message": "slow down"})
    err = pair.a.kinds("relay_error")[-1]
    assert err.data["code"] == "rate_limited" and "slow down" in err.text


def test_legacy_peer_gets_a_clear_refusal(pair):
    pair.a.core.connected()
    pair.a.core.handle("KEY_EXCHANGE", 1)
    pair.a.core.handle("ELGAMAL_PK_BC", "55")
    refused = pair.a.kinds("refused")
    assert refused and "original unauthenticated protocol" in refused[0].text
    assert pair.a.core.state is State.REFUSED
    pair.a.core.handle("received_message", json.dumps({"message": "aGk=", "iv": "aXY="}))
    assert pair.a.core.state is State.REFUSED


HOSTILE = [
    ("ELGAMAL_PK_BC", None),
    ("ELGAMAL_PK_BC", {"v": 1}),
    ("ELGAMAL_PK_BC", {"v": 1, "name": "bob", "group": "ffdhe2048", "y": "zz"}),
    ("ELGAMAL_PK_BC", {"v": 1, "name": "bob", "group": "ffdhe2048", "y": "1"}),
    ("ELGAMAL_PK_BC", {"v": 1, "name": "bob", "group": "nope", "y": "5"}),
    ("ELGAMAL_PK_BC", {"v": 99, "name": "bob", "group": "ffdhe2048", "y": "5"}),
    ("ELGAMAL_PK_BC", ["a", "list"]),
    ("DEFF_HELLMAN_PK_BC", {"v": 1, "dh": "ff" * 600, "nonce": "00", "hash": "sha256"}),
    ("DEFF_HELLMAN_PK_BC", "not json"),
    ("DIFF_HELLMAN_PK_BC", {"v": 1, "dh": 7, "nonce": [], "hash": 3, "sig": "x"}),
    ("received_message", None),
    ("received_message", 12345),
    ("received_message", "plain text"),
    ("received_message", {}),
    ("received_message", {"v": 1, "seq": 99, "iv": "00", "ct": "00", "mac": "00", "sig": {}}),
    ("received_message", {"v": 1, "seq": "1" * 5000, "iv": [], "ct": {}, "mac": None}),
    ("peer_left", "garbage"),
    ("error", ["weird"]),
    ("SOMETHING_ELSE", {"x": 1}),
]


@pytest.mark.parametrize(("event", "payload"), HOSTILE)
def test_hostile_payloads_are_reported_not_raised_and_change_nothing(pair, event, payload):
    secure(pair)
    session, peer = pair.a.core.session, pair.a.core.peer
    pins = pair.a.contacts.all()
    before = len(pair.a.events)
    pair.a.core.handle(event, payload)  # must not raise
    new = pair.a.events[before:]
    assert new, "every bad payload is reported"
    if event != "peer_left":
        assert any(e.kind in ("error", "relay_error", "refused") for e in new)
        for e in new:
            assert "\n" not in e.text and "Traceback" not in e.text
    assert pair.a.contacts.all() == pins
    if event == "peer_left":
        assert pair.a.core.state is State.PEER_LEFT  # the relay's word on presence counts
        pair.connect()
    else:
        assert pair.a.core.session is session and pair.a.core.peer is peer
        assert pair.a.core.state is State.SECURE
        assert not pair.queue, "junk must not trigger a new handshake"
    # and the conversation still works afterwards
    pair.a.core.submit("still fine")
    pair.b.core.submit("me too")
    pair.pump()
    assert pair.b.texts()[-1] == "still fine"
    assert pair.a.texts()[-1] == "me too"


def test_tampered_envelope_is_rejected(pair):
    secure(pair)

    def flip(to, event, payload):
        if event == "received_message" and to == "bob" and isinstance(payload, dict):
            bad = dict(payload)
            ct = bad["ct"]
            bad["ct"] = ("0" if ct[0] != "0" else "1") + ct[1:]
            return [bad]
        return [payload]

    pair.tamper = flip
    pair.a.core.submit("integrity")
    pair.pump()
    assert pair.b.texts() == []
    assert any("rejected message" in e.text for e in pair.b.kinds("error"))


@pytest.mark.parametrize("options", [{"deniable": True}, {"hash": "sha1"}])
def test_deniable_and_sha1_modes_still_deliver(make_pair, options):
    pair = secure(make_pair(**options))
    pair.a.core.submit("mode check")
    pair.pump()
    assert pair.b.texts() == ["mode check"]
    envelopes = [p for _, e, p in pair.wire_log if e == "message"]
    if options.get("deniable"):
        assert all(env["sig"] is None for env in envelopes)
    else:
        assert all(env["sig"] is not None for env in envelopes)


def test_a_large_outbox_is_paced_not_dropped(pair, clock):
    from parley_client.messages import SEND_BURST

    pair.a.core.connected()
    total = int(SEND_BURST) + 30
    for i in range(total):
        pair.a.core.submit(f"backlog {i}")
    pair.connect()
    assert len(pair.b.texts()) == SEND_BURST  # the burst goes out at once
    clock.now += 2.0
    pair.a.core.tick()
    pair.pump()
    assert pair.b.texts() == [f"backlog {i}" for i in range(total)]
    # Receipts are paced too (core.RECEIPT_RATE): all of them within a few seconds more.
    for _ in range(10):
        clock.now += 1.0
        pair.b.core.tick()
        pair.pump()
    assert len(pair.a.core.outbox) == 0


def test_too_long_text_is_refused_up_front_not_queued_forever(pair):
    from parley_client.messages import MAX_BODY_BYTES

    secure(pair)
    assert pair.a.core.submit("é" * MAX_BODY_BYTES) is None
    assert len(pair.a.core.outbox) == 0
    assert "not sent" in pair.a.kinds("error")[-1].text
    big = "x" * (MAX_BODY_BYTES - 100)
    assert pair.a.core.submit(big) is not None
    pair.pump()
    assert pair.b.texts() == [big]
    sealed = [p for _, e, p in pair.wire_log if e == "message"][0]
    assert len(json.dumps(sealed)) < 65536  # fits the relay's default payload limit


def test_peer_text_with_terminal_escapes_is_neutralised_for_display():
    from parley_client.events import printable

    assert printable("hi\x1b[2J\nthere\u202e") == "hi\\x1b[2J\\x0athere\\u202e"
    assert printable("grüße ✓\tok") == "grüße ✓\tok"


def test_replayed_pinned_identity_alone_does_not_lift_the_block(pair):
    secure(pair)
    real_bob = pair.b.core.me
    pair.b.core.me = identity.Identity.generate("bob")  # the impostor
    pair.connect()
    assert pair.a.core.blocked_by is not None
    # an attacker replays bob's real public identity but cannot sign a DH value with it
    pair.a.core.handle("ELGAMAL_PK_BC", real_bob.public_payload())
    assert pair.a.core.blocked_by is not None and not pair.a.core.can_send
    # the real bob coming back with a full handshake does lift it
    pair.b.core.me = real_bob
    pair.connect()
    assert pair.a.core.blocked_by is None and pair.a.core.can_send
    pair.a.core.submit("welcome back")
    pair.pump()
    assert pair.b.texts() == ["welcome back"]


@pytest.mark.parametrize("seed", range(20))
def test_handshakes_converge_whatever_rounds_cross_on_the_wire(pair, seed):
    """Extra rounds (rekeys, rejoins) opened by either side at random moments, delivered in
    random interleavings: once the wire is quiet both sides share one working session."""
    import random

    rng = random.Random(seed)
    pair.a.core.connected()
    pair.b.core.connected()
    for _ in range(rng.randint(1, 4)):
        rng.choice([pair.a, pair.b]).core.handle("KEY_EXCHANGE", 1)
        pair.pump_random(rng, steps=rng.randint(0, 4))
    pair.pump_random(rng)
    assert pair.a.core.state is State.SECURE and pair.b.core.state is State.SECURE
    assert pair.a.core.safety_number() == pair.b.core.safety_number()
    before_a = len(pair.a.kinds("error"))
    pair.a.core.submit(f"ping {seed}")
    pair.b.core.submit(f"pong {seed}")
    pair.pump()
    assert pair.b.texts() == [f"ping {seed}"] and pair.a.texts() == [f"pong {seed}"]
    assert len(pair.a.kinds("error")) == before_a  # nothing rejected once settled
    assert len(pair.a.core.outbox) == 0 and len(pair.b.core.outbox) == 0


def test_an_injected_identity_alone_raises_no_alarm_and_pins_nothing(pair):
    secure(pair)
    pins = pair.a.contacts.all()
    stranger = identity.Identity.generate("bob")
    pair.a.core.handle("ELGAMAL_PK_BC", stranger.public_payload())
    pair.a.core.handle("ELGAMAL_PK_BC", identity.Identity.generate("zed").public_payload())
    assert not pair.a.kinds("key_changed")
    assert pair.a.core.blocked_by is None and pair.a.core.can_send
    assert pair.a.contacts.all() == pins
    pair.a.core.submit("unaffected")
    pair.pump()
    assert pair.b.texts()[-1] == "unaffected"


def test_secure_only_after_the_peers_key_confirmation(pair):
    dropped = []

    def drop_confirms(to, event, payload):
        if event == "KEY_CONFIRM_BC":
            dropped.append((to, payload))
            return []
        return [payload]

    pair.tamper = drop_confirms
    pair.connect()
    assert dropped and pair.a.core.state is not State.SECURE
    assert pair.b.core.state is not State.SECURE and pair.a.kinds("secure") == []
    pair.a.core.submit("waits")
    assert [q for q in pair.wire_log if q[1] == "message"] == []  # outbox does not flush
    pair.tamper = None
    for to, payload in dropped:
        bad = dict(payload, mac="00" * 32)
        pair.sides[to].core.handle("KEY_CONFIRM_BC", bad)  # forged: reported, not secure
        assert pair.sides[to].core.state is not State.SECURE
        assert "key confirmation" in pair.sides[to].kinds("error")[-1].text
        pair.sides[to].core.handle("KEY_CONFIRM_BC", payload)
    pair.pump()
    assert pair.a.core.state is State.SECURE and pair.b.core.state is State.SECURE
    assert pair.b.texts() == ["waits"]


def test_v1_peer_is_refused_with_one_clear_line(pair):
    pair.a.core.connected()
    pair.a.core.handle("KEY_EXCHANGE", 1)
    v1 = {"v": 1, "name": "bob", "group": "ffdhe2048", "y": "4"}
    pair.a.core.handle("ELGAMAL_PK_BC", v1)
    assert pair.a.core.state is State.REFUSED
    refused = pair.a.kinds("refused")
    line = "bob runs an older Parley (protocol v1); both sides need v2"
    assert [e.text for e in refused] == [line]


def test_legacy_sha1_is_shown_and_refused_by_default(tmp_path, clock):
    from tests.unit.client.conftest import Pair

    both = Pair(tmp_path / "both", clock, hash="sha1")
    both.connect()
    assert both.a.core.state is State.SECURE
    assert any("legacy SHA-1" in e.text for e in both.a.kinds("info"))
    mixed = Pair(tmp_path / "mixed", clock)
    mixed.b.core._hs_options["hash"] = "sha1"  # bob chose legacy, alice did not
    mixed.connect()
    assert mixed.a.core.state is not State.SECURE
    assert any("legacy SHA-1" in e.text for e in mixed.a.kinds("error"))
