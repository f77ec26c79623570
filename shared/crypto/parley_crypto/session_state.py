"""Session persistence: :meth:`Session.to_state` / :meth:`Session.from_state` as JSON-able
dicts, parsed as strictly as wire payloads (a corrupt file is an error, never a crash)."""

from __future__ import annotations

from parley_crypto import _wire, dh, elgamal, groups, ratchet
from parley_crypto.errors import ParleyError
from parley_crypto.identity import PROTOCOL_VERSION, PeerIdentity

_TYPE = "parley-session"
_FIELDS = ("v", "type", "me", "peer", "role", "th", "hash", "peer_hash", "deniable",
           "peer_deniable", "ratchet")  # fmt: skip
_RATCHET = ("dhs", "dhr", "rk", "cks", "ckr", "ns", "nr", "pn", "skipped")


class InvalidState(ParleyError):
    """A stored session state is malformed or belongs to another identity."""


def _hex_or_none(value: bytes | int | None) -> str | None:
    if value is None:
        return None
    return value.hex() if isinstance(value, bytes) else _wire.to_hex(value)


def dump(session) -> dict:
    """The session's fields and ratchet state (``session`` is a Session)."""
    st: ratchet.State = session._state
    return {
        "v": PROTOCOL_VERSION,
        "type": _TYPE,
        "me": session._me.public.key_id,
        "peer": session._peer.to_payload(),
        "role": session._role,
        "th": session._transcript_hash.hex(),
        "hash": session._hash,
        "peer_hash": session._peer_hash,
        "deniable": session._deniable,
        "peer_deniable": session._peer_deniable,
        "ratchet": {
            "dhs": _wire.to_hex(st.DHs.x),
            "dhr": _hex_or_none(st.DHr),
            "rk": st.RK.hex(),
            "cks": _hex_or_none(st.CKs),
            "ckr": _hex_or_none(st.CKr),
            "ns": st.Ns,
            "nr": st.Nr,
            "pn": st.PN,
            "skipped": [
                [_wire.to_hex(k[0]), k[1], v[0].hex(), v[1]] for k, v in st.MKSKIPPED.items()
            ],
        },
        # Optional (older states have none): the initial message of an asynchronous session.
        "init": None if session._init is None else {
            "payload": session._init, "pending": session._init_pending,
        },
    }  # fmt: skip


def _key(value: object, what: str, optional: bool = False) -> bytes | None:
    if value is None and optional:
        return None
    return _wire.hex_bytes(value, 32, InvalidState, what)


def _counter(value: object, what: str) -> int:
    if not _wire.is_int(value) or not 0 <= value <= ratchet.MAX_COUNTER:
        raise InvalidState(f"session state {what} out of range")
    return value


def _choice(value: object, allowed: tuple, what: str):
    if isinstance(value, bool) != isinstance(allowed[0], bool) or value not in allowed:
        raise InvalidState(f"session state {what} is invalid")
    return value


def load(cls, obj: object, me, clock):
    """Parse ``obj`` into a ``cls`` (Session) for identity ``me``."""
    init, pending = None, False
    if isinstance(obj, dict) and "init" in obj:
        init, pending = _init(obj["init"])
        obj = {k: v for k, v in obj.items() if k != "init"}
    data = _wire.fields(obj, _FIELDS, InvalidState, "session state")
    _wire.version(data, InvalidState, "session state", PROTOCOL_VERSION)
    if data["type"] != _TYPE or data["me"] != me.public.key_id:
        raise InvalidState("session state belongs to another identity or is not a session")
    try:
        peer = PeerIdentity.from_payload(data["peer"])
    except ParleyError as exc:
        raise InvalidState(f"session state peer is invalid: {exc}") from exc
    if peer.group != me.signing_key.group.name:
        raise InvalidState("session state peer uses another group than our identity")
    group = groups.get(peer.group)
    r = _wire.fields(data["ratchet"], _RATCHET, InvalidState, "session ratchet state")
    digits = group.hex_digits
    try:
        dhs = dh.DHPrivateKey(group, _wire.hex_int(r["dhs"], digits, InvalidState, "dhs"))
        dhr = None if r["dhr"] is None else _wire.hex_int(r["dhr"], digits, InvalidState, "dhr")
        if dhr is not None:
            dh.validate_public(group, dhr)
    except (ValueError, ParleyError) as exc:
        raise InvalidState(f"session state ratchet keys are invalid: {exc}") from exc
    state = ratchet.State(
        group=group,
        DHs=dhs,
        DHr=dhr,
        RK=_key(r["rk"], "rk"),
        CKs=_key(r["cks"], "cks", optional=True),
        CKr=_key(r["ckr"], "ckr", optional=True),
        Ns=_counter(r["ns"], "ns"),
        Nr=_counter(r["nr"], "nr"),
        PN=_counter(r["pn"], "pn"),
        MKSKIPPED=_skipped(r["skipped"], digits),
    )
    return cls(
        me=me,
        peer=peer,
        role=_choice(data["role"], ratchet.ROLES, "role"),
        state=state,
        transcript_hash=_key(data["th"], "th"),
        hash=_choice(data["hash"], elgamal.HASHES, "hash"),
        peer_hash=_choice(data["peer_hash"], elgamal.HASHES, "peer_hash"),
        deniable=_choice(data["deniable"], (True, False), "deniable"),
        peer_deniable=_choice(data["peer_deniable"], (True, False), "peer_deniable"),
        clock=clock,
        init=init,
        init_pending=pending,
    )


def _init(value: object) -> tuple[dict | None, bool]:
    """The stored initial message (checked again in full only if it ever opens anything:
    Session.open compares it with the envelope's, whose MAC binds the transcript)."""
    if value is None:
        return None, False
    data = _wire.fields(value, ("payload", "pending"), InvalidState, "session state init")
    if not isinstance(data["payload"], dict) or not isinstance(data["pending"], bool):
        raise InvalidState("session state init is invalid")
    return data["payload"], data["pending"]


def _skipped(items: object, digits: int) -> dict:
    if not isinstance(items, list) or len(items) > ratchet.MAX_SKIPPED_TOTAL:
        raise InvalidState("session state skipped keys are invalid")
    out = {}
    for item in items:
        if not isinstance(item, list) or len(item) != 4:
            raise InvalidState("session state skipped key entry is invalid")
        dh_value = _wire.hex_int(item[0], digits, InvalidState, "skipped dh")
        stamp = item[3]
        if not isinstance(stamp, int | float) or isinstance(stamp, bool) or stamp != stamp:
            raise InvalidState("session state skipped key time is invalid")
        out[(dh_value, _counter(item[1], "skipped n"))] = (
            _key(item[2], "skipped key"),
            float(stamp),
        )
    return out
