"""Cross-checks against an independent implementation: OpenSSL through `cryptography`."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley_crypto import aes_cfb, dh, groups, kdf

with warnings.catch_warnings():
    # Finite-field DH and CFB are deprecated in cryptography; they are only an oracle here.
    warnings.simplefilter("ignore")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import dh as ossl_dh
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    try:
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB


def _ossl_params(group):
    return ossl_dh.DHParameterNumbers(group.p, group.g).parameters()


def _ossl_private(group, x):
    params = ossl_dh.DHParameterNumbers(group.p, group.g)
    public = ossl_dh.DHPublicNumbers(pow(group.g, x, group.p), params)
    return ossl_dh.DHPrivateNumbers(x, public).private_key()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("name", ["ffdhe2048", "modp2048", "ffdhe3072"])
def test_dh_shared_secret_equals_openssl_same_keys(name):
    group = groups.get(name)
    ours_a, ours_b = dh.generate(group), dh.generate(group)
    theirs_a = _ossl_private(group, ours_a.x)
    assert theirs_a.public_key().public_numbers().y == ours_a.public
    theirs_b_pub = ossl_dh.DHPublicNumbers(
        ours_b.public, ossl_dh.DHParameterNumbers(group.p, 2)
    ).public_key()
    assert theirs_a.exchange(theirs_b_pub) == dh.shared_secret(ours_a, ours_b.public)


def test_dh_with_openssl_generated_peer():
    group = groups.get("ffdhe2048")
    openssl_key = _ossl_params(group).generate_private_key()
    ours = dh.generate(group)
    openssl_y = openssl_key.public_key().public_numbers().y
    our_pub_for_ossl = ossl_dh.DHPublicNumbers(
        ours.public, ossl_dh.DHParameterNumbers(group.p, 2)
    ).public_key()
    assert dh.shared_secret(ours, openssl_y) == openssl_key.exchange(our_pub_for_ossl)


@settings(max_examples=40, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    iv=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=600),
)
def test_aes_cfb_equals_openssl_cfb128(key, iv, data):
    encryptor = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
    expected = encryptor.update(data) + encryptor.finalize()
    assert aes_cfb.encrypt(key, iv, data) == expected
    assert aes_cfb.decrypt(key, iv, expected) == data


@settings(max_examples=40, deadline=None)
@given(
    ikm=st.binary(max_size=100),
    salt=st.binary(max_size=80),
    info=st.binary(max_size=80),
    length=st.integers(1, 300),
)
def test_hkdf_equals_openssl(ikm, salt, info, length):
    expected = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(
        ikm
    )
    assert kdf.hkdf_sha256(ikm, salt, info, length) == expected
