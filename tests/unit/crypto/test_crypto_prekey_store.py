"""PrekeyStore rule by rule (tests/support/mutate.py found them unpinned, docs/testing.md):
one-time key counts and their cap, signed prekey rotation, keep time and count, option
changes, and the strictness of a stored prekey file."""

from __future__ import annotations

import dataclasses

import pytest

from parley_crypto import prekey_store
from parley_crypto.prekey_store import InvalidPrekeyState, PrekeyStore

DAY = 24 * 3600
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_documented_limits():
    """The values DECISIONS.md and the relay's limits are written against (literals on purpose:
    a changed constant must be a decision, not an accident)."""
    assert prekey_store.SPK_ROTATE_SECONDS == 7 * DAY
    assert prekey_store.SPK_KEEP_SECONDS == 21 * DAY
    assert prekey_store.MAX_SIGNED == 4
    assert prekey_store.MAX_ONE_TIME == 400
    assert prekey_store.ONE_TIME_TARGET == 50


def test_one_time_counts_from_zero_to_the_cap(bob):
    store = PrekeyStore(bob)
    assert store.new_one_time(0) == [] and len(store) == 0
    keys = store.new_one_time(400)
    assert len(keys) == 400 and len(store) == 400
    for count in (401, -1):
        with pytest.raises(ValueError, match="0..400"):
            store.new_one_time(count)
    assert len(store) == 400  # a refused count generates nothing


def test_the_oldest_one_time_keys_go_first_beyond_the_cap(bob):
    store = PrekeyStore(bob)
    first = store.new_one_time(400)
    assert len(store) == 400 and store.one_time(first[0]["id"]) is not None  # at the cap: kept
    store.new_one_time(2)
    assert len(store) == 400
    assert store.one_time(first[0]["id"]) is None and store.one_time(first[1]["id"]) is None
    assert store.one_time(first[2]["id"]) is not None


def test_the_signed_prekey_rotates_after_exactly_a_week(bob):
    clock = Clock()
    store = PrekeyStore(bob, clock)
    first = store.current()
    for later in (1, DAY, 7 * DAY):  # the same prekey up to and including the week
        clock.now = T0 + later
        assert store.current().id == first.id
    clock.now = T0 + 7 * DAY + 1
    second = store.current()
    assert second.id != first.id and second.created == clock.now
    assert store.current().id == second.id  # the newest is the one published, not the oldest


def test_a_signed_prekey_is_kept_exactly_its_keep_time(bob):
    clock = Clock()
    store = PrekeyStore(bob, clock)
    first = store.current()
    clock.now = T0 + 21 * DAY
    store.current()
    assert store.signed(first.id) is not None  # 21 days old: still opens mailbox envelopes
    clock.now += 1
    store.current()
    assert store.signed(first.id) is None


@pytest.mark.parametrize(
    "before, after",
    [
        (("sha256", False), ("sha1", False)),
        (("sha1", False), ("sha256", False)),
        (("sha256", False), ("sha256", True)),
        (("sha256", True), ("sha256", False)),
    ],
)
def test_changed_options_give_a_new_signed_prekey(bob, before, after):
    store = PrekeyStore(bob, Clock())
    old = store.current(*before)
    new = store.current(*after)
    assert new.id != old.id and (new.hash, new.deniable) == after
    assert store.current(*after).id == new.id


def test_at_most_four_signed_prekeys_are_kept_newest_last(bob):
    store = PrekeyStore(bob, Clock())
    made = [store.current(deniable=i % 2 == 1).id for i in range(6)]  # each call rotates
    assert [s["id"] for s in store.to_state()["signed"]] == made[-4:]
    assert store.signed(made[1]) is None and store.signed(made[2]) is not None


def _state(bob, signed=1, one_time=0):
    store = PrekeyStore(bob, Clock())
    for i in range(signed):
        store.current(deniable=i % 2 == 1)
    store.new_one_time(one_time)
    return store.to_state()


def test_a_full_state_loads_and_one_entry_more_is_refused(bob):
    state = _state(bob, signed=4, one_time=400)
    again = PrekeyStore.from_state(state, bob)
    assert len(again) == 400 and again.to_state() == state
    for key in ("signed", "one_time"):
        over = dict(state, **{key: state[key] + state[key][:1]})
        with pytest.raises(InvalidPrekeyState, match=f"prekey state {key} is invalid"):
            PrekeyStore.from_state(over, bob)


@pytest.mark.parametrize("key", ["signed", "one_time", "used"])
@pytest.mark.parametrize("value", [None, {}, "", 0, {"a": 1}])
def test_a_state_list_of_another_type_is_refused(bob, key, value):
    with pytest.raises(InvalidPrekeyState, match=f"prekey state {key} is invalid"):
        PrekeyStore.from_state(dict(_state(bob), **{key: value}), bob)


def test_a_state_of_another_identity_is_refused_whichever_sorts_first(alice, bob):
    for owner, other in ((alice, bob), (bob, alice)):
        with pytest.raises(InvalidPrekeyState, match="another identity"):
            PrekeyStore.from_state(_state(owner), other)


def test_the_default_signed_prekey_is_signed_mode_sha256(bob):
    spk = PrekeyStore(bob, Clock()).current()
    assert (spk.hash, spk.deniable) == ("sha256", False)


def _with_used(bob):
    state = _state(bob)
    state["used"] = [["ab" * 16, state["signed"][0]["id"]]]
    assert PrekeyStore.from_state(state, bob).was_used("ab" * 16)
    return state


@pytest.mark.parametrize("entry", [[5, None], [None, "x"], ["ab" * 16 + "a", None]])
def test_a_malformed_used_init_id_is_refused(bob, entry):
    state = _with_used(bob)
    init_id, spk_id = entry[0], entry[1] or state["used"][0][1]
    state["used"] = [[init_id, spk_id]]
    with pytest.raises(InvalidPrekeyState, match="used init id is invalid"):
        PrekeyStore.from_state(state, bob)


@pytest.mark.parametrize("key", ["one_time", "used"])
@pytest.mark.parametrize("shape", ["short", "long", "flat", "two characters", "object"])
def test_a_state_entry_that_is_not_a_pair_is_refused(bob, key, shape):
    """Only a list of two: a string or an object of two entries is no pair either."""
    state = _with_used(bob) if key == "used" else _state(bob, one_time=1)
    entry = state[key][0]
    state[key] = [
        {
            "short": entry[:1],
            "long": [*entry, entry[1]],
            "flat": entry[0],
            "two characters": "ab",
            "object": {"id": entry[0], "x": entry[1]},
        }[shape]
    ]
    with pytest.raises(InvalidPrekeyState, match=f"prekey state {key} entry is invalid"):
        PrekeyStore.from_state(state, bob)


@pytest.mark.parametrize("kind", ["a", "", "zzz", "parley-prekeyt"])
def test_a_state_of_another_type_is_refused_whichever_sorts_first(bob, kind):
    with pytest.raises(InvalidPrekeyState, match="not a prekey state"):
        PrekeyStore.from_state(dict(_state(bob), type=kind), bob)


def test_used_inits_stay_filed_under_their_signed_prekey_after_a_reload(bob):
    """A reloaded used init is kept under its signed prekey's id, so it survives the next
    publication (which forgets the inits of expired prekeys only) and is still a replay."""
    state = _with_used(bob)
    store = PrekeyStore.from_state(state, bob, Clock())
    store.current()
    assert store.was_used("ab" * 16) and store.to_state()["used"] == state["used"]


def test_a_signed_prekey_is_immutable(bob):
    spk = PrekeyStore(bob, Clock()).current()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spk.created = 0.0
