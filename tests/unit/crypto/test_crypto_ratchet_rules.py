"""Ratchet rules the mutation run found unpinned (tests/support/mutate.py, docs/testing.md)."""

from __future__ import annotations

import pytest

from parley_crypto import errors, ratchet
from tests.unit.crypto.conftest import connect

DENIABLE = {"deniable": True}


def test_sending_stops_before_the_message_number_overflows(alice, bob):
    """n travels as an unsigned 32-bit field: the last number sealed is MAX_COUNTER - 1."""
    sender, _ = connect(alice, bob, a=DENIABLE, b=DENIABLE)
    assert ratchet.MAX_COUNTER == 2**32 - 1
    sender._state.Ns = int("4294967294")  # a fresh int, not the constant's object
    assert sender.seal(b"last")["n"] == 4294967294
    chain = sender._state.CKs
    with pytest.raises(errors.InvalidMessage, match="no sending chain"):
        sender.seal(b"one too many")
    assert sender._state.Ns == 4294967295 and sender._state.CKs == chain  # nothing advanced
