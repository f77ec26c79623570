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


def exchange(
    first: identity.Identity, second: identity.Identity, room: str = "room-1", *, a=None, b=None
):
    """Two fresh Handshakes that have swapped identities and DH payloads; returns
    (ha, hb, confirm_a, confirm_b) with the KEY_CONFIRM payloads not yet delivered."""
    ha = handshake.Handshake(first, room, **(a or {}))
    hb = handshake.Handshake(second, room, **(b or {}))
    ha.receive_identity(hb.identity_payload())
    hb.receive_identity(ha.identity_payload())
    cb = hb.receive_dh(ha.dh_payload())
    ca = ha.receive_dh(hb.dh_payload())
    return ha, hb, ca, cb


def connect(
    first: identity.Identity, second: identity.Identity, room: str = "room-1", *, a=None, b=None
):
    """Run a full v2 handshake (offers, then both KEY_CONFIRMs); returns (session_first,
    session_second). ``a`` / ``b`` are keyword options for the first / second Handshake."""
    ha, hb, ca, cb = exchange(first, second, room, a=a, b=b)
    return ha.receive_confirm(cb), hb.receive_confirm(ca)


@pytest.fixture(scope="module")
def signed_pair(alice, bob):
    return connect(alice, bob)


@pytest.fixture(scope="module")
def deniable_pair(alice, bob):
    return connect(alice, bob, a={"deniable": True}, b={"deniable": True})
