"""Crypto benchmark: parley_crypto on gmpy2 and pure Python, side by side with OpenSSL.

Run: .venv/bin/python bench/crypto.py [--repeat N]

Every figure is the median wall time of N runs (fewer for the pure-Python backend) on
ffdhe2048. OpenSSL is reached through the `cryptography` package (test/bench dependency
only). The fixed-base tables for g (and for the signer's key, as a session has after a few
messages) are built before timing; their one-off cost is shown on its own row, and verify
is also timed for keys seen for the first time. "handshake" is protocol v2 end to end
(identities, offers, both KEY_CONFIRMs verified, ratchet seeded); "ratchet step" is one DH
ratchet step (DHRatchet: a key pair and two DH computations); seal+open is one 1 kB message
in one direction (a symmetric-chain step, no DH step). The last line is machine-readable:
handshake_ms=<x> ratchet_step_ms=<x> seal_open_signed_ms=<x> seal_open_deniable_ms=<x>
dh_keygen_vs_openssl=<ratio>
"""

from __future__ import annotations

import argparse
import copy
import os
import secrets
import statistics
import sys
import time
import warnings
from collections.abc import Callable

from parley_crypto import dh, elgamal, groups, handshake, identity, ratchet
from parley_crypto._primitives import modexp

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # cryptography deprecates finite-field DH
    from cryptography.hazmat.primitives.asymmetric import dh as ossl_dh

TARGETS = {  # issue 9's speed budget (ffdhe2048, gmpy2)
    "handshake": 25.0,
    "ratchet_step": 3.0,
    "seal_open_signed": 6.0,
    "seal_open_deniable": 0.3,
    "keygen_ratio": 0.5,
}


def median_ms(func: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def paired_median_ms(
    a: Callable[[], object], b: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """Median times of two functions measured alternately, so load spikes hit both alike."""
    ta, tb = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        a()
        ta.append(time.perf_counter() - start)
        start = time.perf_counter()
        b()
        tb.append(time.perf_counter() - start)
    return statistics.median(ta) * 1000, statistics.median(tb) * 1000


def full_handshake(alice: identity.Identity, bob: identity.Identity, **options):
    """Both parties, from fresh objects to two sessions (v2: offers, then KEY_CONFIRMs)."""
    ha = handshake.Handshake(alice, "bench", **options)
    hb = handshake.Handshake(bob, "bench", **options)
    ha.receive_identity(hb.identity_payload())
    hb.receive_identity(ha.identity_payload())
    cb = hb.receive_dh(ha.dh_payload())
    ca = ha.receive_dh(hb.dh_payload())
    return ha.receive_confirm(cb), hb.receive_confirm(ca)


def ratchet_step(session, peer_public: int) -> None:
    """One DH ratchet step on a copy of ``session``'s state (the state itself is kept)."""
    state = copy.copy(session._state)
    ratchet.DHRatchet(state, ratchet.Header(peer_public, 0, 0))


def measure_backend(name: str, repeat: int, group, keys) -> dict[str, float]:
    """Time every operation on one modexp backend."""
    alice, bob = keys
    base, exponent = secrets.randbelow(group.p), secrets.randbits(2048)
    peer = dh.generate(group).public
    with modexp.use_backend(name):
        start = time.perf_counter()
        modexp.precompute(group.g, group.p)
        results = {"table": (time.perf_counter() - start) * 1000}
        results["modexp"] = median_ms(lambda: modexp.powmod(base, exponent, group.p), repeat)
        results["keygen"] = median_ms(lambda: dh.generate(group), repeat)
        own = dh.generate(group)
        results["exchange"] = median_ms(lambda: dh.shared_secret(own, peer), repeat)
        signing = alice.signing_key
        signature = elgamal.sign(signing, b"bench message")
        results["sign"] = median_ms(lambda: elgamal.sign(signing, b"bench message"), repeat)
        modexp.precompute(signing.verify_key.y, group.p)  # what a session reaches after 4 uses
        results["verify"] = median_ms(
            lambda: elgamal.verify(signing.verify_key, b"bench message", signature), repeat
        )
        fresh = [elgamal.generate(group) for _ in range(repeat)]
        pairs = iter([(k.verify_key, elgamal.sign(k, b"bench message")) for k in fresh])

        def verify_cold() -> bool:  # a key seen for the first time: no table for y
            verify_key, sig = next(pairs)
            return elgamal.verify(verify_key, b"bench message", sig)

        results["verify_cold"] = median_ms(verify_cold, repeat)
        results["handshake"] = median_ms(lambda: full_handshake(alice, bob), max(3, repeat // 2))
        kilobyte = secrets.token_bytes(1024)
        for label, deniable in (("seal_open_signed", False), ("seal_open_deniable", True)):
            sa, sb = full_handshake(alice, bob, deniable=deniable)
            sb.open(sa.seal(kilobyte))  # past any first-message DH step
            results[label] = median_ms(lambda sa=sa, sb=sb: sb.open(sa.seal(kilobyte)), repeat)
        new_key = dh.generate(group).public
        results["ratchet_step"] = median_ms(lambda: ratchet_step(sa, new_key), repeat)
    return results


def measure_openssl(repeat: int, group) -> dict[str, float]:
    """OpenSSL's DH on the same group: keygen, exchange, and a full-size-exponent exchange."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        numbers = ossl_dh.DHParameterNumbers(group.p, group.g)
        params = numbers.parameters()
        peer = params.generate_private_key().public_key()
        own = params.generate_private_key()
        x_full = secrets.randbits(2047) | (1 << 2046)
        public = ossl_dh.DHPublicNumbers(pow(group.g, x_full, group.p), numbers)
        full = ossl_dh.DHPrivateNumbers(x_full, public).private_key()
        return {
            "modexp": median_ms(lambda: full.exchange(peer), repeat),
            "exchange": median_ms(lambda: own.exchange(peer), repeat),
            "exponent_bits": own.private_numbers().x.bit_length(),
            "params": params,
        }


def keygen_ratio(repeat: int, group, params) -> tuple[float, float]:
    """Our gmpy2 keygen and OpenSSL's, measured alternately."""
    with modexp.use_backend("gmpy2"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return paired_median_ms(lambda: dh.generate(group), params.generate_private_key, repeat)


def fmt(value: float | None) -> str:
    return f"{'-':>9}" if value is None else f"{value:9.3f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or not b else f"{a / b:7.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="runs per gmpy2/OpenSSL figure")
    args = parser.parse_args(argv)
    group = groups.get("ffdhe2048")
    keys = (identity.Identity.generate("alice"), identity.Identity.generate("bob"))
    gmp = measure_backend("gmpy2", args.repeat, group, keys)
    python = measure_backend("python", max(3, args.repeat // 8), group, keys)
    ossl = measure_openssl(args.repeat, group)
    ours_keygen, ossl_keygen = keygen_ratio(args.repeat * 2, group, ossl["params"])

    rows = [
        ("modexp 2048-bit, 2048-bit exponent", "modexp", ossl["modexp"]),
        (f"DH keygen (ours {group.exponent_bits}-bit x)", "keygen", None),
        (
            f"DH shared secret + checks (OpenSSL x: {ossl['exponent_bits']} bits)",
            "exchange",
            ossl["exchange"],
        ),
        ("ElGamal sign (SHA-256, full-size k)", "sign", None),
        ("ElGamal verify (session: signer-key table warm)", "verify", None),
        ("ElGamal verify (first use of a key)", "verify_cold", None),
        ("full v2 handshake with key confirmation, both parties", "handshake", None),
        ("one DH ratchet step", "ratchet_step", None),
        ("seal+open 1 kB, signed", "seal_open_signed", None),
        ("seal+open 1 kB, deniable", "seal_open_deniable", None),
        ("one-off: fixed-base table (g, or a peer key)", "table", None),
    ]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"parley_crypto bench on {group.name}, median ms ({args.repeat} runs gmpy2/OpenSSL); "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    header = (
        f"{'operation':<54} {'gmpy2':>9} {'python':>9} {'openssl':>9} {'py/gmp':>8} {'gmp/ossl':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, key, openssl in rows:
        if key == "keygen":
            gmp_value, openssl = ours_keygen, ossl_keygen
        else:
            gmp_value = gmp[key]
        print(
            f"{label:<54} {fmt(gmp_value)} {fmt(python[key])} {fmt(openssl)} "
            f"{ratio(python[key], gmp_value):>8} {ratio(gmp_value, openssl):>8}"
        )
    keygen_vs = ours_keygen / ossl_keygen
    figures = {key: gmp[key] for key in TARGETS if key != "keygen_ratio"}
    figures["keygen_ratio"] = keygen_vs
    verdicts = ", ".join(
        f"{key} <= {TARGETS[key]} {'met' if figures[key] <= TARGETS[key] else 'MISSED'}"
        for key in TARGETS
    )
    print()
    print(f"targets (gmpy2): {verdicts}")
    print(
        f"handshake_ms={gmp['handshake']:.2f} ratchet_step_ms={gmp['ratchet_step']:.2f} "
        f"seal_open_signed_ms={gmp['seal_open_signed']:.2f} "
        f"seal_open_deniable_ms={gmp['seal_open_deniable']:.3f} "
        f"dh_keygen_vs_openssl={keygen_vs:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
