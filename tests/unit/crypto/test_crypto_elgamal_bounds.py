"""Boundaries of the signature checks the mutation run found unpinned: the hash policy by
value, the key ranges beyond p and q, the smallest valid s, the payload parser."""

from __future__ import annotations

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
