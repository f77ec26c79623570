"""Shared fixtures for the crypto tests: long-term identities are costly, so build them once."""

from __future__ import annotations

import pytest

from parley_crypto import handshake, identity


@pytest.fixture(scope="session")
def alice() -> identity.Identity:
    return identity.Identity.generate("alice")


@pytest.fixture(scope="session")
def bob() -> identity.Identity:
    return identity.Identity.generate("bob")


@pytest.fixture(scope="session")
def mallory() -> identity.Identity:
    return identity.Identity.generate("mallory")


def connect(
    first: identity.Identity, second: identity.Identity, room: str = "room-1", *, a=None, b=None
):
    """Run a full handshake between two fresh Handshake objects; returns (session_a, session_b).

    ``a`` / ``b`` are keyword options for the first / second party's Handshake.
    """
    ha = handshake.Handshake(first, room, **(a or {}))
    hb = handshake.Handshake(second, room, **(b or {}))
    ha.receive_identity(hb.identity_payload())
    hb.receive_identity(ha.identity_payload())
    sb = hb.receive_dh(ha.dh_payload())
    sa = ha.receive_dh(hb.dh_payload())
    return sa, sb


@pytest.fixture(scope="module")
def signed_pair(alice, bob):
    return connect(alice, bob)


@pytest.fixture(scope="module")
def deniable_pair(alice, bob):
    return connect(alice, bob, a={"deniable": True}, b={"deniable": True})
