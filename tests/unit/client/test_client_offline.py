"""Offline delivery in the client core (sans-IO, offline.py): prekeys published on join, first
contact with an away peer through its prekeys, ✓ on stored, ✓✓ on the receipt, the backlog
shown once under its divider and acknowledged, and what a hostile relay can do to it."""

from __future__ import annotations

import pytest

from parley_client.core import State
from parley_client.messages import Outbox, new_text
from parley_client.roomstate import DiskRoomState
from parley_crypto.prekey_store import ONE_TIME_TARGET, PrekeyStore
from tests.unit.client.conftest import cached_identity
from tests.unit.client.mailbox_relay import MailboxRelay


@pytest.fixture
def relay(clock):
    r = MailboxRelay(clock)
    r.start("alice")
    r.start("bob")
    return r


def bob_was_here(relay):
    relay.join("bob")
    relay.leave("bob")


def alice_sends_away(relay, lines, sender="alice"):
    relay.join(sender)
    for line in lines:
        relay[sender].core.submit(line)
    relay.away_tick()


def test_join_publishes_the_bundle_and_tops_one_time_keys_up(relay):
    relay.join("bob")
    bob = relay["bob"]
    assert bob.bundle is not None and len(bob.one_time) == ONE_TIME_TARGET
    saved = PrekeyStore.from_state(bob.state.prekeys(), cached_identity("bob"))
    assert len(saved) == ONE_TIME_TARGET  # the private halves were saved first
    bob.one_time = bob.one_time[:10]  # senders took 40 meanwhile
    relay.leave("bob")
    relay.join("bob")
    assert len(bob.one_time) == ONE_TIME_TARGET


def test_first_contact_with_an_away_peer_is_stored_then_delivered_once(relay):
    bob_was_here(relay)
    alice_sends_away(relay, ["one", "two", "three"])
    alice, bob = relay["alice"], relay["bob"]
    assert alice.core.state is State.AWAY
    assert alice.contacts.get("demo").key_id == cached_identity("bob").public.key_id  # TOFU
    assert [e.data["text"] for e in alice.kinds("stored")] == ["one", "two", "three"]  # ✓
    assert alice.core.outbox.all_stored() and len(alice.core.outbox) == 3
    assert len(bob.mailbox) == 3 and all("init" in e["payload"] for e in bob.mailbox)
    relay.away_tick()  # nothing is stored twice while the peer is away
    assert len(bob.mailbox) == 3
    relay.leave("alice")

    relay.join("bob")
    assert bob.texts() == ["one", "two", "three"]
    assert all(e.data.get("backlog") for e in bob.kinds("message"))
    infos = bob.infos()
    assert "── while you were away ──" in infos
    assert any("end of what arrived while you were away (3)" in t for t in infos)
    assert bob.mailbox == [] and len(bob.acked) == 3
    assert bob.contacts.get("demo").key_id == cached_identity("alice").public.key_id
    ts = [e.data["ts"] for e in bob.kinds("message")]
    assert ts == sorted(ts) and ts[0] < 2e9  # the sender's wall-clock timestamps

    relay.leave("bob")
    relay.join("alice")  # the receipts waited in Alice's mailbox: ✓✓
    assert len(alice.kinds("delivered")) == 3 and len(alice.core.outbox) == 0


def test_backlog_sent_again_or_after_a_restart_shows_nothing_twice(relay):
    bob_was_here(relay)
    alice_sends_away(relay, ["a", "b"])
    relay.drop_acks = True  # the acks are lost: the relay sends the entries again
    relay.join("bob")
    relay.leave("bob")
    relay.start("bob")  # a restart on the same home
    relay.join("bob")
    assert relay["bob"].texts() == []  # all seen already
    relay.drop_acks = False
    relay.leave("bob")
    relay.join("bob")
    assert relay["bob"].mailbox == []  # re-sent duplicates are acknowledged too


def test_one_time_private_key_deleted_after_use(relay):
    bob_was_here(relay)
    alice_sends_away(relay, ["x"])
    otk = relay["bob"].mailbox[0]["payload"]["init"]["otk"]
    before = PrekeyStore.from_state(relay["bob"].state.prekeys(), cached_identity("bob"))
    assert before.one_time(otk) is not None
    relay.join("bob")
    after = PrekeyStore.from_state(relay["bob"].state.prekeys(), cached_identity("bob"))
    assert after.one_time(otk) is None


def test_replayed_stored_envelope_is_harmless(relay):
    bob_was_here(relay)
    alice_sends_away(relay, ["only once"])
    bob = relay["bob"]
    entry = bob.mailbox[0]
    bob.mailbox += [dict(entry, id="99-0"), dict(entry, id="98-0")]  # the relay replays it
    relay.join("bob")
    assert bob.texts() == ["only once"]
    assert bob.mailbox == []


def test_one_time_key_handed_out_twice_is_not_used_twice(relay, clock):
    """A relay that gives the same one-time key to a second session start of the same sender
    (the real relay does, within its per-asker fetch window): the sender's next run sees the
    key its saved session already used and starts without it, so the receiver opens the
    second start instead of refusing it (it did on the old code: the line was lost)."""
    bob_was_here(relay)
    relay.replay_one_time = dict(relay["bob"].one_time[0])
    alice_sends_away(relay, ["first start"])
    relay.leave("alice")
    relay.start("alice")  # a new run: no usable session, fetches again
    alice_sends_away(relay, ["second start"])
    relay.leave("alice")
    assert relay["bob"].mailbox[-1]["payload"]["init"]["otk"] is None
    relay.join("bob")
    bob = relay["bob"]
    assert bob.texts() == ["first start", "second start"]
    assert not any("could not be opened" in t for t in bob.infos())


def test_withheld_one_time_keys_still_deliver(relay):
    bob_was_here(relay)
    relay.withhold_one_time = True
    alice_sends_away(relay, ["no otk"])
    assert relay["bob"].mailbox[0]["payload"]["init"]["otk"] is None
    relay.leave("alice")
    relay.join("bob")
    assert relay["bob"].texts() == ["no otk"]


def test_a_substituted_bundle_is_a_key_change_and_nothing_is_sent(relay, clock):
    """Alice pinned Bob; the relay answers with another identity's (validly signed) bundle:
    a key change, blocked, exactly as live."""
    relay.join("alice")
    relay.join("bob")
    assert relay["alice"].core.state is State.SECURE
    relay.leave("bob")
    relay.leave("alice")
    mallory = PrekeyStore(cached_identity("mallory"))
    relay["bob"].bundle = mallory.bundle("demo")
    relay["bob"].one_time = mallory.new_one_time(1)
    alice_sends_away(relay, ["secret"])
    alice = relay["alice"]
    assert alice.kinds("key_changed") and alice.core.blocked_by is not None
    assert relay["bob"].mailbox == []


def test_stored_text_from_another_key_is_withheld_and_not_acknowledged(relay, clock):
    """Bob's room contact is Alice; a start from Mallory's key in the backlog is a key change:
    withheld, warned, and left in the mailbox (for after /trust, if ever)."""
    bob_was_here(relay)
    relay.join("alice")
    relay.join("bob")  # Bob pins Alice live
    relay.leave("bob")
    relay.leave("alice")
    other = MailboxRelay(clock, names=("mallory", "bob"))
    other["bob"].bundle, other["bob"].one_time = relay["bob"].bundle, relay["bob"].one_time
    other.start("mallory")
    alice_sends_away(other, ["from mallory"], sender="mallory")
    relay["bob"].mailbox = list(other["bob"].mailbox)
    relay.join("bob")
    bob = relay["bob"]
    assert bob.texts() == [] and bob.kinds("key_changed")
    assert len(bob.mailbox) == 1  # not acknowledged


def test_mailbox_full_is_one_plain_line_and_nothing_floods(relay, clock):
    bob_was_here(relay)
    relay.full = True
    alice_sends_away(relay, ["a", "b"])
    alice = relay["alice"]
    full = [t for t in alice.infos() if "mailbox at the relay is full" in t]
    assert len(full) == 1 and not alice.core.outbox.all_stored()
    sends = len(alice.kinds("sent"))
    clock.now += 60
    alice.core.tick()
    relay.pump()
    assert len(alice.kinds("sent")) <= sends + 2  # resends at the usual pace, no flood


def test_mailbox_expired_is_shown_and_the_text_goes_out_again(relay):
    bob_was_here(relay)
    alice_sends_away(relay, ["too late"])
    alice = relay["alice"]
    entry = alice.kinds("stored")[0].data["entry"]
    alice.core.handle("mailbox_expired", {"ids": [entry, "unknown-1"]})
    assert any("expired in the relay's mailbox" in t and "too late" in t for t in alice.infos())
    assert not alice.core.outbox.all_stored()
    alice.core.handle("mailbox_expired", {"ids": "junk"})
    assert any("malformed mailbox_expired" in t for t in alice.infos())


def test_hostile_backlog_entries_are_one_line_each_and_change_nothing(relay):
    relay.join("bob")
    bob = relay["bob"]
    for junk in (None, {"id": 5}, {"id": "1-0", "payload": "x"}, {"id": "x" * 65, "payload": {}}):
        bob.core.handle("stored_message", junk)
    bob.core.handle("stored_message", {"id": "1-0", "payload": {"v": 2, "init": {"v": 9}}})
    bob.core.handle("stored_message", {"id": "2-0", "payload": {"init": {"v": 1, "identity": 1}}})
    bob.core.handle("mailbox_done", {"count": 2})
    assert {"1-0", "2-0"} <= set(bob.acked)  # no poison entry that comes back every join
    assert bob.texts() == [] and any("could not be opened" in t for t in bob.infos())
    assert bob.core.state is State.WAITING


def test_without_a_seat_nothing_is_fetched(clock):
    relay = MailboxRelay(clock)
    relay.start("bob")
    bob_was_here(relay)
    core = relay.start("alice")
    core._request = None  # a client without a home secret
    relay.join("alice")
    core.submit("waits")
    relay.away_tick()
    assert core.state is State.WAITING and relay["bob"].mailbox == []


def test_stored_marks_survive_a_restart_on_disk(tmp_path):
    state = DiskRoomState(tmp_path / "room", "demo")
    outbox = Outbox(state)
    item = outbox.add(new_text("kept"), "key")
    outbox.stored(item.message.id, "5-0")
    state.save_prekeys({"v": 2})
    state.close()
    state = DiskRoomState(tmp_path / "room", "demo")
    again = Outbox(state)
    assert again.all_stored() and again.by_entry("5-0").message.body == "kept"
    assert (tmp_path / "room" / "prekeys.json").stat().st_mode & 0o777 == 0o600
    assert state.prekeys() == {"v": 2}
    state.close()


def test_receipts_for_a_restored_session_open_after_a_slow_start(relay, clock):
    """Alice's next run restores the session the receipts were sealed for; its grace period
    starts when she joins, not at start-up."""
    bob_was_here(relay)
    alice_sends_away(relay, ["x", "y"])
    relay.leave("alice")
    relay.join("bob")
    relay.leave("bob")
    relay.start("alice")  # a new process: the session comes from the saved state
    clock.now += 60  # a slow start (far beyond the grace period)
    relay.join("alice")
    assert len(relay["alice"].kinds("delivered")) == 2
    assert len(relay["alice"].core.outbox) == 0


def test_a_corrupt_prekeys_file_is_one_line_and_replaced(tmp_path, clock):
    relay = MailboxRelay(clock)
    folder = tmp_path / "room"
    relay["bob"].state = DiskRoomState(folder, "demo")
    (folder / "prekeys.json").write_text("{not json")
    (folder / "prekeys.json").chmod(0o600)
    relay.start("bob")
    relay.join("bob")
    bob = relay["bob"]
    assert any("ignored the saved prekeys" in t for t in bob.infos())
    assert bob.bundle is not None and len(bob.one_time) == ONE_TIME_TARGET
    assert PrekeyStore.from_state(bob.state.prekeys(), cached_identity("bob"))
    bob.state.close()


def test_a_receiver_killed_mid_session_opens_what_was_stored_for_that_session(relay):
    """SIGKILL keeps no exit-time save: the ratchet state on disk must already hold every
    DH ratchet key the receiver made since the handshake, or a line the sender sealed on the
    live session just as the receiver died can never be opened (the offline soak's gap)."""
    alice, bob = relay["alice"], relay["bob"]
    relay.join("alice")
    relay.join("bob")
    for who, line in (("alice", "one"), ("bob", "hi"), ("alice", "two"), ("bob", "hey")):
        relay[who].core.submit(line)
        relay.pump()
    assert bob.texts() == ["one", "two"] and alice.texts() == ["hi", "hey"]
    # Bob dies (no save at exit); Alice's next line, sealed on the live session, is stored.
    relay.live.discard("bob")
    late = new_text("three")
    bob.mailbox.append({"id": "7-0", "at": 0, "payload": alice.core.session.seal(late.encode())})
    relay.leave("alice")
    relay.start("bob")  # a new process on the durable state
    relay.join("bob")
    assert bob.texts() == ["three"]
    assert bob.mailbox == [] and bob.acked == ["7-0"]
