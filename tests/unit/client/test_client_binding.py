"""Conversations bound to the room's contact (a key), not to the name a peer sends."""

from __future__ import annotations

from parley_client.core import State
from parley_client.messages import Outbox
from parley_client.sessions import SESSION_GRACE_SECONDS
from parley_crypto import identity


def secure(pair):
    pair.connect()
    assert pair.a.core.state is State.SECURE and pair.b.core.state is State.SECURE
    return pair


def messages_sent_by(pair, name: str) -> int:
    return sum(1 for who, e, _ in pair.wire_log if who == name and e == "message")


def bob_leaves(pair):
    pair.b.online = False
    pair.b.core.disconnected()
    pair.a.core.handle("peer_left", {"name": "bob"})


def test_a_stranger_in_the_contacts_seat_gets_nothing_and_the_text_waits_for_bob(pair, known):
    secure(pair)
    bob_leaves(pair)
    pair.a.core.submit("bob, the door code is 4711")
    pair.b.core.me = known("mallory")  # someone else takes the free seat
    before = messages_sent_by(pair, "alice")
    pair.connect()
    assert messages_sent_by(pair, "alice") == before  # not even sealed for mallory
    assert pair.b.texts() == []
    warning = pair.a.kinds("key_changed")[-1]
    assert "key of bob has CHANGED" in warning.text and "'mallory'" in warning.text
    assert any("1 message(s) wait for bob" in e.text for e in pair.a.kinds("info"))
    assert pair.a.core.status()["peer"] == "bob" and pair.a.core.status()["blocked"]
    # the real bob comes back: it is his
    pair.b.core.me = known("bob")
    pair.connect()
    assert pair.b.texts() == ["bob, the door code is 4711"]
    assert len(pair.a.core.outbox) == 0


def test_a_held_back_impostor_envelope_is_never_shown_as_the_contacts(pair, known):
    secure(pair)
    held = []

    def hold(to, event, payload):
        if to == "alice" and event == "received_message":
            held.append(payload)
            return []
        return [payload]

    bob_leaves(pair)
    pair.b.core.me = identity.Identity.generate("bob")  # an impostor under bob's name
    pair.connect()
    assert pair.a.core.blocked_by is not None
    pair.tamper = hold
    pair.b.core.submit("it is me, bob: send the code")
    pair.pump()
    pair.tamper = None
    assert held, "the relay held the impostor's envelope back"
    bob_leaves(pair)
    pair.b.core.outbox = Outbox()  # the real bob never said it
    pair.b.core.me = known("bob")
    pair.connect()
    assert pair.a.core.blocked_by is None and pair.a.core.can_send
    for envelope in held:
        pair.a.core.handle("received_message", envelope)
    assert pair.a.texts() == []
    assert any("rejected message" in e.text for e in pair.a.kinds("error"))


def test_a_held_back_text_of_bob_is_not_shown_under_another_key(pair, known):
    secure(pair)
    held = []

    def hold(to, event, payload):
        if to == "alice" and event == "received_message" and not held:
            held.append(payload)
            return []
        return [payload]

    pair.tamper = hold
    pair.b.core.submit("from the real bob")
    pair.pump()
    pair.tamper = None
    bob_leaves(pair)
    pair.b.core.me = known("carol")
    pair.connect()  # carol's key: bob's old session is closed at once
    pair.a.core.handle("received_message", held[0])
    assert pair.a.texts() == [] and not [e for e in pair.a.kinds("message")]


def test_lookalike_name_rotation_after_pinning_is_warned_and_blocked(pair):
    secure(pair)
    bob_leaves(pair)
    pair.b.core.me = identity.Identity.generate("b\u043eb")  # Cyrillic o
    pair.a.core.submit("for bob only")
    before = messages_sent_by(pair, "alice")
    pair.connect()
    warning = pair.a.kinds("key_changed")[-1]
    assert "looks like your contact 'bob'" in warning.text
    assert warning.data["lookalike"] == "bob" and not pair.a.core.can_send
    assert messages_sent_by(pair, "alice") == before and pair.b.texts() == []
    secure_events = pair.a.kinds("secure")
    assert "unknown key" in secure_events[-1].text  # never shown as bob


def test_a_lookalike_in_a_new_room_is_flagged_but_pinned(pair, pair_in):
    secure(pair)
    other = pair_in("elsewhere")
    other.a.core.guard.contacts = pair.a.contacts  # the same user's contact list
    other.b.core.me = identity.Identity.generate("b\u043eb")
    other.connect()
    flagged = [e for e in other.a.kinds("warning") if "looks like your contact" in e.text]
    assert flagged and flagged[0].data["lookalike"] == "bob"


def test_same_key_old_session_lives_only_for_the_grace_period(pair, clock):
    secure(pair)
    old = pair.b.core.session
    pair.a.core.handle("KEY_EXCHANGE", 1)  # a rekey: new session, same key
    pair.pump()
    assert pair.b.core.session is not old
    late = old.seal(b'{"id":"late1","ts":1,"kind":"text","body":"in flight"}')
    pair.a.core.handle("received_message", late)
    assert pair.a.texts() == ["in flight"]
    clock.now += SESSION_GRACE_SECONDS * 3
    late = old.seal(b'{"id":"late3","ts":1,"kind":"text","body":"still in flight"}')
    pair.a.core.handle("received_message", late)  # the peer is not on the new one yet
    assert pair.a.texts() == ["in flight", "still in flight"]
    pair.b.core.submit("on the new session")  # now it is: the grace period starts
    pair.pump()
    assert pair.a.texts()[-1] == "on the new session"
    stale = old.seal(b'{"id":"late2","ts":1,"kind":"text","body":"too late"}')
    clock.now += SESSION_GRACE_SECONDS + 0.1
    pair.a.core.handle("received_message", stale)
    assert pair.a.texts()[-1] == "on the new session"


def test_trust_then_forward_moves_queued_texts_to_the_new_key(pair):
    secure(pair)
    bob_leaves(pair)
    pair.a.core.submit("queued for the old key")
    pair.b.core.me = identity.Identity.generate("bob")
    pair.connect()
    assert pair.a.core.trust()
    pair.pump()
    assert pair.b.texts() == []
    assert pair.a.core.status()["for_other_keys"] == 1
    assert pair.a.core.discard() == 1 and len(pair.a.core.outbox) == 0
    pair.a.core.submit("new text")
    pair.pump()
    assert pair.b.texts() == ["new text"]


def test_a_restarted_core_opens_envelopes_sealed_before_the_restart_but_never_seals(pair):
    from parley_client.core import ChatCore

    secure(pair)
    held = []
    pair.tamper = lambda to, event, payload: (
        held.append(payload) or [] if to == "alice" else [payload]
    )
    pair.b.core.submit("sealed before alice restarted")
    pair.pump()
    pair.tamper = None
    pair.a.core.save_session()
    events = []
    again = ChatCore(
        pair.a.core.me,
        pair.a.contacts,
        "demo",
        lambda *a: None,
        events.append,
        state=pair.a.core.room_state,
        clock=pair.clock,
    )
    assert again.session is None and not again.can_send  # a restored session never seals
    again.handle("received_message", held[0])
    assert [e.text for e in events if e.kind == "message"] == ["sealed before alice restarted"]
    assert not [e for e in events if e.kind == "error"]


def test_texts_typed_before_the_first_contact_are_bound_to_it_even_after_a_crash(pair, known):
    from parley_client.core import ChatCore

    pair.a.core.connected()
    pair.a.core.submit("typed before anyone came")
    assert [i.to for i in pair.a.core.outbox] == [None]
    secure(pair)
    assert pair.b.texts() == ["typed before anyone came"]
    # a crash between pinning the contact and recording the outbox's address for it
    state = pair.a.core.room_state
    state.queued({"id": "x1", "ts": 1.0, "body": "unaddressed", "to": None})
    again = ChatCore(
        pair.a.core.me, pair.a.contacts, "demo", lambda *a: None, lambda e: None, state=state
    )
    again._check_pin(known("bob").public)
    assert [i.to for i in again.outbox] == [known("bob").public.key_id]


def test_the_user_labels_the_contact_and_texts_follow_the_label_not_the_name(pair):
    secure(pair)
    assert not pair.a.core.rename_contact("   ")
    assert pair.a.core.rename_contact("Robert (work)")
    pair.b.core.submit("hi")
    pair.pump()
    assert pair.a.kinds("message")[-1].data["from"] == "Robert (work)"
    assert pair.a.core.status()["peer"] == "Robert (work)"
    assert pair.a.contacts.get("demo").key_id == pair.b.core.me.public.key_id
