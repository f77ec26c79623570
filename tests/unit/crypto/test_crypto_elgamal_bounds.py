"""Boundaries of the signature checks the mutation run found unpinned: the hash policy by
value, the key ranges beyond p and q, the smallest valid s, the payload parser."""

from __future__ import annotations

import dataclasses
import types

import pytest

from parley_crypto import elgamal, errors, groups
from parley_crypto._primitives import elgamal as raw
from parley_crypto._primitives import modexp

GROUP = groups.get("ffdhe2048")
P, Q = GROUP.p, GROUP.q


def fresh(text: str) -> str:
    """An equal string that is not the interned literal (as argv or JSON would give)."""
    return "".join(list(text))


def test_hash_policy_compares_values():
    assert elgamal.peer_hash_allowed(fresh("sha1"), fresh("sha1"))
    assert elgamal.peer_hash_allowed(fresh("sha256"), fresh("sha256"))
    assert elgamal.peer_hash_allowed(fresh("sha1"), fresh("sha256"))


@pytest.mark.parametrize("peer", ["sha512", "sha3_256", "zzz", "sha1", "md5", "", "SHA256"])
def test_hash_policy_refuses_anything_but_sha256_under_sha256(peer):
    assert not elgamal.peer_hash_allowed("sha256", peer)


def test_verify_key_above_p_is_refused_even_when_congruent_to_a_valid_key():
    y = elgamal.generate(GROUP).verify_key.y
    for bad in (y + P, P + 1, P - 1, P):  # y + P and P + 1 pass a subgroup test mod p
        with pytest.raises(errors.InvalidPublicKey, match="range"):
            elgamal.VerifyKey(GROUP, bad)


@pytest.mark.parametrize("x", [0, Q, Q + 1, 2 * Q + 5])
def test_signing_key_exponent_range(x):
    with pytest.raises(ValueError, match="range"):
        elgamal.SigningKey(GROUP, x)


def test_signing_key_exponent_bounds_inclusive():
    assert elgamal.SigningKey(GROUP, 1).verify_key.y == GROUP.g
    assert elgamal.SigningKey(GROUP, Q - 1).verify_key.y == pow(GROUP.g, Q - 1, P)


def test_smallest_valid_s_verifies():
    """s = 1 is in range (0 < s < q): choose x so that k^-1 (h - x r) = 1 mod q."""
    message = b"boundary"
    h = int.from_bytes(elgamal.digest(message), "big")
    k = 12345
    r = pow(GROUP.g, k, P)
    x = (h - k) * modexp.invert(r, Q) % Q
    assert raw.sign(P, GROUP.g, x, h, k) == (r, 1)
    key = elgamal.SigningKey(GROUP, x)
    assert elgamal.verify(key.verify_key, message, elgamal.Signature(r, 1))
    assert not elgamal.verify(key.verify_key, message + b"!", elgamal.Signature(r, 1))


def test_signature_payload_round_trip_and_refusals():
    signature = elgamal.sign(elgamal.generate(GROUP), b"m")
    payload = signature.to_payload()
    assert payload == {"r": format(signature.r, "x"), "s": format(signature.s, "x")}
    parsed = elgamal.Signature.from_payload(payload, GROUP, errors.HandshakeError, "sig")
    assert parsed == signature
    for bad in ({"r": "0", "s": "1"}, {"r": "1", "s": "0"}, {"r": "1"}, "x"):
        with pytest.raises(errors.HandshakeError, match="^sig"):
            elgamal.Signature.from_payload(bad, GROUP, errors.HandshakeError, "sig")


def test_s_equal_to_q_is_refused_though_the_equation_holds():
    """s = q acts as s = 0 (r^q = 1): with x = h / r the equation holds for (r, q), so only
    the range check s < q stops this second signature of the same (message, k)."""
    message = b"boundary"
    h = int.from_bytes(elgamal.digest(message), "big")
    r = pow(GROUP.g, 777, P)
    key = elgamal.SigningKey(GROUP, h * modexp.invert(r, Q) % Q)
    assert raw.verify(P, GROUP.g, key.verify_key.y, h, r, Q)  # the raw equation is fooled
    assert not elgamal.verify(key.verify_key, message, elgamal.Signature(r, Q))
    # and s = 0 itself (which the Signature class cannot even hold)
    assert raw.verify(P, GROUP.g, key.verify_key.y, h, r, 0)
    assert not elgamal.verify(key.verify_key, message, types.SimpleNamespace(r=r, s=0))


def test_generate_uses_the_group_it_is_given():
    other = groups.get("ffdhe3072")
    key = elgamal.generate(other)
    assert key.group is other and key.verify_key.group is other
    assert elgamal.generate().group.name == groups.DEFAULT


def test_largest_y_below_p_minus_1_is_accepted():
    """p - 2 is a valid key where it lies in the subgroup: p = 11 (3 mod 8, where -2 is a
    residue), q = 5, subgroup {1, 3, 4, 5, 9}. (In the built-in groups, all 7 mod 8, it never
    does.)"""
    toy = groups.Group("toy-11", 11, 3)
    assert elgamal.VerifyKey(toy, 9).y == 9
    assert [y for y in range(2, 10) if toy.in_subgroup(y)] == [3, 4, 5, 9]
    for bad in (10, 11, 1):
        with pytest.raises(errors.InvalidPublicKey):
            elgamal.VerifyKey(toy, bad)


def test_r_above_p_is_refused_though_the_equation_holds():
    """r' = r + p is the same base mod p; with s computed for r' the raw equation holds, so
    only the range check r < p keeps signatures canonical (one encoding per signature)."""
    message = b"boundary"
    h = int.from_bytes(elgamal.digest(message), "big")
    key = elgamal.SigningKey(GROUP, 987654321)
    k = 4242
    r_big = pow(GROUP.g, k, P) + P
    s = modexp.invert(k, Q) * (h - key.x * r_big) % Q
    assert raw.verify(P, GROUP.g, key.verify_key.y, h, r_big, s)  # the raw equation is fooled
    assert GROUP.in_subgroup(r_big)  # and so is the subgroup test
    assert not elgamal.verify(key.verify_key, message, elgamal.Signature(r_big, s))


def _forged(r: int, key: elgamal.SigningKey, h: int, k: int) -> int:
    """The s that makes y^r g^(k s) = g^h hold for this exponent r (base g^k mod p)."""
    return modexp.invert(k, Q) * (h - key.x * r) % Q


@pytest.mark.parametrize("shift", [-P, 0], ids=["r-p", "r=1"])
def test_r_of_1_or_below_is_refused_though_the_equation_holds(shift):
    """verify() takes any object with r and s (never trusting the Signature class's own
    checks): r = 1 (y^1 = g^h for the key x = h) and a negative r congruent to a valid one
    both satisfy the raw equation and must still be refused."""
    message = b"boundary"
    h = int.from_bytes(elgamal.digest(message), "big")
    if shift == 0:  # r = 1: any s verifies for the key whose x is h
        key, r, s = elgamal.SigningKey(GROUP, h % Q), 1, 5
    else:
        key, k = elgamal.SigningKey(GROUP, 987654321), 4242
        r = pow(GROUP.g, k, P) + shift
        s = _forged(r, key, h, k)
    assert raw.verify(P, GROUP.g, key.verify_key.y, h, r, s)
    assert not elgamal.verify(key.verify_key, message, types.SimpleNamespace(r=r, s=s))


def test_negative_s_congruent_to_a_valid_one_is_refused():
    """(r, s - q) is the same signature mod q; only the range check 0 < s refuses it."""
    key = elgamal.SigningKey(GROUP, 987654321)
    signature = elgamal.sign(key, b"m")
    h = int.from_bytes(elgamal.digest(b"m"), "big")
    shifted = types.SimpleNamespace(r=signature.r, s=signature.s - Q)
    assert raw.verify(P, GROUP.g, key.verify_key.y, h, shifted.r, shifted.s)  # r^-q = 1
    assert elgamal.verify(key.verify_key, b"m", signature)
    assert not elgamal.verify(key.verify_key, b"m", shifted)


def test_signature_objects_hold_positive_ints_only():
    assert elgamal.Signature(1, 1) == elgamal.Signature(1, 1)  # ranges are verify()'s job
    for r, s in ((0, 1), (1, 0), (-1, 1), (1, -1)):
        with pytest.raises(ValueError, match="positive"):
            elgamal.Signature(r, s)
    for r, s in ((True, 1), (1, 1.0), ("1", 1)):
        with pytest.raises(TypeError):
            elgamal.Signature(r, s)


def test_key_and_signature_objects_are_immutable():
    key = elgamal.SigningKey(GROUP, 5)
    for obj, attr in ((key, "x"), (key.verify_key, "y"), (elgamal.Signature(3, 4), "s")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, 7)


def test_hash_policy_under_legacy_sha1_still_refuses_unknown_hashes():
    assert elgamal.peer_hash_allowed("sha1", "sha1")
    for peer in ("md5", "", "sha0"):
        assert not elgamal.peer_hash_allowed("sha1", peer)
    assert not elgamal.peer_hash_allowed("md5", "sha1")  # only a local sha1 allows sha1


@pytest.mark.parametrize("y", [0, -1, -5])
def test_verify_key_below_two_is_refused_as_out_of_range(y):
    with pytest.raises(errors.InvalidPublicKey, match="range"):
        elgamal.VerifyKey(GROUP, y)


def test_r_equal_to_g_is_a_valid_signature():
    """k = 1 gives r = g = 2, the smallest r a signer can produce."""
    key = elgamal.SigningKey(GROUP, 987654321)
    h = int.from_bytes(elgamal.digest(b"m"), "big")
    r, s = raw.sign(P, GROUP.g, key.x, h, 1)
    assert r == GROUP.g == 2
    assert elgamal.verify(key.verify_key, b"m", elgamal.Signature(r, s))


# ----- s = 0 (HAC Note 11.65): a verifier refuses it, so the signer never emits it ------------
X_S0 = 0x1F2E3D4C5B6A79880123456789ABCDEF


def _h_with_s_zero_for(k: int) -> int:
    """The message representative for which nonce k gives s = 0 under X_S0: h = x r mod q."""
    return X_S0 * pow(2, k, P) % Q


def test_a_given_k_that_gives_s_zero_is_refused_not_retried(monkeypatch):
    calls = []
    real = raw.modexp.powmod_fixed

    def once(base, exponent, modulus):
        calls.append(exponent)
        if len(calls) > 1:  # retrying the same k could only loop forever
            raise RuntimeError("sign retried a given k")
        return real(base, exponent, modulus)

    monkeypatch.setattr(raw.modexp, "powmod_fixed", once)
    with pytest.raises(ValueError, match="s = 0"):
        raw.sign(P, 2, X_S0, _h_with_s_zero_for(3), k=3)


def test_a_drawn_k_that_gives_s_zero_is_drawn_again(monkeypatch):
    draws = iter([2, 3])  # k = 3 (s = 0 for this h), then k = 4
    monkeypatch.setattr(raw.secrets, "randbelow", lambda bound: next(draws))
    h = _h_with_s_zero_for(3)
    r, s = raw.sign(P, 2, X_S0, h)
    assert r == pow(2, 4, P) and s == pow(4, -1, Q) * (h - X_S0 * r) % Q and 0 < s < Q
    assert raw.verify(P, 2, pow(2, X_S0, P), h, r, s)
