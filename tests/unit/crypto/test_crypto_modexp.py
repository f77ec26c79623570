"""The gmpy2 and pure-Python backends give identical results, and the protocol runs on both."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley_crypto import groups
from parley_crypto._primitives import modexp
from tests.unit.crypto.conftest import connect

P = groups.get("ffdhe2048").p
big = st.integers(0, 2**2100)


def test_both_backends_present():
    assert modexp.BACKENDS == ("gmpy2", "python")
    assert modexp.backend() == "gmpy2"


@settings(max_examples=25, deadline=None)
@given(base=big, exponent=big, modulus=st.sampled_from([P, 353, 2**61 - 1, 1009 * 1013]))
def test_powmod_backends_agree(base, exponent, modulus):
    results = []
    for name in modexp.BACKENDS:
        with modexp.use_backend(name):
            results.append(
                (
                    modexp.powmod(base, exponent, modulus),
                    modexp.powmod_fixed(base, exponent, modulus),
                )
            )
    assert results[0] == results[1] == ((pow(base, exponent, modulus),) * 2)
    assert all(type(v) is int for pair in results for v in pair)


@settings(max_examples=50, deadline=None)
@given(a=st.integers(-(2**2100), 2**2100), n=st.sampled_from([P, 353, 9, 15, 1001, 2**127 - 1]))
def test_jacobi_backends_agree(a, n):
    values = []
    for name in modexp.BACKENDS:
        with modexp.use_backend(name):
            values.append(modexp.jacobi(a, n))
    assert values[0] == values[1]
    if n in (P, 353, 2**127 - 1) and a % n:
        assert values[0] == (1 if pow(a, (n - 1) // 2, n) == 1 else -1)  # Euler's criterion


@settings(max_examples=25, deadline=None)
@given(a=st.integers(1, 2**2100))
def test_invert_and_gcd_backends_agree(a):
    for modulus in (P, P - 1):
        outcomes = []
        for name in modexp.BACKENDS:
            with modexp.use_backend(name):
                try:
                    outcomes.append((modexp.invert(a, modulus), modexp.gcd(a, modulus)))
                except ValueError:
                    outcomes.append(("none", modexp.gcd(a, modulus)))
        assert outcomes[0] == outcomes[1]
        if outcomes[0][0] != "none":
            assert outcomes[0][0] * a % modulus == 1


@pytest.mark.parametrize(
    ("n", "prime"),
    [
        (2, True),
        (3, True),
        (561, False),
        (1105, False),
        (2**61 - 1, True),
        (2**67 - 1, False),
        (1, False),
        (0, False),
    ],
)
def test_miller_rabin(n, prime):
    for name in modexp.BACKENDS:
        with modexp.use_backend(name):
            assert modexp.is_probable_prime(n) is prime


def test_bad_inputs():
    with pytest.raises(ValueError):
        modexp.set_backend("openssl")
    with pytest.raises(ValueError):
        modexp.jacobi(3, 10)


def test_handshake_across_backends(alice, bob):
    # Alice computes with pure Python, Bob with gmpy2; the result must be the same protocol.
    from parley_crypto import handshake

    with modexp.use_backend("python"):
        ha = handshake.Handshake(alice, "r")
        a_payload = ha.dh_payload()
    hb = handshake.Handshake(bob, "r")
    hb.receive_identity(alice.public_payload())
    ha.receive_identity(bob.public_payload())
    cb = hb.receive_dh(a_payload)
    with modexp.use_backend("python"):
        ca = ha.receive_dh(hb.dh_payload())
        sa = ha.receive_confirm(cb)
    sb = hb.receive_confirm(ca)
    with modexp.use_backend("python"):
        envelope = sa.seal(b"from python")
        assert sa.open(sb.seal(b"from gmp")) == b"from gmp"
    assert sb.open(envelope) == b"from python"
    assert modexp.backend() == "gmpy2"


def test_session_on_python_backend(alice, bob):
    with modexp.use_backend("python"):
        sa, sb = connect(alice, bob)
        assert sb.open(sa.seal(b"pure")) == b"pure"


@pytest.mark.parametrize("backend", modexp.BACKENDS)
@settings(max_examples=20, deadline=None)
@given(
    exponent=st.one_of(
        st.integers(0, 2**300), st.integers(0, 2**2048), st.integers(2**2048, 2**2100)
    )
)
def test_fixed_base_table_matches_pow(backend, exponent):
    with modexp.use_backend(backend):
        modexp.precompute(2, P)
        assert (backend, 2, P) in modexp._tables
        assert modexp.powmod_fixed(2, exponent, P) == pow(2, exponent, P)


def test_fixed_base_table_is_built_after_repeated_use():
    modulus = 2**127 - 1
    key = (modexp.backend(), 3, modulus)
    modexp._tables.pop(key, None)
    modexp._uses.pop(key, None)
    results = [modexp.powmod_fixed(3, e, modulus) for e in range(1, 10)]
    assert key in modexp._tables
    assert results == [pow(3, e, modulus) for e in range(1, 10)]
