"""Arbitrary JSON at every entry point: only the documented error, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley_crypto import errors, handshake
from parley_crypto.identity import PeerIdentity

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
    with pytest.raises(errors.HandshakeError):
        PeerIdentity.from_payload(payload)


@FUZZ
@given(payload=st.one_of(json_values, _with_keys(["v", "dh", "nonce", "hash", "deniable", "sig"])))
def test_handshake_payload_fuzz(alice, bob, payload):
    hb = handshake.Handshake(bob, "r", peer=alice.public)
    with pytest.raises(errors.HandshakeError):
        hb.receive_dh(payload)


@FUZZ
@given(
    envelope=st.one_of(json_values, _with_keys(["v", "seq", "iv", "ct", "mac", "sig"])),
    signed=st.booleans(),
)
def test_envelope_fuzz(signed_pair, deniable_pair, envelope, signed):
    receiver = (signed_pair if signed else deniable_pair)[1]
    with pytest.raises(errors.InvalidMessage):
        receiver.open(envelope)


@FUZZ
@given(sig=json_values)
def test_handshake_sig_field_fuzz(alice, bob, sig):
    ha = handshake.Handshake(alice, "r")
    hb = handshake.Handshake(bob, "r", peer=alice.public)
    with pytest.raises(errors.HandshakeError):
        hb.receive_dh(dict(ha.dh_payload(), sig=sig))
