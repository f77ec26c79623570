"""Identity payloads, key files and safety numbers."""

from __future__ import annotations

import json
import stat

import pytest

from parley_crypto import errors, groups, identity, safety
from parley_crypto.identity import Identity, InvalidKeyFile, PeerIdentity


def test_public_payload_round_trip(alice):
    payload = alice.public_payload()
    assert set(payload) == {"v", "name", "group", "y"} and payload["v"] == 2
    assert payload["group"] == "ffdhe2048" and payload["name"] == "alice"
    peer = PeerIdentity.from_payload(json.loads(json.dumps(payload)))
    assert peer == alice.public
    assert peer.y == int(payload["y"], 16)


def test_key_id_and_fingerprint(alice, bob):
    assert len(alice.public.key_id) == 64
    assert alice.public.key_id != bob.public.key_id
    assert alice.public.fingerprint.replace(" ", "") == alice.public.key_id[:20]
    renamed = PeerIdentity("someone-else", "ffdhe2048", alice.public.y)
    assert renamed.key_id == alice.public.key_id  # pins the key, not the display name


def test_save_load_round_trip_with_0600(tmp_path, alice):
    path = tmp_path / "keys" / "identity.json"
    alice.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Identity.load(path)
    assert loaded.public == alice.public and loaded.name == "alice"
    assert loaded.signing_key.x == alice.signing_key.x


def test_save_over_existing_world_readable_file_tightens_mode(tmp_path, alice):
    path = tmp_path / "identity.json"
    path.write_text("old")
    path.chmod(0o644)
    alice.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _doc(tmp_path, alice):
    path = tmp_path / "id.json"
    alice.save(path)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(
    "change",
    [
        {"y": "2"},
        {"x": "0"},
        {"x": "zz"},
        {"group": "nope"},
        {"type": "other"},
        {"v": 2},
        {"name": ""},
        {"extra": 1},
    ],
)
def test_bad_key_files(tmp_path, alice, change):
    path, doc = _doc(tmp_path, alice)
    doc.update(change)
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidKeyFile):
        Identity.load(path)


@pytest.mark.parametrize("content", ["", "not json", "[]", "\xff"])
def test_unreadable_key_files(tmp_path, content):
    path = tmp_path / "id.json"
    path.write_text(content)
    with pytest.raises(InvalidKeyFile):
        Identity.load(path)
    with pytest.raises(InvalidKeyFile):
        Identity.load(tmp_path / "missing.json")


def test_invalid_key_file_is_parley_error():
    assert issubclass(InvalidKeyFile, errors.ParleyError)


P = groups.get("ffdhe2048").p


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": 3}, "version"),
        ({"v": True}, "version"),
        ({"v": "2"}, "version"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"group": "ffdhe1024"}, "group"),
        ({"group": 7}, "group"),
        ({"y": 12345}, "hex"),
        ({"y": "xyz"}, "hex"),
        ({"y": "0x10"}, "hex"),
        ({"y": "F" * 10}, "hex"),
        ({"y": "f" * 100_000}, "hex digits"),
        ({"y": "0"}, "range"),
        ({"y": "1"}, "range"),
        ({"y": format(P - 1, "x")}, "range"),
        ({"y": format(P, "x")}, "range"),
        ({"y": format(P + 1, "x")}, "hex digits|range"),
        ({"y": format(P - 2, "x")}, "subgroup"),  # -2 is a non-residue: order 2q
        ({"extra": "x"}, "unexpected"),
    ],
)
def test_bad_identity_payloads(alice, change, match):
    payload = {**alice.public_payload(), **change}
    with pytest.raises(errors.HandshakeError, match=match):
        PeerIdentity.from_payload(payload)


@pytest.mark.parametrize("payload", [None, [], True, {}, {"v": 2}])
def test_identity_payload_wrong_shapes(payload):
    with pytest.raises(errors.HandshakeError) as info:
        PeerIdentity.from_payload(payload)
    assert not isinstance(info.value, errors.LegacyPeer)


@pytest.mark.parametrize(
    ("payload", "name"), [({"v": 1}, "the peer"), ({"v": 1, "name": "bob", "y": "5"}, "bob"),
                          ({"v": 1, "name": "\x07"}, "the peer")]
)  # fmt: skip
def test_identity_v1_is_older_peer(payload, name):
    with pytest.raises(errors.OlderPeer) as info:
        PeerIdentity.from_payload(payload)
    assert str(info.value) == f"{name} runs an older Parley (protocol v1); both sides need v2"


@pytest.mark.parametrize("payload", ["55", "", 55, 5.5])
def test_identity_legacy_payloads(payload):
    with pytest.raises(errors.LegacyPeer, match="original"):
        PeerIdentity.from_payload(payload)


def test_safety_number_order_independent_and_formatted(alice, bob, mallory):
    ab = safety.safety_number(alice.public, bob.public)
    assert ab == safety.safety_number(bob.public, alice.public)
    assert len(ab) == 60 and ab.isdigit()
    assert ab != safety.safety_number(alice.public, mallory.public)
    assert ab != safety.safety_number(mallory.public, bob.public)
    formatted = safety.format_safety_number(ab)
    assert formatted.split(" ") == [ab[i : i + 5] for i in range(0, 60, 5)]


@pytest.mark.parametrize("bad", ["123", "x" * 60, "١" * 60, 5])
def test_format_safety_number_rejects_garbage(bad):
    with pytest.raises(ValueError):
        safety.format_safety_number(bad)


def test_generate_rejects_bad_name_and_group():
    with pytest.raises(ValueError):
        Identity.generate("")
    with pytest.raises(KeyError):
        Identity.generate("ok", group="nope")


def test_identity_in_other_group(tmp_path):
    carol = identity.Identity.generate("carol", group="modp2048")
    carol.save(tmp_path / "c.json")
    assert Identity.load(tmp_path / "c.json").public.group == "modp2048"
