"""ElGamal signatures (HAC 11.64 in the order-q subgroup): round trips, range checks,
malleability and parity leak gone, forgeries, key objects."""

from __future__ import annotations

import hashlib

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


# Fixed-k known answer: x, k and the message are fixed, r and s are recomputed below with
# plain pow() and checked against the stored digest of this exact pair (a regression vector).
KAT_X = 0x1F2E3D4C5B6A79880123456789ABCDEF
KAT_K = 0x0F1E2D3C4B5A69788796A5B4C3D2E1F00123456789
KAT_DIGEST = "3fe289a4649c4e85bdb17c31d51097e42e2d0770f6f603e0dd31d2dbd06eeecb"


def test_fixed_k_known_answer_in_the_subgroup():
    h = int.from_bytes(elgamal.digest(b"parley kat"), "big")
    r, s = raw.sign(P, 2, KAT_X, h, k=KAT_K)
    assert r == pow(2, KAT_K, P)
    assert s == pow(KAT_K, -1, Q) * (h - KAT_X * r) % Q and 0 < s < Q
    pair = f"{r:x}:{s:x}".encode()
    assert hashlib.sha256(pair).hexdigest() == KAT_DIGEST
    key = elgamal.SigningKey(GROUP, KAT_X)
    assert elgamal.verify(key.verify_key, b"parley kat", elgamal.Signature(r, s))


def test_k_is_drawn_in_1_to_q_minus_1(monkeypatch, key):
    seen = []

    def draw(bound):
        seen.append(bound)
        return 2  # k = 3

    monkeypatch.setattr(raw.secrets, "randbelow", draw)
    signature = elgamal.sign(key, b"m")
    assert seen == [Q - 1] and signature.r == pow(2, 3, P)
    assert elgamal.verify(key.verify_key, b"m", signature)


def test_malleated_s_plus_q_is_rejected(key, good):
    # Round 1 signed mod p-1 = 2q: (r, s + q) verified for every signature.
    assert raw.verify(P, 2, key.verify_key.y, _h(b"message"), good.r, good.s + Q)
    assert not elgamal.verify(key.verify_key, b"message", elgamal.Signature(good.r, good.s + Q))
    assert good.s < Q


@settings(max_examples=20, deadline=None)
@given(delta=st.integers(min_value=1, max_value=(1 << 2048)))
def test_no_other_s_verifies(key, good, delta):
    other = (good.s + delta) % (P - 1) or 1
    if other == good.s:
        return
    assert not elgamal.verify(key.verify_key, b"message", elgamal.Signature(good.r, other))


def test_parity_of_s_does_not_reveal_x():
    # Round 1: k odd, s mod 2 = (h - x r) mod 2, so for odd r, x mod 2 = (h - s) mod 2 for
    # every signature. Now that guess must be wrong about half the time.
    key = elgamal.generate(GROUP)
    guesses = []
    for i in range(60):
        message = b"parity %d" % i
        signature = elgamal.sign(key, message)
        if signature.r % 2:
            guesses.append((_h(message) - signature.s) % 2)
    assert len(guesses) >= 10  # about half of 60 (failing this has odds below 2^-20)
    assert 0 < sum(guesses) < len(guesses)  # constant only with odds 2^-(n-1)


def _h(message: bytes) -> int:
    return int.from_bytes(elgamal.digest(message), "big")


def test_hash_policy_and_display():
    assert elgamal.peer_hash_allowed("sha256", "sha256")
    assert not elgamal.peer_hash_allowed("sha256", "sha1")
    assert elgamal.peer_hash_allowed("sha1", "sha1")
    assert elgamal.peer_hash_allowed("sha1", "sha256")
    assert elgamal.display_name("sha1") == "legacy SHA-1"
    assert elgamal.display_name("sha256") == "SHA-256"
    with pytest.raises(ValueError):
        elgamal.display_name("md5")


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
        (1, "good"),
        ("good", Q),
        ("good", Q + 1),
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
