"""The relay's garbage-collector settings (parley_relay/gcpolicy.py)."""

from __future__ import annotations

import gc

import pytest

from parley_relay import gcpolicy


@pytest.fixture
def restored_gc():
    """Undo apply() in this test process: thresholds back, the heap unfrozen."""
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_apply_spaces_full_collections_and_keeps_the_young_thresholds(restored_gc):
    young, middle, full = restored_gc
    assert full < gcpolicy.FULL_COLLECTION_AFTER  # CPython's default is 10
    gcpolicy.apply()
    assert gc.get_threshold() == (young, middle, gcpolicy.FULL_COLLECTION_AFTER)


def test_apply_freezes_what_exists_and_leaves_new_objects_collectable(restored_gc):
    gc.unfreeze()
    gcpolicy.apply()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the modules, the test process's heap

    class Node:
        pass

    # A cycle made after apply() is not frozen: a collection finds it.
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    del a, b
    assert gc.collect() >= 2
    assert gc.get_freeze_count() == frozen
