"""Safety numbers per party: fixed vectors, an independent recomputation with hashlib, and
one key changing only its own half (so a MITM must match a half, not find a claw)."""

from __future__ import annotations

import hashlib
import struct

import pytest

from parley_crypto import elgamal, groups, identity, safety

GROUP = groups.get("ffdhe2048")
ALICE = identity.Identity("alice", elgamal.SigningKey(GROUP, 0x1234567890ABCDEF))
BOB = identity.Identity("bob", elgamal.SigningKey(GROUP, 0xFEDCBA0987654321))
ALICE_HALF = "701721027389189519935000117660"
BOB_HALF = "046908852663555353567696767362"


def independent_half(who: identity.PeerIdentity) -> str:
    """Recomputed from the documented derivation with hashlib alone."""
    y = who.y.to_bytes(256, "big")
    key = b"".join(struct.pack(">I", len(p)) + p for p in (b"parley/v1/identity-key",
                                                           b"ffdhe2048", y))  # fmt: skip
    key_id = hashlib.sha256(key).hexdigest().encode()
    digest = hashlib.sha512(b"\x00\x02" + key + key_id).digest()
    for _ in range(5200):
        digest = hashlib.sha512(digest + key).digest()
    return "".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100000:05d}"
                   for i in range(0, 30, 5))  # fmt: skip


def test_fixed_vectors():
    assert safety.half(ALICE.public) == ALICE_HALF
    assert safety.half(BOB.public) == BOB_HALF
    assert safety.safety_number(ALICE.public, BOB.public) == BOB_HALF + ALICE_HALF  # sorted


def test_independent_recomputation():
    for who in (ALICE.public, BOB.public):
        assert safety.half(who) == independent_half(who)


def test_order_independent_and_both_halves_exposed():
    number = safety.safety_number(ALICE.public, BOB.public)
    assert number == safety.safety_number(BOB.public, ALICE.public)
    assert safety.halves(ALICE.public, BOB.public) == (BOB_HALF, ALICE_HALF)
    assert len(number) == 60 and number.isdigit()


def test_changing_one_key_changes_only_its_half():
    mallory = identity.Identity.generate("bob")  # same name, other key
    before = safety.halves(ALICE.public, BOB.public)
    after = safety.halves(ALICE.public, mallory.public)
    assert ALICE_HALF in after and BOB_HALF not in after
    assert set(before) & set(after) == {ALICE_HALF}


def test_display_name_is_not_an_input():
    renamed = identity.PeerIdentity("someone else", ALICE.public.group, ALICE.public.y)
    assert safety.half(renamed) == ALICE_HALF


def test_the_chunks_are_distinct_digits():
    # A broken derivation that repeats one chunk would still give 30 digits.
    for half in (ALICE_HALF, BOB_HALF):
        assert len({half[i : i + 5] for i in range(0, 30, 5)}) == 6


def test_format():
    number = safety.safety_number(ALICE.public, BOB.public)
    assert safety.format_safety_number(number).split() == [
        number[i : i + 5] for i in range(0, 60, 5)
    ]


@pytest.mark.parametrize("bad", ["1" * 59, "1" * 61, "a" * 60, None, "١" * 60])
def test_format_rejects_garbage(bad):
    with pytest.raises(ValueError):
        safety.format_safety_number(bad)
