"""ElGamal signatures (HAC 11.64): round trips, range checks, forgeries, key objects."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley_crypto import elgamal, errors, groups
from parley_crypto._primitives import elgamal as raw
from parley_crypto._primitives import modexp

GROUP = groups.get("ffdhe2048")
P, Q = GROUP.p, GROUP.q


@pytest.fixture(scope="module")
def key():
    return elgamal.generate(GROUP)


@pytest.fixture(scope="module")
def good(key):
    return elgamal.sign(key, b"message")


@settings(max_examples=10, deadline=None)
@given(message=st.binary(max_size=300), hash=st.sampled_from(elgamal.HASHES))
def test_sign_verify_round_trip(key, message, hash):
    signature = elgamal.sign(key, message, hash)
    assert elgamal.verify(key.verify_key, message, signature, hash)
    assert not elgamal.verify(key.verify_key, message + b"!", signature, hash)
    other = "sha1" if hash == "sha256" else "sha256"
    assert not elgamal.verify(key.verify_key, message, signature, other)


def test_fresh_k_each_time(key):
    one, two = elgamal.sign(key, b"same"), elgamal.sign(key, b"same")
    assert one.r != two.r and one.s != two.s


def test_wrong_key_fails(key, good):
    assert not elgamal.verify(elgamal.generate(GROUP).verify_key, b"message", good)


def test_hac_equations_and_k_coprime(monkeypatch, key):
    # Feed k = 2 (shares a factor with p-1, must be skipped) and then k = 3.
    draws = iter([1, 2])
    monkeypatch.setattr(raw.secrets, "randbelow", lambda bound: next(draws))
    signature = elgamal.sign(key, b"m")
    h = int.from_bytes(elgamal.digest(b"m"), "big")
    assert signature.r == pow(2, 3, P)
    assert signature.s == pow(3, -1, P - 1) * (h - key.x * signature.r) % (P - 1)
    assert elgamal.verify(key.verify_key, b"m", signature)


@pytest.mark.parametrize(
    ("r", "s"),
    [
        (0, 1),
        (-1, 1),
        (P, 1),
        (P + 1, 1),
        ("r", 1),
        (None, None),
        (True, 1),
        ("good", 0),
        ("good", -1),
        ("good", P - 1),
        ("good", P),
        ("good", "huge"),
    ],
)
def test_out_of_range_signatures_are_false(key, good, r, s):
    class Raw:  # bypasses Signature's own checks, as a hostile caller could
        pass

    bad = Raw()
    bad.r = good.r if r == "good" else r
    bad.s = {"good": good.s, "huge": 2**100_000}.get(s, s) if isinstance(s, str) else s
    assert elgamal.verify(key.verify_key, b"message", bad) is False


@pytest.mark.parametrize("sig", [None, object(), (1, 2), "sig"])
def test_verify_never_raises_on_garbage(key, sig):
    assert elgamal.verify(key.verify_key, b"message", sig) is False


def test_bleichenbacher_forgery_is_rejected(key):
    # r = (p-1)/2, s = -h mod q (even): passes the bare HAC equation for any key, because g = 2
    # divides p-1. It is outside the order-q subgroup, which verify() checks.
    h = int.from_bytes(elgamal.digest(b"forged"), "big")
    s = -h % Q
    s = s if s % 2 == 0 else s + Q
    assert raw.verify(P, 2, key.verify_key.y, h, Q, s)  # the attack works on the bare equation
    assert not elgamal.verify(key.verify_key, b"forged", elgamal.Signature(Q, s))


def test_r_outside_subgroup_is_rejected(key):
    assert not elgamal.verify(key.verify_key, b"m", elgamal.Signature(P - 2, 5))


@pytest.mark.parametrize(
    ("r", "s", "error"),
    [
        (0, 1, ValueError),
        (1, 0, ValueError),
        (-1, 1, ValueError),
        (True, 1, TypeError),
        (1, "2", TypeError),
    ],
)
def test_signature_object_validates_itself(r, s, error):
    with pytest.raises(error):
        elgamal.Signature(r, s)


@pytest.mark.parametrize("y", [0, 1, P - 1, P, P - 2, -4])
def test_verify_key_validates_itself(y):
    with pytest.raises(errors.InvalidPublicKey):
        elgamal.VerifyKey(GROUP, y)


@pytest.mark.parametrize("x", [0, Q, -1])
def test_signing_key_validates_itself(x):
    with pytest.raises(ValueError):
        elgamal.SigningKey(GROUP, x)


def test_signing_key_derives_verify_key(key):
    assert key.verify_key.y == modexp.powmod(2, key.x, P)
    assert str(key.x) not in repr(key)


def test_unknown_hash_is_a_programming_error(key, good):
    with pytest.raises(ValueError):
        elgamal.sign(key, b"m", "md5")
    with pytest.raises(ValueError):
        elgamal.verify(key.verify_key, b"m", good, "md5")
    with pytest.raises(TypeError):
        elgamal.sign(key, "text")
