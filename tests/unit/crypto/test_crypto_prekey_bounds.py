"""Prekey bounds a hostile relay must not be able to use: used inits are kept per signed prekey
without a count cap (a flood of the relay's own session starts cannot evict an old init of the
peer's and so re-open it), and bundles are bound to their room and creation time."""

from __future__ import annotations

import dataclasses
import json

import pytest

from parley_crypto import identity, prekeys
from parley_crypto.errors import OlderPeer
from parley_crypto.prekey_store import SPK_KEEP_SECONDS, PrekeyStore
from parley_crypto.prekeys import PrekeyError

ROOM = "room-1"


def test_a_flood_of_used_inits_does_not_evict_an_old_one(alice, bob):
    store = PrekeyStore(bob)
    bundle = store.bundle(ROOM)
    envelope = prekeys.initiate(alice, ROOM, bundle, None).seal(b"once")  # no one-time key
    prekeys.respond(bob, ROOM, store, envelope)
    spk = bundle["spk"]["id"]
    for i in range(5000):  # more than the old MAX_USED_INITS (4096): the relay's own starts
        store.consume(None, f"{i:032x}", spk)
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, store, envelope)
    again = PrekeyStore.from_state(store.to_state(), bob)  # also after a restart
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, again, envelope)


def test_used_inits_expire_with_their_signed_prekey(alice, bob):
    now = [1000.0]
    store = PrekeyStore(bob, clock=lambda: now[0])
    bundle = store.bundle(ROOM)
    envelope = prekeys.initiate(alice, ROOM, bundle, None, clock=lambda: now[0]).seal(b"x")
    prekeys.respond(bob, ROOM, store, envelope)
    iid = prekeys.init_id(envelope["init"])
    assert store.was_used(iid)
    now[0] += SPK_KEEP_SECONDS + 1
    store.current()  # rotation drops the prekey and what it served
    assert not store.was_used(iid) and store.to_state()["used"] == []
    with pytest.raises(PrekeyError, match="signed prekey we do not hold"):
        prekeys.respond(bob, ROOM, store, envelope)  # the replay is refused all the same


# ----- bundles are bound to their room and date (each rule refused, changing nothing) -------
AGE, SKEW = prekeys.BUNDLE_MAX_AGE_SECONDS, prekeys.BUNDLE_MAX_SKEW_SECONDS
T0 = 1_700_000_000.0


@pytest.fixture
def dated(bob):
    """Bob's bundle for ROOM whose signed prekey was created at T0."""
    return PrekeyStore(bob, clock=lambda: T0).bundle(ROOM)


def start_at(alice, bundle, room=ROOM, at=T0):
    return prekeys.initiate(alice, room, bundle, None, clock=lambda: at)


def test_a_bundle_served_in_another_room_is_refused(alice, dated):
    assert dated["room"] == ROOM and dated["created"] == int(T0)
    with pytest.raises(PrekeyError, match="another room"):
        start_at(alice, dated, room="room-2")
    relabelled = dict(dated, room="room-2")  # the relay rewrites the room: Bob never signed it
    with pytest.raises(PrekeyError, match="signature is invalid"):
        start_at(alice, relabelled, room="room-2")


def test_a_stale_bundle_is_refused_at_the_prekeys_keep_time(alice, dated):
    assert AGE == SPK_KEEP_SECONDS  # what Bob keeps is what Alice accepts
    start_at(alice, dated, at=T0 + AGE)  # the last second it is still held
    with pytest.raises(PrekeyError, match="stale"):
        start_at(alice, dated, at=T0 + AGE + 1)
    refreshed = dict(dated, created=int(T0 + AGE))  # the relay re-dates it: not signed
    with pytest.raises(PrekeyError, match="signature is invalid"):
        start_at(alice, refreshed, at=T0 + AGE + 1)


def test_a_bundle_from_the_future_is_refused_beyond_the_skew(alice, dated):
    assert SKEW == 600  # ten minutes, as the refusal says
    start_at(alice, dated, at=T0 - SKEW)  # a sender's clock ten minutes behind
    with pytest.raises(PrekeyError, match="future"):
        start_at(alice, dated, at=T0 - SKEW - 1)


@pytest.mark.parametrize("created", [-1, 1.5, True, "1700000000", None])
def test_a_malformed_creation_time_is_refused(alice, dated, created):
    with pytest.raises(PrekeyError, match="whole number"):
        start_at(alice, dict(dated, created=created))


@pytest.mark.parametrize("field", ["room", "created"])
def test_a_bundle_without_room_or_date_is_refused(alice, dated, field):
    old = {k: v for k, v in dated.items() if k != field}  # the unbound (older) bundle shape
    with pytest.raises(PrekeyError):
        start_at(alice, old)


def test_the_signature_covers_room_and_date(alice, dated):
    bundle = prekeys.parse_bundle(dated, alice, ROOM, now=T0)
    base = prekeys.spk_sig_input(bundle)
    other_room = prekeys.spk_sig_input(dataclasses.replace(bundle, room="room-2"))
    other_date = prekeys.spk_sig_input(dataclasses.replace(bundle, created=bundle.created + 1))
    assert len({base, other_room, other_date}) == 3


# ----- the initiator's own checks and the responder's replay record (mutation run) ----------
def test_the_room_bound_is_inclusive_and_a_room_must_be_a_string(alice, bob):
    store = PrekeyStore(bob)
    assert prekeys.MAX_ROOM_BYTES == 256
    longest = "r" * 256  # (a literal: the test must fail if the constant moves)
    sa = prekeys.initiate(alice, longest, store.bundle(longest), None)
    assert prekeys.respond(bob, longest, store, sa.seal(b"hi"))[1] == b"hi"
    too_long = longest + "r"
    with pytest.raises(ValueError, match="short string"):
        prekeys.initiate(alice, too_long, store.bundle(too_long), None)
    for room in (5, None, b"room-1"):
        with pytest.raises(ValueError, match="short string"):
            prekeys.initiate(alice, room, store.bundle(ROOM), None)


def _reordered(obj):
    """The same JSON value with every object's keys in reverse order (a relay may reorder)."""
    if isinstance(obj, dict):
        return {k: _reordered(obj[k]) for k in reversed(list(obj))}
    return obj


def test_a_replayed_init_with_its_keys_reordered_is_still_a_replay(alice, bob):
    """The used-init record is keyed by the init's value, not its text: a relay re-sending the
    first envelope with the init's fields (and its identity's) in another order, which parses to
    the same init, is refused as a replay, not opened as a second session."""
    store = PrekeyStore(bob)
    envelope = prekeys.initiate(alice, ROOM, store.bundle(ROOM), None).seal(b"once")
    prekeys.respond(bob, ROOM, store, envelope)
    replay = dict(envelope, init=_reordered(envelope["init"]))
    assert list(replay["init"]) != list(envelope["init"]) and replay["init"] == envelope["init"]
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, store, replay)


def test_an_initiator_with_a_non_ascii_name_starts_once(bob):
    zoe = identity.Identity.generate("Zoë 日本")
    store = PrekeyStore(bob)
    envelope = prekeys.initiate(zoe, ROOM, store.bundle(ROOM), None).seal(b"hello")
    sb, plaintext = prekeys.respond(bob, ROOM, store, envelope)
    assert plaintext == b"hello" and sb.peer.name == "Zoë 日本"
    with pytest.raises(PrekeyError, match="replayed"):
        prekeys.respond(bob, ROOM, store, envelope)


def test_the_responder_never_echoes_the_init(alice, bob):
    """Only the initiator attaches the init; the responder's envelopes carry none."""
    store = PrekeyStore(bob)
    sa = prekeys.initiate(alice, ROOM, store.bundle(ROOM), store.new_one_time(1)[0])
    sb, _ = prekeys.respond(bob, ROOM, store, sa.seal(b"first"))
    assert sb.init == sa.init and sb.init_pending is False
    reply = sb.seal(b"reply")
    assert "init" not in reply and sa.open(reply) == b"reply"


def test_a_parsed_init_is_immutable(alice, bob):
    store = PrekeyStore(bob)
    init = prekeys.initiate(alice, ROOM, store.bundle(ROOM), None).init
    parsed = prekeys.parse_init(init, bob)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.spk_id = "0" * 16


def test_a_first_contact_through_json_text_opens(alice, bob):
    """Bundles, one-time keys and envelopes arrive as parsed JSON: every string a check
    compares (type, room, group) is a fresh object, compared by value."""
    store = PrekeyStore(bob)
    wire = lambda obj: json.loads(json.dumps(obj))  # noqa: E731
    bundle, one_time = wire(store.bundle(ROOM)), wire(store.new_one_time(1)[0])
    sa = prekeys.initiate(alice, ROOM, bundle, one_time)
    sb, plaintext = prekeys.respond(bob, ROOM, store, wire(sa.seal(b"hello")))
    assert plaintext == b"hello" and sa.open(wire(sb.seal(b"back"))) == b"back"


@pytest.mark.parametrize("signed_for, fetched_in", [("room-2", "room-1"), ("room-1", "room-2")])
def test_a_bundle_for_another_room_is_refused_whichever_sorts_first(
    alice, bob, signed_for, fetched_in
):
    bundle = PrekeyStore(bob, clock=lambda: T0).bundle(signed_for)
    with pytest.raises(PrekeyError, match="another room"):
        start_at(alice, bundle, room=fetched_in)


@pytest.mark.parametrize("kind", ["parley-prekey-bundlf", "zzz", "a", ""])
def test_a_bundle_of_another_type_is_refused_whichever_sorts_first(alice, dated, kind):
    with pytest.raises(PrekeyError, match="wrong type"):
        start_at(alice, dict(dated, type=kind))


@pytest.mark.parametrize(
    "name, shown",
    [
        ("x" * 64, "x" * 64),
        ("z", "z"),
        ("x" * 65, "the peer"),
        ("", "the peer"),
        ("a\nb", "the peer"),
    ],
)
def test_an_older_peers_bundle_names_it_only_when_the_name_is_sane(alice, name, shown):
    """A v1 payload's claimed name goes into the one-line OlderPeer error: 1..64 printable
    characters, or "the peer"."""
    for v1 in ({"v": 1, "identity": {"name": name}}, {"v": 1, "name": name}):
        with pytest.raises(OlderPeer) as caught:
            prekeys.parse_bundle(v1, alice, ROOM)
        assert (
            str(caught.value) == f"{shown} runs an older Parley (protocol v1); both sides need v2"
        )


def test_the_bundle_size_bound_is_inclusive(alice, dated):
    """A bundle of exactly BUNDLE_MAX_BYTES compact JSON bytes passes the size check (here it is
    refused next, for its extra field); one byte more is refused as too large."""
    assert prekeys.BUNDLE_MAX_BYTES == 8192
    base = len(json.dumps(dict(dated, pad=""), separators=(",", ":")))
    exact = dict(dated, pad="x" * (8192 - base))
    assert len(json.dumps(exact, separators=(",", ":"))) == 8192
    with pytest.raises(PrekeyError, match="unexpected field"):
        start_at(alice, exact)
    with pytest.raises(PrekeyError, match="larger than 8192 bytes"):
        start_at(alice, dict(exact, pad=exact["pad"] + "x"))


def test_a_bundle_created_at_the_epoch_is_a_valid_time(alice, bob):
    bundle = PrekeyStore(bob, clock=lambda: 0.0).bundle(ROOM)
    assert bundle["created"] == 0
    assert prekeys.parse_bundle(bundle, alice, ROOM, now=0.0).created == 0


def test_a_verified_bundle_is_immutable(alice, dated):
    bundle = prekeys.parse_bundle(dated, alice, ROOM, now=T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bundle.spk = 2
