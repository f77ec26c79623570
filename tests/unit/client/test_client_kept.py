"""Stored messages opened but not shown (kept.py): withheld after a key change, held for order,
or hit by a local failure. None is acknowledged (deleted at the relay) before it was shown or
the user discarded it; each failed on the old code (acked at the next join, never shown)."""

from __future__ import annotations

import pytest

from parley_client.roomstate import DiskRoomState
from tests.unit.client.mailbox_relay import MailboxRelay


@pytest.fixture
def relay(clock):
    r = MailboxRelay(clock)
    r.start("alice")
    r.start("bob")
    return r


def alice_reinstalls_and_sends(relay, clock, lines):
    """Bob pinned Alice live; a new identity in Alice's seat sends while Bob is away."""
    relay.join("bob")
    relay.leave("bob")
    relay.join("alice")
    relay.join("bob")
    relay.leave("bob")
    relay.leave("alice")
    other = MailboxRelay(clock, names=("alice2", "bob"))
    other["bob"].bundle, other["bob"].one_time = relay["bob"].bundle, relay["bob"].one_time
    other.start("alice2")
    other.join("alice2")
    for line in lines:
        other["alice2"].core.submit(line)
    other.away_tick()
    relay["bob"].mailbox = list(other["bob"].mailbox)


def opened_errors(member):
    return [t for t in member.infos() if "could not be" in t]


def test_withheld_then_trusted_is_shown_once_and_acked_only_then(relay, clock):
    alice_reinstalls_and_sends(relay, clock, ["hello from my new phone", "second line"])
    relay.join("bob")
    bob = relay["bob"]
    assert bob.texts() == [] and bob.kinds("key_changed")
    assert len(bob.mailbox) == 2 and bob.acked == []
    assert any("kept here unshown" in t for t in bob.infos())
    relay.leave("bob")
    relay.join("bob")  # the same entries again: not opened twice, still kept
    assert bob.texts() == [] and len(bob.mailbox) == 2 and not opened_errors(bob)
    assert bob.core.trust()
    relay.pump()
    assert bob.texts() == ["hello from my new phone", "second line"]
    assert bob.mailbox == [] and sorted(bob.acked) == ["1-0", "2-0"]
    relay.leave("bob")
    relay.join("bob")
    assert len(bob.texts()) == 2 and not opened_errors(bob)
    assert bob.core.room_state.kept() == []  # the relay confirmed: forgotten


def test_withheld_survives_a_restart_and_the_key_change_is_raised_again(relay, clock):
    alice_reinstalls_and_sends(relay, clock, ["after reinstall"])
    relay.join("bob")
    relay.leave("bob")
    relay.start("bob")  # a new process: blocked_by is gone, the kept record is not
    relay.join("bob")
    bob = relay["bob"]
    assert bob.kinds("key_changed") and bob.core.blocked_by is not None
    assert bob.texts() == [] and len(bob.mailbox) == 1
    assert bob.core.trust()
    relay.pump()
    assert bob.texts() == ["after reinstall"] and bob.mailbox == []


def test_a_live_contact_session_is_not_blocked_by_kept_texts_of_another_key(relay, clock):
    """/verify and /trust act on the same key: with the contact's own key live, kept texts of
    another key raise no block (the number shown would be the contact's), only a line."""
    alice_reinstalls_and_sends(relay, clock, ["from the other key"])
    relay.join("bob")
    bob = relay["bob"]
    relay.join("alice")  # the old key is live again: the contact's session
    assert bob.core.blocked_by is None and bob.core.state.value == "secure"
    relay.leave("bob")
    relay.join("bob")
    alice_key = relay["alice"].core.me.public.key_id
    assert bob.core.blocked_by is None and bob.core.peer.key_id == alice_key
    assert any("from another key than your contact's" in t for t in bob.infos())
    assert bob.texts() == [] and len(bob.mailbox) == 1  # still kept, still not acked


def test_a_restart_between_withheld_entries_still_opens_the_rest(relay, clock):
    """The process ends after the first withheld entry (a crash, or a quick exit): the second
    is sealed on the untrusted key's session, which is kept too, so it opens after the
    restart (on the old code: "replayed", acknowledged, never shown)."""
    alice_reinstalls_and_sends(relay, clock, ["first", "second"])
    bob = relay["bob"]
    later = bob.mailbox.pop()  # not delivered before the process ended
    relay.join("bob")
    relay.leave("bob")
    bob.mailbox.append(later)
    relay.start("bob")
    relay.join("bob")
    assert len(bob.mailbox) == 2 and not opened_errors(bob)
    assert bob.core.trust()
    relay.pump()
    assert bob.texts() == ["first", "second"] and bob.mailbox == []
    assert bob.core.room_state.withheld_session() is None  # nothing of that key waits


def test_discard_drops_the_withheld_and_acks_them(relay, clock):
    alice_reinstalls_and_sends(relay, clock, ["unwanted"])
    relay.join("bob")
    bob = relay["bob"]
    assert bob.core.discard() == 1
    relay.pump()
    assert bob.texts() == [] and bob.mailbox == []
    assert any("dropped 1 stored message(s) withheld" in t for t in bob.infos())


def test_held_for_order_survives_a_clean_restart_and_shows_when_the_gap_fills(relay):
    relay.join("bob")
    relay.leave("bob")
    relay.join("alice")
    for line in ["one", "two", "three"]:
        relay["alice"].core.submit(line)
    relay.away_tick()
    relay.leave("alice")
    bob = relay["bob"]
    bob.mailbox.pop(0)  # entry 1 lost (a Redis crash inside the fsync window)
    relay.join("bob")
    assert bob.texts() == [] and len(bob.mailbox) == 2
    relay.leave("bob")
    bob.core.save_session()  # a clean exit
    relay.start("bob")
    relay.join("bob")
    assert bob.texts() == [] and len(bob.mailbox) == 2 and not opened_errors(bob)
    relay.join("alice")  # live again: Alice re-sends what has no receipt
    relay.away_tick()
    relay.pump()
    assert bob.texts() == ["one", "two", "three"]
    assert bob.mailbox == []


class FailingPrekeySave:
    """A room state whose prekey file cannot be written (disk full) until ``fixed``."""

    def __init__(self, inner):
        self._inner, self.fixed = inner, False

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def save_prekeys(self, state):
        if not self.fixed:
            raise OSError(28, "No space left on device")
        self._inner.save_prekeys(state)


def test_a_local_failure_never_acks_and_the_entry_opens_next_join(relay):
    relay.join("bob")
    relay.leave("bob")
    relay.join("alice")
    relay["alice"].core.submit("survives a full disk")
    relay.away_tick()
    relay.leave("alice")
    bob = relay["bob"]
    failing = FailingPrekeySave(bob.core.room_state)
    bob.core.room_state = failing
    relay.join("bob")
    assert bob.texts() == [] and len(bob.mailbox) == 1 and bob.acked == []
    assert any("could not be processed here" in t for t in bob.infos())
    failing.fixed = True
    relay.leave("bob")
    relay.join("bob")
    assert bob.texts() == ["survives a full disk"] and bob.mailbox == []


def test_kept_records_are_private_and_survive_on_disk(tmp_path):
    state = DiskRoomState(tmp_path / "room", "demo")
    record = {"entry": "1-0", "why": "held", "text": {"id": "a", "ts": 1, "body": "b"}}
    state.save_kept([record])
    state.close()
    state = DiskRoomState(tmp_path / "room", "demo")
    assert state.kept() == [record]
    assert (tmp_path / "room" / "kept.json").stat().st_mode & 0o777 == 0o600
    state.close()
