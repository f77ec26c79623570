"""Contact stores: one contract suite run against the in-memory and the on-disk store; skeletons."""

from __future__ import annotations

import json
import stat
from dataclasses import FrozenInstanceError, replace

import pytest

from parley_client.contacts import (
    CHANGED,
    MATCH,
    NEW,
    Contact,
    FileContacts,
    MemoryContacts,
    check,
    skeleton,
)
from parley_client.store import HomeError


class FakePeer:
    """What the contact logic reads from a PeerIdentity."""

    def __init__(self, name: str, key_id: str):
        self.name, self.key_id = name, key_id
        self.fingerprint = key_id[:4]

    def to_payload(self) -> dict:
        return {"name": self.name, "key": self.key_id}


@pytest.fixture(params=["memory", "file"])
def contacts(request, tmp_path):
    if request.param == "memory":
        return MemoryContacts()
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return FileContacts(home / "contacts.json")


def test_first_peer_of_a_room_is_new_then_matches_only_by_key(contacts):
    bob = FakePeer("bob", "k-bob")
    assert check(contacts, "duo", bob).status == NEW
    contacts.put(Contact.first_use("duo", bob))
    assert check(contacts, "duo", bob).status == MATCH
    # the same key under any name is still the contact; another key under its name is not
    assert check(contacts, "duo", FakePeer("robert", "k-bob")).status == MATCH
    changed = check(contacts, "duo", FakePeer("bob", "k-mallory"))
    assert changed.status == CHANGED and changed.contact.key_id == "k-bob"
    assert check(contacts, "duo", FakePeer("mallory", "k-mallory")).status == CHANGED
    # rooms are separate contacts
    assert check(contacts, "other", FakePeer("bob", "k-mallory")).status == NEW


def test_label_is_the_nfc_name_and_survives_a_rekey(contacts):
    decomposed = "jose\u0301"
    contacts.put(Contact.first_use("duo", FakePeer(decomposed, "k1")))
    contact = contacts.get("duo")
    assert contact.label == "jos\u00e9" and contact.peer_name == "jos\u00e9"
    contacts.put(contact.rekeyed(FakePeer("someone-else", "k2")))
    again = contacts.get("duo")
    assert again.key_id == "k2" and again.label == "jos\u00e9"
    assert [c.room for c in contacts.all()] == ["duo"]


def test_lookalike_names_of_another_key_are_flagged(contacts):
    contacts.put(Contact.first_use("duo", FakePeer("bob", "k-bob")))
    cyrillic = FakePeer("b\u043eb", "k-mallory")  # Cyrillic o
    result = check(contacts, "elsewhere", cyrillic)
    assert result.status == NEW and result.lookalike.label == "bob"
    in_room = check(contacts, "duo", cyrillic)
    assert in_room.status == CHANGED and in_room.lookalike.label == "bob"
    assert check(contacts, "elsewhere", FakePeer("carol", "k-carol")).lookalike is None
    assert check(contacts, "elsewhere", FakePeer("b\u043eb", "k-bob")).lookalike is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("bob", "b\u043eb"),
        ("alice", "\u0430lice"),
        ("alice", "ALICE"),
        ("paypal", "p\u0430yp\u0430l"),
        ("will", "wi1l"),
        ("bob", "b\u200bob"),  # zero-width space
        ("modem", "rnodem"),
    ],
)
def test_confusable_names_share_a_skeleton(a, b):
    assert skeleton(a) == skeleton(b)


@pytest.mark.parametrize(("a", "b"), [("bob", "rob"), ("alice", "alicia"), ("ann", "anna")])
def test_different_names_have_different_skeletons(a, b):
    assert skeleton(a) != skeleton(b)


def test_file_store_is_private_shared_and_reloads(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    one, two = FileContacts(home / "contacts.json"), FileContacts(home / "contacts.json")
    one.put(Contact.first_use("duo", FakePeer("bob", "k1")))
    two.put(Contact.first_use("trio", FakePeer("carol", "k2")))  # re-reads, keeps duo
    assert {c.room for c in FileContacts(home / "contacts.json").all()} == {"duo", "trio"}
    assert stat.S_IMODE((home / "contacts.json").stat().st_mode) == 0o600


def test_corrupt_or_readable_contacts_file_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "contacts.json"
    path.write_text(json.dumps([1, 2]))
    path.chmod(0o600)
    with pytest.raises(HomeError, match="not a Parley contacts file"):
        FileContacts(path)
    path.write_text(json.dumps({"v": 1, "rooms": {}}))
    path.chmod(0o644)
    with pytest.raises(HomeError, match=f"chmod 600 {path}"):
        FileContacts(path)


def test_first_use_and_rekey_keep_names_to_the_label_bound(contacts):
    long_name = "b" * 70
    contact = Contact.first_use("duo", FakePeer(long_name, "k1"))
    assert contact.label == contact.peer_name == "b" * 64
    assert contact.rekeyed(FakePeer("c" * 65, "k2")).peer_name == "c" * 64
    assert contact.rekeyed(FakePeer("c" * 65, "k2")).label == "b" * 64


def test_a_peer_without_a_payload_is_pinned_without_one():
    class Bare:
        name, key_id, fingerprint = "bob", "k1", "k1"

    assert Contact.first_use("duo", Bare()).identity is None
    assert Contact.first_use("duo", FakePeer("bob", "k1")).identity == {"name": "bob", "key": "k1"}


def test_lookalike_checks_the_name_the_peer_had_as_well_as_the_label(contacts):
    contacts.put(replace(Contact.first_use("duo", FakePeer("bob", "k-bob")), label="Robert"))
    flagged = check(contacts, "elsewhere", FakePeer("b\u043eb", "k-mallory"))
    assert flagged.status == NEW and flagged.lookalike.peer_name == "bob"
    by_label = check(contacts, "elsewhere", FakePeer("R\u043ebert", "k-mallory"))
    assert by_label.lookalike.label == "Robert"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("bob", "bo\u0301b"),  # combining acute (Mn)
        ("bob", "b\u20ddob"),  # combining enclosing circle (Me)
        ("bob", "b\u200dob"),  # zero-width joiner (Cf)
        ("bob", "b o b"),
        ("dan", "clan"),
        ("will", "vvill"),
        ("lily", "iiiy"),
    ],
)
def test_each_skeleton_rule(a, b):
    assert skeleton(a) == skeleton(b)


def test_a_malformed_entry_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "contacts.json"
    path.write_text(json.dumps({"v": 1, "rooms": {"duo": {"key_id": "k1"}}}))
    path.chmod(0o600)
    with pytest.raises(HomeError, match="bad entry for room 'duo'"):
        FileContacts(path)


@pytest.mark.parametrize(("pinned", "new"), [("k-a", "k-b"), ("k-b", "k-a")])
def test_a_lookalike_is_flagged_whichever_key_sorts_first(contacts, pinned, new):
    # mutation: `!=` as `<` found only the contacts whose key sorts before the peer's
    contacts.put(Contact.first_use("duo", FakePeer("bob", pinned)))
    assert check(contacts, "elsewhere", FakePeer("b\u043eb", new)).lookalike.label == "bob"


def test_the_same_key_read_back_from_disk_is_no_lookalike(tmp_path):
    # mutation: `!=` as `is not`: a key read from the file is another str object
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    FileContacts(home / "contacts.json").put(Contact.first_use("duo", FakePeer("bob", "k-1")))
    same_key = "".join(["k-", "1"])  # equal, built apart
    result = check(FileContacts(home / "contacts.json"), "elsewhere", FakePeer("bob", same_key))
    assert result.status == NEW and result.lookalike is None


def test_contacts_and_checks_are_frozen(contacts):
    contact = Contact.first_use("duo", FakePeer("bob", "k1"))
    with pytest.raises(FrozenInstanceError):
        contact.key_id = "k2"  # a pinned key changes only through rekeyed()
    with pytest.raises(FrozenInstanceError):
        check(contacts, "duo", FakePeer("bob", "k1")).status = "match"


def test_the_contacts_file_says_its_format_version(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    FileContacts(home / "contacts.json").put(Contact.first_use("duo", FakePeer("bob", "k1")))
    assert json.loads((home / "contacts.json").read_text())["v"] == 1
