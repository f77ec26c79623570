"""Prekey bounds a hostile relay must not be able to use: used inits are kept per signed prekey
without a count cap (a flood of the relay's own session starts cannot evict an old init of the
peer's and so re-open it), and bundles are bound to their room and creation time."""

from __future__ import annotations

import pytest

from parley_crypto import prekeys
from parley_crypto.prekey_store import SPK_KEEP_SECONDS, PrekeyStore
from parley_crypto.prekeys import PrekeyError

ROOM = "room-1"


def test_a_flood_of_used_inits_does_not_evict_an_old_one(alice, bob):
    store = PrekeyStore(bob)
    bundle = store.bundle()
    envelope = prekeys.initiate(alice, ROOM, bundle, None).seal(b"once")  # no one-time key
    prekeys.respond(bob, ROOM, store, envelope)
    spk = bundle["spk"]["id"]
    for i in range(5000):  # more than the old MAX_USED_INITS (4096): the relay's own starts
        store.consume(None, f"{i:032x}", spk)
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, store, envelope)
    again = PrekeyStore.from_state(store.to_state(), bob)  # also after a restart
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, again, envelope)


def test_used_inits_expire_with_their_signed_prekey(alice, bob):
    now = [1000.0]
    store = PrekeyStore(bob, clock=lambda: now[0])
    bundle = store.bundle()
    envelope = prekeys.initiate(alice, ROOM, bundle, None, clock=lambda: now[0]).seal(b"x")
    prekeys.respond(bob, ROOM, store, envelope)
    iid = prekeys.init_id(envelope["init"])
    assert store.was_used(iid)
    now[0] += SPK_KEEP_SECONDS + 1
    store.current()  # rotation drops the prekey and what it served
    assert not store.was_used(iid) and store.to_state()["used"] == []
    with pytest.raises(PrekeyError, match="signed prekey we do not hold"):
        prekeys.respond(bob, ROOM, store, envelope)  # the replay is refused all the same
