"""Known-answer vectors: NIST SP 800-38A CFB128-AES256, RFC 5869 HKDF-SHA256, FIPS 180."""

from __future__ import annotations

import pytest

from parley_crypto import aes_cfb, elgamal, kdf

SP800_38A_KEY = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
SP800_38A_IV = "000102030405060708090a0b0c0d0e0f"
SP800_38A_PT = [
    "6bc1bee22e409f96e93d7e117393172a",
    "ae2d8a571e03ac9c9eb76fac45af8e51",
    "30c81c46a35ce411e5fbc1191a0a52ef",
    "f69f2445df4f9b17ad2b417be66c3710",
]
SP800_38A_CT = [
    "dc7e84bfda79164b7ecd8486985d3860",
    "39ffed143b28b1c832113c6331e5407b",
    "df10132415e54b92a13ed0a8267ae2f9",
    "75a385741ab9cef82031623d55b1e471",
]


@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_sp800_38a_f_3_13_cfb128_aes256_encrypt(blocks):
    key, iv = bytes.fromhex(SP800_38A_KEY), bytes.fromhex(SP800_38A_IV)
    plaintext = bytes.fromhex("".join(SP800_38A_PT[:blocks]))
    assert aes_cfb.encrypt(key, iv, plaintext).hex() == "".join(SP800_38A_CT[:blocks])


@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_sp800_38a_f_3_14_cfb128_aes256_decrypt(blocks):
    key, iv = bytes.fromhex(SP800_38A_KEY), bytes.fromhex(SP800_38A_IV)
    ciphertext = bytes.fromhex("".join(SP800_38A_CT[:blocks]))
    assert aes_cfb.decrypt(key, iv, ciphertext).hex() == "".join(SP800_38A_PT[:blocks])


def test_cfb_is_128_bit_segments_not_8():
    # CFB8 gives a different second byte onward for the same key/iv/plaintext.
    from Crypto.Cipher import AES

    key, iv = bytes.fromhex(SP800_38A_KEY), bytes.fromhex(SP800_38A_IV)
    plaintext = bytes.fromhex(SP800_38A_PT[0])
    cfb8 = AES.new(key, AES.MODE_CFB, iv=iv).encrypt(plaintext)
    assert aes_cfb.encrypt(key, iv, plaintext) != cfb8


@pytest.mark.parametrize(("key", "iv"), [(b"k" * 16, b"i" * 16), (b"k" * 32, b"i" * 8), (b"", b"")])
def test_cfb_rejects_wrong_sizes(key, iv):
    with pytest.raises(ValueError):
        aes_cfb.encrypt(key, iv, b"x")


RFC5869 = [
    pytest.param(
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        id="case1",
    ),
    pytest.param(
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        id="case2",
    ),
    pytest.param(
        "0b" * 22,
        "",
        "",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        id="case3",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_rfc5869_hkdf_sha256(ikm, salt, info, length, prk, okm):
    ikm, salt, info = bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info)
    assert kdf.hkdf_extract(salt, ikm).hex() == prk
    assert kdf.hkdf_sha256(ikm, salt, info, length).hex() == okm


@pytest.mark.parametrize("length", [0, 255 * 32 + 1])
def test_hkdf_length_limits(length):
    with pytest.raises(ValueError):
        kdf.hkdf_sha256(b"k", b"s", b"i", length)


def test_rfc4231_hmac_sha256_case2():
    tag = kdf.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert tag.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


FIPS180 = [
    ("sha1", b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("sha256", b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        "sha1",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
    ),
    (
        "sha256",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
]


@pytest.mark.parametrize(("hash", "message", "expected"), FIPS180)
def test_fips180_through_the_signing_digest(hash, message, expected):
    assert elgamal.digest(message, hash).hex() == expected
