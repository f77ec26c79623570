"""ContactGuard's decisions one by one: first use pins, the contact's key passes, any other key
is refused with the loud warning and changes nothing; labels and /trust; the warning texts."""

from __future__ import annotations

import pytest

from parley_client.contacts import MAX_LABEL, Contact, MemoryContacts
from parley_client.guard import ContactGuard, held_text, key_changed_event, short
from parley_crypto import identity, safety


@pytest.fixture(scope="module")
def people():
    return {n: identity.Identity.generate(n) for n in ("me", "bob", "mallory", "bоb")}


@pytest.fixture
def guarded(people):
    events = []
    contacts = MemoryContacts()
    return ContactGuard(contacts, "duo", people["me"], events.append), contacts, events


def test_short_shows_sixteen_hex_digits_or_a_question_mark():
    assert short("0123456789abcdef0123") == "0123456789abcdef"
    assert short(None) == "?" and short("") == "?"


def test_first_use_pins_and_says_so(guarded, people):
    guard, contacts, events = guarded
    bob = people["bob"].public
    assert guard.contact is None and guard.label(bob) is None
    assert guard.admit(bob) is True
    assert contacts.get("duo").key_id == bob.key_id
    assert [(e.kind, e.text) for e in events] == [("info", "pinned the key of bob on first use")]
    assert guard.label(bob) == "bob"


def test_the_contacts_key_passes_silently_and_changes_nothing(guarded, people):
    guard, contacts, events = guarded
    guard.admit(people["bob"].public)
    pinned = contacts.get("duo")
    events.clear()
    assert guard.admit(people["bob"].public) is True
    assert events == [] and contacts.get("duo") is pinned


def test_another_key_is_refused_loudly_and_changes_nothing(guarded, people):
    guard, contacts, events = guarded
    me, bob, mallory = people["me"].public, people["bob"].public, people["mallory"].public
    guard.admit(bob)
    pinned = contacts.get("duo")
    events.clear()
    assert guard.admit(mallory) is False
    assert contacts.get("duo") is pinned  # still bob's key
    assert guard.label(mallory) is None and guard.label(bob) == "bob"
    (event,) = events
    assert event.kind == "key_changed"
    assert event.data == {
        "peer": "bob",
        "claimed_name": "mallory",
        "pinned": bob.key_id,
        "now": mallory.key_id,
        "safety_number": safety.safety_number(me, mallory),
        "lookalike": None,
    }
    assert f"pinned {bob.key_id[:16]}, now {mallory.key_id[:16]}, calling itself 'mallory'" in (
        event.text
    )


def test_a_lookalike_first_contact_is_pinned_and_flagged(people):
    events = []
    contacts = MemoryContacts()
    ContactGuard(contacts, "duo", people["me"], events.append).admit(people["bob"].public)
    events.clear()
    spoof = people["bоb"].public  # Cyrillic о
    assert ContactGuard(contacts, "new-room", people["me"], events.append).admit(spoof) is True
    assert [e.kind for e in events] == ["info", "warning"]
    assert events[1].data == {"peer": "bоb", "lookalike": "bob", "now": spoof.key_id}


def test_key_change_text_names_no_claim_when_the_name_is_the_label(people):
    bob, mallory = people["bob"].public, people["mallory"].public
    contact = Contact.first_use("duo", bob)
    same_name = identity.PeerIdentity("bob", mallory.group, mallory.y)
    text = key_changed_event(contact, same_name, "0" * 60, None).text
    assert "calling itself" not in text and "looks like" not in text
    flagged = key_changed_event(contact, same_name, "0" * 60, contact)
    assert flagged.text.endswith("Its name looks like your contact 'bob' but it is another key.")
    assert flagged.data["lookalike"] == "bob"


def test_relabel_rules(guarded, people):
    guard, contacts, _ = guarded
    assert guard.relabel("Bobby") is None  # no contact yet
    guard.admit(people["bob"].public)
    assert guard.relabel("  Bobby  ").label == "Bobby"
    assert contacts.get("duo").label == "Bobby"
    assert guard.relabel("jose\u0301").label == "jos\u00e9"  # stored NFC
    assert guard.relabel("x" * MAX_LABEL).label == "x" * MAX_LABEL
    for bad in ("", "   ", "x" * (MAX_LABEL + 1), "a\nb", "a\x1bb"):
        assert guard.relabel(bad) is None
    assert contacts.get("duo").label == "x" * MAX_LABEL  # refusals changed nothing
    assert MAX_LABEL == 64


def test_trust_repins_the_same_contact_to_the_new_key(guarded, people):
    guard, contacts, _ = guarded
    guard.admit(people["bob"].public)
    guard.relabel("Bobby")
    new = guard.trust(people["mallory"].public)
    assert new.label == "Bobby" and new.key_id == people["mallory"].public.key_id
    assert contacts.get("duo") == new and guard.admit(people["mallory"].public) is True


def test_trust_without_a_contact_pins_first_use(guarded, people):
    guard, contacts, _ = guarded
    new = guard.trust(people["bob"].public)
    assert new.label == "bob" and contacts.get("duo") == new


def test_held_text():
    contact = Contact("duo", "k" * 40, "f", "Bobby", "bob", 0.0)
    assert held_text(3, contact, "o" * 40) == (
        f"3 message(s) were queued for the earlier key {'o' * 16}, not for Bobby's new key "
        f"{'k' * 16}: /forward sends them to the new key, /discard drops them"
    )


def test_a_one_character_label_is_a_label(guarded, people):
    guard, contacts, _ = guarded
    guard.admit(people["bob"].public)
    assert guard.relabel("B").label == "B" and contacts.get("duo").label == "B"


def test_key_change_text_compares_the_claimed_name_by_value(people):
    """Names arrive parsed from JSON and labels from contacts.json: equal strings that are
    distinct objects still mean "no other claim"."""
    mallory = people["mallory"].public
    contact = Contact.first_use("duo", people["bob"].public)
    contact = Contact(**{**contact.__dict__, "label": "".join(["b", "ob"])})
    same_name = identity.PeerIdentity("".join(["bo", "b"]), mallory.group, mallory.y)
    assert same_name.name == contact.label and same_name.name is not contact.label
    assert "calling itself" not in key_changed_event(contact, same_name, "0" * 60, None).text


def test_key_change_text_names_a_claim_that_sorts_before_the_label(people):
    mallory = people["mallory"].public
    contact = Contact.first_use("duo", people["bob"].public)
    claimant = identity.PeerIdentity("alice", mallory.group, mallory.y)
    text = key_changed_event(contact, claimant, "0" * 60, None).text
    assert ", calling itself 'alice'" in text
