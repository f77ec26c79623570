"""Arbitrary JSON at every entry point: only the documented error, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_crypto import errors, handshake
from parley_crypto.identity import PeerIdentity
from tests.unit.crypto.conftest import exchange

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=520),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _with_keys(keys):
    """Dicts with the right keys and arbitrary values: gets past the shape check."""
    return st.fixed_dictionaries({k: json_values for k in keys})


@FUZZ
@given(payload=st.one_of(json_values, _with_keys(["v", "name", "group", "y"])))
def test_identity_payload_fuzz(payload):
    with pytest.raises((errors.HandshakeError, errors.OlderPeer)):
        PeerIdentity.from_payload(payload)


@FUZZ
@given(payload=st.one_of(json_values, _with_keys(["v", "dh", "nonce", "hash", "deniable"])))
def test_handshake_payload_fuzz(alice, bob, payload):
    hb = handshake.Handshake(bob, "r", peer=alice.public)
    with pytest.raises((errors.HandshakeError, errors.OlderPeer)):
        hb.receive_dh(payload)


@FUZZ
@given(payload=st.one_of(json_values, _with_keys(["v", "sig", "mac"])))
def test_key_confirm_fuzz(alice, bob, payload):
    ha, hb, _, _ = exchange(alice, bob)
    with pytest.raises((errors.HandshakeError, errors.OlderPeer)):
        ha.receive_confirm(payload)


@FUZZ
@given(
    envelope=st.one_of(json_values, _with_keys(["v", "dh", "pn", "n", "ct", "mac", "sig"])),
    signed=st.booleans(),
)
def test_envelope_fuzz(signed_pair, deniable_pair, envelope, signed):
    receiver = (signed_pair if signed else deniable_pair)[1]
    with pytest.raises((errors.InvalidMessage, errors.OlderPeer)):
        receiver.open(envelope)


@FUZZ
@given(sig=json_values)
def test_key_confirm_sig_field_fuzz(alice, bob, sig):
    ha, hb, ca, _ = exchange(alice, bob)
    with pytest.raises(errors.HandshakeError):
        hb.receive_confirm(dict(ca, sig=sig))
