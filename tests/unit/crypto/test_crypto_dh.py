"""Diffie-Hellman: key generation, agreement, and every peer-value rejection rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley_crypto import dh, errors, groups

GROUP = groups.get("ffdhe2048")
P = GROUP.p


@pytest.fixture(scope="module")
def key():
    return dh.generate(GROUP)


def test_generate_sizes_and_agreement(key):
    other = dh.generate()
    assert other.group is GROUP
    assert 2 <= key.x < 2**GROUP.exponent_bits
    assert key.public == pow(2, key.x, P) and pow(key.public, GROUP.q, P) == 1
    secret = dh.shared_secret(key, other.public)
    assert secret == dh.shared_secret(other, key.public)
    assert len(secret) == GROUP.byte_length
    assert int.from_bytes(secret, "big") == pow(other.public, key.x, P)


def test_exponents_are_fresh_and_full_width():
    xs = [dh.generate(GROUP).x for _ in range(8)]
    assert len(set(xs)) == 8
    assert max(x.bit_length() for x in xs) > GROUP.exponent_bits - 8


def test_private_key_repr_hides_exponent(key):
    assert str(key.x) not in repr(key)


@pytest.mark.parametrize(
    "y",
    [0, 1, P - 1, P, P + 1, -1, -5, P - 2, 2**100_000, True],
    ids=["0", "1", "p-1", "p", "p+1", "neg1", "neg5", "outside-subgroup", "huge", "bool"],
)
def test_invalid_peer_values_are_rejected(key, y):
    with pytest.raises(errors.InvalidPublicKey):
        dh.shared_secret(key, y)
    with pytest.raises(errors.InvalidPublicKey):
        dh.DHPublicKey(GROUP, y)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, P - 2))
def test_subgroup_check_equals_euler_criterion(y):
    # Every value is accepted exactly when y^q = 1 (mod p).
    expected = pow(y, GROUP.q, P) == 1
    try:
        dh.validate_public(GROUP, y)
        accepted = True
    except errors.InvalidPublicKey:
        accepted = False
    assert accepted == expected


@pytest.mark.parametrize("y", ["5", 5.0, None, b"\x05"])
def test_non_integer_peer_values(key, y):
    with pytest.raises(errors.InvalidPublicKey):
        dh.shared_secret(key, y)


def test_shared_secret_of_one_is_rejected():
    # p = 13 (not a safe prime, accepted only as an unverified weak group), g = 2 is a
    # primitive root so there is no subgroup check; Y = 3 has order 3 and x = 3 gives 1.
    weak = groups.Group("weak13", 13, 2)
    with pytest.raises(errors.InvalidPublicKey, match="is 1"):
        dh.shared_secret(dh.DHPrivateKey(weak, 3), 3)


@pytest.mark.parametrize("x", [0, 1, GROUP.q, GROUP.q + 1, -3])
def test_private_exponent_range(x):
    with pytest.raises(ValueError):
        dh.DHPrivateKey(GROUP, x)


def test_private_exponent_type():
    with pytest.raises(TypeError):
        dh.DHPrivateKey(GROUP, True)
