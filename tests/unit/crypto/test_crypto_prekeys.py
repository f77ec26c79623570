"""Asynchronous first contact (prekeys.py, prekey_store.py): round trips, every validation rule
as a negative test, one-time keys used once, replay refusal, persistence, and the key schedule
recomputed independently from the raw DH secrets (``pow`` and the `cryptography` HKDF)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac as std_hmac
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from parley_crypto import _wire, groups, identity, prekeys, session
from parley_crypto.errors import InvalidMessage, OlderPeer, ParleyError
from parley_crypto.prekey_store import InvalidPrekeyState, PrekeyStore
from parley_crypto.prekeys import PrekeyError
from tests.unit.crypto.conftest import connect

ROOM = "room-1"
GROUP = groups.get()


def lp(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def c_hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


@pytest.fixture
def store(bob):
    return PrekeyStore(bob)


def published(store, count=1):
    return store.bundle(ROOM), store.new_one_time(count)


def start(alice, store, otk=True, **options):
    bundle, one_time = published(store)
    return prekeys.initiate(alice, ROOM, bundle, one_time[0] if otk else None, **options)


# ----- round trips -------------------------------------------------------------------------
def test_first_contact_round_trip_and_init_until_answered(alice, bob, store):
    sa = start(alice, store)
    first, second = sa.seal(b"hello bob"), sa.seal(b"second")
    assert first["init"] == second["init"] and sa.init_pending
    sb, text = prekeys.respond(bob, ROOM, store, first)
    assert text == b"hello bob" and sb.peer.key_id == alice.public.key_id
    assert sb.open(second) == b"second"  # later envelopes carry the same init
    assert sa.peer.key_id == bob.public.key_id
    assert sa.safety_number == sb.safety_number == connect(alice, bob)[0].safety_number
    reply = sb.seal(b"hi alice")
    assert "init" not in reply
    assert sa.open(reply) == b"hi alice"
    assert not sa.init_pending and "init" not in sa.seal(b"x")


def test_without_one_time_key_still_works(alice, bob, store):
    """A relay that withholds one-time keys cannot stop first contact (weaker forward secrecy
    for the first messages only, see docs/protocol.md)."""
    sa = start(alice, store, otk=False)
    envelope = sa.seal(b"no otk")
    assert envelope["init"]["otk"] is None
    assert prekeys.respond(bob, ROOM, store, envelope)[1] == b"no otk"


def test_responder_renamed_after_publishing_still_opens(alice, bob, store):
    """Bob publishes as "bob", renames himself before he comes back: the start still opens
    (his key is who he is), and Alice pinned the name the bundle carried."""
    sa = start(alice, store)
    renamed = dataclasses.replace(bob, name="robert")
    sb, text = prekeys.respond(renamed, ROOM, store, sa.seal(b"hi"))
    assert text == b"hi" and sa.peer.name == "bob"


def test_deniable_and_options_follow_the_bundle(alice, bob):
    store = PrekeyStore(bob)
    bundle = store.bundle(ROOM, deniable=True)
    sa = prekeys.initiate(alice, ROOM, bundle, None, deniable=True)
    envelope = sa.seal(b"d")
    assert envelope["sig"] is None
    sb, text = prekeys.respond(bob, ROOM, store, envelope)
    assert text == b"d" and sb.deniable and sb.peer_deniable
    assert sb.seal(b"r")["sig"] is None


# ----- independent recomputation ------------------------------------------------------------
def _independent_transcript(room, bob_id, spk_id, spk, alice_id, init, otk):
    w = GROUP.byte_length

    def party(label, who, extra, name=True):
        named = [who.name.encode()] if name else []
        return lp(b"parley/v2/x3dh/" + label, *named, GROUP.name.encode(),
                  hashlib.sha256(lp(b"parley/v1/identity-key", GROUP.name.encode(),
                                    who.y.to_bytes(w, "big"))).hexdigest().encode(),
                  who.y.to_bytes(w, "big"), *extra)  # fmt: skip

    bob_part = party(b"responder", bob_id, [bytes.fromhex(spk_id), spk.to_bytes(w, "big"),
                                            b"sha256", b"\x00"], name=False)  # fmt: skip
    ek = int(init["ek"], 16)
    nonce = bytes.fromhex(init["nonce"])
    alice_part = party(b"initiator", alice_id, [ek.to_bytes(w, "big"), nonce, b"sha256", b"\x00"])
    otk_part = lp(bytes.fromhex(otk[0]), otk[1].to_bytes(w, "big")) if otk else b""
    return lp(b"parley/v2/x3dh/transcript", b"2", room.encode(), bob_part, alice_part, otk_part)


@pytest.mark.parametrize("with_otk", [True, False])
def test_schedule_recomputed_from_the_raw_dh_secrets(alice, bob, with_otk):
    store = PrekeyStore(bob)
    bundle, one_time = published(store)
    sa = prekeys.initiate(alice, ROOM, bundle, one_time[0] if with_otk else None)
    init = sa.seal(b"x")["init"]
    spk = store.signed(init["spk"]).key
    otk_id = one_time[0]["id"]
    otk_key = store.one_time(otk_id)
    ek = int(init["ek"], 16)
    p, w = GROUP.p, GROUP.byte_length
    dh1 = pow(ek, spk.x, p).to_bytes(w, "big")
    dh2 = pow(ek, otk_key.x, p).to_bytes(w, "big") if with_otk else b""
    otk = (otk_id, otk_key.public) if with_otk else None
    t = _independent_transcript(ROOM, bob.public, init["spk"], spk.public, alice.public, init, otk)
    th = hashlib.sha256(t).digest()
    assert th == sa.transcript_hash
    sk = c_hkdf(dh1 + dh2, None, b"parley/v2/x3dh/sk" + th)
    rk0 = c_hkdf(sk, th, b"parley/v2/root")
    state = sa.to_state()["ratchet"]
    dhs = int(state["dhs"], 16)
    rk_a = c_hkdf(pow(spk.public, dhs, p).to_bytes(w, "big"), rk0, b"parley/v2/ratchet", 64)
    assert state["rk"] == rk_a[:32].hex()
    # One message was sealed: the sending chain moved one step (HMAC(CK, 0x02)).
    assert state["cks"] == std_hmac.new(rk_a[32:], b"\x02", hashlib.sha256).hexdigest()
    # Another secret under the same transcript gives other keys.
    other = c_hkdf(bytes(len(dh1 + dh2)), None, b"parley/v2/x3dh/sk" + th)
    assert other != sk


def test_derive_sk_known_answer():
    dh1, dh2, th = bytes(range(256)), bytes(range(255, -1, -1)), bytes(range(32))
    expected = c_hkdf(dh1 + dh2, None, b"parley/v2/x3dh/sk" + th)
    assert prekeys.derive_sk(dh1, dh2, th) == expected
    assert expected.hex() == KAT_SK
    assert prekeys.derive_sk(dh1, None, th) == c_hkdf(dh1, None, b"parley/v2/x3dh/sk" + th)


KAT_SK = "63a04e7d7cec98df5310bdcfaabdd5e0e15eb351594555468953114b27347bf4"


# ----- bundle validation --------------------------------------------------------------------
def _bundle(store):
    return store.bundle(ROOM)


def mutate(obj, path, value):
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


BAD_DH = {
    "zero": "0",
    "one": "1",
    "p-1": _wire.to_hex(GROUP.p - 1),
    "p": _wire.to_hex(GROUP.p),
    "non-residue": _wire.to_hex(GROUP.p - 2),  # -2 is a non-residue mod these safe primes
}


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("type",), "other", "wrong type"),
        (("v",), 3, "unsupported version"),
        (("extra",), 1, "unexpected field"),
        (("sig",), KeyError, "missing sig"),
        (("spk", "id"), "abc", "signed prekey id"),
        (("spk", "id"), "00" * 8, "signature is invalid"),
        (("hash",), "md5", "hash must be one of"),
        (("hash",), "sha1", "legacy SHA-1"),
        (("deniable",), "no", "signature is invalid|deniable must be"),
        (("deniable",), True, "signature is invalid"),
        (("identity", "name"), "bob2", "signature is invalid"),
        (("identity", "group"), "ffdhe3072", "uses group|identity is invalid"),
        (("sig", "s"), "1", "signature is invalid"),
    ],
)
def test_bundle_rule_refused(alice, store, path, value, reason):
    bad = mutate(_bundle(store), path, value)
    with pytest.raises(PrekeyError, match=reason):
        prekeys.parse_bundle(bad, alice, ROOM)


@pytest.mark.parametrize("name", sorted(BAD_DH))
def test_bundle_spk_outside_the_subgroup_refused(alice, store, name):
    bad = mutate(_bundle(store), ("spk", "dh"), BAD_DH[name])
    with pytest.raises(PrekeyError, match="signed prekey"):
        prekeys.parse_bundle(bad, alice, ROOM)


def test_bundle_with_a_substituted_prekey_refused(alice, bob, mallory, store):
    """A relay replaces Bob's prekey with its own, signed by a third key: refused."""
    forged = PrekeyStore(mallory).bundle(ROOM)
    bad = dict(forged, identity=bob.public_payload())
    with pytest.raises(PrekeyError, match="signature is invalid"):
        prekeys.parse_bundle(bad, alice, ROOM)
    real = _bundle(store)
    bad = mutate(real, ("spk", "dh"), forged["spk"]["dh"])
    with pytest.raises(PrekeyError, match="signature is invalid"):
        prekeys.parse_bundle(bad, alice, ROOM)


def test_bundle_v1_and_reflection_and_size(alice, bob, store):
    with pytest.raises(OlderPeer, match="protocol v1"):
        prekeys.parse_bundle(dict(_bundle(store), v=1), alice, ROOM)
    with pytest.raises(PrekeyError, match="our own identity"):
        prekeys.parse_bundle(_bundle(store), bob, ROOM)
    with pytest.raises(PrekeyError, match="larger than"):
        prekeys.parse_bundle(dict(_bundle(store), pad="x" * prekeys.BUNDLE_MAX_BYTES), alice, ROOM)
    assert prekeys.parse_bundle(_bundle(store), alice, ROOM, "sha1").hash == "sha256"


def test_sha1_bundle_accepted_only_under_a_local_sha1_policy(alice, bob):
    bundle = PrekeyStore(bob).bundle(ROOM, hash="sha1")
    with pytest.raises(PrekeyError, match="legacy SHA-1"):
        prekeys.parse_bundle(bundle, alice, ROOM)
    assert prekeys.parse_bundle(bundle, alice, ROOM, "sha1").hash == "sha1"


@pytest.mark.parametrize("name", sorted(BAD_DH))
def test_one_time_key_outside_the_subgroup_refused(alice, store, name):
    bundle = prekeys.parse_bundle(_bundle(store), alice, ROOM)
    with pytest.raises(PrekeyError, match="one-time prekey"):
        prekeys.parse_one_time({"id": "ab" * 8, "dh": BAD_DH[name]}, bundle)


def test_one_time_key_shape_refused(alice, store):
    bundle = prekeys.parse_bundle(_bundle(store), alice, ROOM)
    good = store.new_one_time(1)[0]
    for bad in ({"id": "x", "dh": good["dh"]}, {"dh": good["dh"]}, [good["id"]],
                {"id": good["id"], "dh": _wire.to_hex(bundle.spk)}):  # fmt: skip
        with pytest.raises(PrekeyError):
            prekeys.parse_one_time(bad, bundle)
    assert prekeys.parse_one_time(good, bundle)[0] == good["id"]


# ----- initial message validation -----------------------------------------------------------
def _init_case(alice, store):
    sa = start(alice, store)
    return sa, sa.seal(b"first")


@pytest.mark.parametrize(
    ("path", "value", "error", "reason"),
    [
        (("init", "v"), 3, PrekeyError, "unsupported version"),
        (("init", "v"), 1, OlderPeer, "protocol v1"),
        (("init", "extra"), 1, PrekeyError, "unexpected field"),
        (("init", "spk"), "00" * 8, PrekeyError, "signed prekey we do not hold"),
        (("init", "spk"), "zz", PrekeyError, "signed prekey id"),
        (("init", "otk"), "00" * 8, PrekeyError, "one-time prekey that is unknown"),
        (("init", "otk"), None, PrekeyError, "signature is invalid"),
        (("init", "nonce"), "00" * 32, PrekeyError, "signature is invalid"),
        (("init", "nonce"), "00", PrekeyError, "nonce"),
        (("init", "hash"), "sha1", PrekeyError, "legacy SHA-1"),
        (("init", "deniable"), True, PrekeyError, "signature is invalid"),
        (("init", "deniable"), 0, PrekeyError, "deniable must be"),
        (("init", "identity", "name"), "carol", PrekeyError, "signature is invalid"),
        (("init", "sig", "r"), "2", PrekeyError, "signature is invalid"),
    ],
)
def test_init_rule_refused_and_nothing_consumed(alice, bob, store, path, value, error, reason):
    sa, envelope = _init_case(alice, store)
    with pytest.raises(error, match=reason):
        prekeys.respond(bob, ROOM, store, mutate(envelope, path, value))
    assert prekeys.respond(bob, ROOM, store, envelope)[1] == b"first"  # still usable


@pytest.mark.parametrize("name", sorted(BAD_DH))
def test_init_ephemeral_outside_the_subgroup_refused(alice, bob, store, name):
    _, envelope = _init_case(alice, store)
    with pytest.raises(PrekeyError, match="ephemeral key"):
        prekeys.respond(bob, ROOM, store, mutate(envelope, ("init", "ek"), BAD_DH[name]))


def test_init_from_an_impostor_identity_refused(alice, bob, mallory, store):
    """Mallory (or a relay) puts her identity on Alice's init, or signs Alice's transcript
    with her own key under Alice's name: refused either way."""
    _, envelope = _init_case(alice, store)
    bad = mutate(envelope, ("init", "identity"), mallory.public_payload())
    with pytest.raises(PrekeyError, match="signature is invalid"):
        prekeys.respond(bob, ROOM, store, bad)


def test_init_in_another_room_or_group_refused(alice, bob, store):
    _, envelope = _init_case(alice, store)
    with pytest.raises(PrekeyError, match="signature is invalid"):
        prekeys.respond(bob, "room-2", store, envelope)
    other = identity.Identity.generate("carol", "modp2048")
    with pytest.raises(PrekeyError, match="uses group"):
        prekeys.respond(other, ROOM, PrekeyStore(other), envelope)


def test_tampered_first_envelope_consumes_nothing(alice, bob, store):
    _, envelope = _init_case(alice, store)
    bad = dict(envelope, mac=_wire.to_b64(bytes(32)))
    with pytest.raises(InvalidMessage):
        prekeys.respond(bob, ROOM, store, bad)
    assert store.one_time(envelope["init"]["otk"]) is not None
    assert prekeys.respond(bob, ROOM, store, envelope)[1] == b"first"


def test_envelope_without_init_refused(alice, bob, store):
    with pytest.raises(PrekeyError, match="no initial message"):
        prekeys.respond(bob, ROOM, store, {"v": 2})


# ----- one use ------------------------------------------------------------------------------
def test_one_time_key_deleted_and_replayed_init_refused(alice, bob, store):
    sa, envelope = _init_case(alice, store)
    otk_id = envelope["init"]["otk"]
    prekeys.respond(bob, ROOM, store, envelope)
    assert store.one_time(otk_id) is None  # the private key is gone
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, store, envelope)
    with pytest.raises(PrekeyError, match="replayed"):  # a later envelope of the same start
        prekeys.respond(bob, ROOM, store, sa.seal(b"later"))


def test_replayed_init_without_one_time_key_refused(alice, bob, store):
    sa = start(alice, store, otk=False)
    envelope = sa.seal(b"x")
    prekeys.respond(bob, ROOM, store, envelope)
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, store, envelope)


def test_one_time_key_handed_to_two_senders_serves_only_one(alice, bob, mallory, store):
    """A relay that hands the same one-time key to two senders: the second start is refused
    (it is detected, never a second session on one key)."""
    bundle, one_time = published(store)
    first = prekeys.initiate(alice, ROOM, bundle, one_time[0]).seal(b"a")
    second = prekeys.initiate(mallory, ROOM, bundle, one_time[0]).seal(b"m")
    prekeys.respond(bob, ROOM, store, first)
    with pytest.raises(PrekeyError, match="unknown or used"):
        prekeys.respond(bob, ROOM, store, second)


def test_sessions_refuse_foreign_inits(alice, bob, store):
    sa, envelope = _init_case(alice, store)
    sb, _ = prekeys.respond(bob, ROOM, store, envelope)
    other = start(alice, store).seal(b"other start")
    with pytest.raises(InvalidMessage, match="another session"):
        sb.open(other)
    live_a, live_b = connect(alice, bob)
    with pytest.raises(InvalidMessage, match="another session"):
        live_b.open(dict(live_a.seal(b"y"), init=envelope["init"]))


# ----- persistence --------------------------------------------------------------------------
def test_sessions_and_store_survive_to_state(alice, bob, store):
    sa, envelope = _init_case(alice, store)
    sa = session.Session.from_state(sa.to_state(), alice)
    assert sa.init_pending and sa.seal(b"after restart")["init"] == envelope["init"]
    store = PrekeyStore.from_state(store.to_state(), bob)
    sb, _ = prekeys.respond(bob, ROOM, store, envelope)
    store = PrekeyStore.from_state(store.to_state(), bob)
    assert store.one_time(envelope["init"]["otk"]) is None
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, store, envelope)
    sb = session.Session.from_state(sb.to_state(), bob)
    assert sa.open(sb.seal(b"ok")) == b"ok" and not sa.init_pending
    assert not session.Session.from_state(sa.to_state(), alice).init_pending


def test_old_session_states_without_init_still_load(alice, bob):
    sa, _ = connect(alice, bob)
    state = sa.to_state()
    del state["init"]
    assert session.Session.from_state(state, alice).init is None


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(me="0" * 64),
        lambda s: s.update(type="x"),
        lambda s: s.update(v=1),
        lambda s: s["one_time"].append(["zz", "5"]),
        lambda s: s["one_time"].append(["ab" * 8, "0"]),
        lambda s: s["signed"][0].update(hash="md5"),
        lambda s: s["signed"][0].update(created="now"),
        lambda s: s["used"].append(["short", "ab" * 8]),
        lambda s: s.update(extra=1),
    ],
)
def test_corrupt_prekey_state_refused(bob, store, change):
    store.bundle(ROOM)
    store.new_one_time(2)
    state = store.to_state()
    change(state)
    with pytest.raises(InvalidPrekeyState):
        PrekeyStore.from_state(state, bob)


def test_signed_prekey_rotates_and_old_ones_expire(bob):
    now = [1000.0]
    store = PrekeyStore(bob, clock=lambda: now[0])
    first = store.current()
    assert store.current().id == first.id
    now[0] += 8 * 24 * 3600
    second = store.current()
    assert second.id != first.id and store.signed(first.id) is not None  # kept for the mailbox
    now[0] += 22 * 24 * 3600
    store.current()
    assert store.signed(first.id) is None


def test_errors_are_parley_errors():
    assert issubclass(PrekeyError, ParleyError) and issubclass(InvalidPrekeyState, ParleyError)


@pytest.mark.parametrize(
    "init",
    [
        None, "x", [], 5, {}, {"v": 1, "identity": "x"}, {"v": 1, "identity": [1]},
        {"v": 1, "identity": {"name": 7}}, {"v": 1, "name": "\x1b[2J"},
        {"v": 2, "identity": "x", "ek": 1, "nonce": 1, "spk": 1, "otk": 1, "hash": 1,
         "deniable": 1, "sig": 1},
    ],
)  # fmt: skip
def test_hostile_init_shapes_raise_parley_errors_only(bob, store, init):
    with pytest.raises(ParleyError):
        prekeys.respond(bob, ROOM, store, {"v": 2, "init": init})


@pytest.mark.parametrize("bundle", [None, "x", [], {"v": 1, "identity": 3}, {"v": 2}])
def test_hostile_bundle_shapes_raise_parley_errors_only(alice, bundle):
    with pytest.raises(ParleyError):
        prekeys.initiate(alice, ROOM, bundle, None)
