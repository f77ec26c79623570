"""Plaintext message format, the outbox of unreceipted messages, and the seen-id memory.

Both the outbox and the seen ids can be backed by a durable
:class:`~parley_client.roomstate.RoomState`, so a restart resends and de-duplicates.

The plaintext inside every sealed envelope is UTF-8 JSON ``{"id", "ts", "kind", "body"}``
where kind is ``text`` (body: the message) or ``receipt`` (body: the id being receipted).
A text may also carry ``"after"``: the id of the sender's previous text that was still
unreceipted when this one was sealed. The receiver holds the text back until that one has been
shown, so a lost envelope that is re-sent later cannot be shown after its successors.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

KINDS = ("text", "receipt", "notice")
# A notice's body: the receiver withholds our texts because it has not accepted our key.
NOTICE_KEY_NOT_ACCEPTED = "key_not_accepted"
MAX_ID_LEN = 64
# Limit on the encoded plaintext: sealed, it grows to ~4/3 plus ~1.3 kB, which stays under the
# relay's default 64 kB payload limit.
MAX_BODY_BYTES = 40_000
MAX_TS = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second time.localtime shows


class BadPlaintext(ValueError):
    """A message that decrypted fine but is not a valid Parley plaintext."""


@dataclass(frozen=True)
class Plaintext:
    """One decoded message."""

    id: str
    ts: float
    kind: str
    body: str
    after: str | None = None  # id of the text this one must be shown after (texts only)

    def encode(self) -> bytes:
        """UTF-8 JSON bytes, ready for ``Session.seal``."""
        obj = {"id": self.id, "ts": self.ts, "kind": self.kind, "body": self.body}
        if self.after is not None:
            obj["after"] = self.after
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Plaintext:
        """Parse and validate; raise BadPlaintext with a short reason."""
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadPlaintext("not UTF-8 JSON") from None
        if not isinstance(obj, dict):
            raise BadPlaintext("not a JSON object")
        mid, ts, kind, body = (obj.get(k) for k in ("id", "ts", "kind", "body"))
        if not isinstance(mid, str) or not 0 < len(mid) <= MAX_ID_LEN:
            raise BadPlaintext("missing or oversized id")
        if not valid_ts(ts):
            raise BadPlaintext("missing or impossible timestamp")
        if kind not in KINDS:
            raise BadPlaintext(f"unknown kind {str(kind)[:20]!r}")
        if not isinstance(body, str) or len(body) > MAX_BODY_BYTES:
            raise BadPlaintext("missing or oversized body")
        after = obj.get("after")
        if after is not None and (not isinstance(after, str) or not 0 < len(after) <= MAX_ID_LEN):
            raise BadPlaintext("malformed 'after' id")
        return cls(mid, float(ts), kind, body, after if kind == "text" else None)


def valid_ts(ts: object) -> bool:
    """A sender's time we can show: a number from 1970 to 9999 (a peer's ``1e300``, NaN or
    infinity would make every local-time formatting raise)."""
    return not isinstance(ts, bool) and isinstance(ts, int | float) and 0 <= ts <= MAX_TS


def new_text(body: str) -> Plaintext:
    """A fresh text message with a random id."""
    return Plaintext(secrets.token_hex(8), time.time(), "text", body)


def new_notice(body: str) -> Plaintext:
    """A notice about the conversation itself (``NOTICE_*``), never shown as a text."""
    return Plaintext(secrets.token_hex(8), time.time(), "notice", body)


def new_receipt(message_id: str) -> Plaintext:
    """A receipt for ``message_id`` (receipts get their own random id)."""
    return Plaintext(secrets.token_hex(8), time.time(), "receipt", message_id)


@dataclass
class Pending:
    """A text in the outbox: sent (maybe several times) but not yet receipted."""

    message: Plaintext
    to: str | None = None  # key id of the contact it is for; None = the room's first contact
    sent_at: float | None = None  # monotonic time of the last send, None = not sent yet
    attempts: int = 0
    stored: str | None = None  # the relay's mailbox entry id once it stored it (✓, away peer)


class Outbox:
    """Unreceipted texts in submission order, each bound to the key it is for.

    Every change goes to ``state`` (a :class:`~parley_client.roomstate.RoomState`) before it
    counts: a text is queued once it is durable, and it leaves only on a receipt from its key.
    """

    def __init__(self, state=None) -> None:
        self._state = state
        self._items: OrderedDict[str, Pending] = OrderedDict()
        for r in state.pending() if state is not None else ():
            message = Plaintext(r["id"], float(r.get("ts") or 0.0), "text", r["body"])
            stored = r.get("stored") if isinstance(r.get("stored"), str) else None
            self._items[message.id] = Pending(message, r.get("to"), stored=stored)

    def add(self, message: Plaintext, to: str | None = None) -> Pending:
        item = Pending(message, to)
        if self._state is not None:
            self._state.queued(_record(item))
        self._items[message.id] = item
        return item

    def delivered(self, message_id: str, from_key: str | None = None) -> Pending | None:
        """Drop a text receipted by the key it is for; returns it, or None (not pending, or
        the receipt came from another key, which never counts)."""
        item = self._items.get(message_id)
        if item is None or item.to is None or item.to != from_key:
            return None
        if self._state is not None:
            self._state.delivered(message_id)
        return self._items.pop(message_id)

    def address(self, key_id: str, only_from: str | None = None) -> int:
        """Bind the texts for ``only_from`` (None: the unaddressed ones) to ``key_id``."""
        count = 0
        for item in self._items.values():
            if item.to == only_from and item.to != key_id:
                if self._state is not None:
                    self._state.addressed(item.message.id, key_id)
                item.to, item.sent_at = key_id, None
                count += 1
        return count

    def waiting_for_others(self, key_id: str | None) -> list[Pending]:
        """Texts bound to some key other than ``key_id`` (they stay until the user decides)."""
        return [i for i in self._items.values() if i.to is not None and i.to != key_id]

    def discard_for_others(self, key_id: str | None) -> int:
        """Drop the texts bound to other keys than ``key_id`` (the user said so)."""
        gone = self.waiting_for_others(key_id)
        for item in gone:
            if self._state is not None:
                self._state.delivered(item.message.id)
            del self._items[item.message.id]
        return len(gone)

    def stored(self, message_id: str, entry: str | None) -> Pending | None:
        """The relay stored a text for the away contact as mailbox ``entry`` (durably noted,
        so a restart does not send it to the mailbox again); None expires that note."""
        item = self._items.get(message_id)
        if item is None or item.stored == entry:
            return None
        if self._state is not None:
            self._state.stored(message_id, entry)
        item.stored = entry
        if entry is None:
            item.sent_at = None
        return item

    def by_entry(self, entry: str) -> Pending | None:
        """The text the relay stored as mailbox ``entry``, if it is still ours to deliver."""
        return next((i for i in self._items.values() if i.stored == entry), None)

    def all_stored(self) -> bool:
        """True when every text is at least in the contact's mailbox (or none waits)."""
        return all(i.stored is not None for i in self._items.values())

    def mark_unsent(self) -> None:
        """After a disconnect or a new session everything must be sent again."""
        for item in self._items.values():
            item.sent_at = None

    def due(
        self, now: float, resend_after: float, key_id: str | None = None, stored: bool = True
    ) -> list[Pending]:
        """Items for ``key_id`` never sent on this session, or sent ``resend_after`` ago;
        with ``stored=False`` not those already in the contact's mailbox (sending them to the
        mailbox again would only store a duplicate)."""
        return [
            i
            for i in self._items.values()
            if i.to == key_id
            and (stored or i.stored is None)
            and (i.sent_at is None or now - i.sent_at >= resend_after)
        ]

    def stamped(self, item: Pending) -> Plaintext:
        """The item's text naming, as ``after``, the unreceipted text for the same key queued
        just before it."""
        previous = None
        for other in self._items.values():
            if other.message.id == item.message.id:
                break
            if other.to == item.to:
                previous = other.message.id
        return replace(item.message, after=previous)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items.values()))


def _record(item: Pending) -> dict:
    m = item.message
    return {"id": m.id, "ts": m.ts, "body": m.body, "to": item.to, "stored": item.stored}


SEND_RATE, SEND_BURST = 30.0, 120.0  # texts per second, bucket size


class Pacer:
    """Token bucket that keeps texts below the relay's default rate limit (50 events/s, burst
    200, receipts and handshakes included), so a big outbox after an outage is not bounced."""

    def __init__(self, now: float, rate: float = SEND_RATE, burst: float = SEND_BURST):
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class SeenIds:
    """Ids already shown, oldest forgotten first. 100k ids is a few MB: plenty for a chat."""

    def __init__(self, limit: int = 100_000, state=None) -> None:
        self.limit = limit
        self._state = state
        self._ids: OrderedDict[str, None] = OrderedDict()
        for message_id in state.seen() if state is not None else ():
            self._ids[message_id] = None

    def add(self, message_id: str, text: dict | None = None) -> bool:
        """Remember an id (durably, with a state, before the text is shown, with ``text`` to
        show again if the process ends before :meth:`showed`); False if it was known."""
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return False
        if self._state is not None:
            self._state.saw(message_id, text)
        self._ids[message_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True

    def showed(self, message_id: str) -> None:
        """The text of ``message_id`` is on the screen (see :meth:`add`)."""
        if self._state is not None:
            self._state.showed(message_id)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class InOrder:
    """Texts held back until the text they name as ``after`` has been shown.

    Nothing held is receipted, so the sender keeps re-sending it; the oldest held text is
    dropped past ``limit`` (it comes back with the next re-send).
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._waiting: OrderedDict[str, Plaintext] = OrderedDict()  # keyed by ``after``

    def accept(
        self, message: Plaintext, seen: SeenIds, sender: str | None = None
    ) -> list[Plaintext] | None:
        """Texts to show now, in the sender's order; ``[]`` if held back, None if a duplicate.
        With ``sender`` (their label), each is recorded with its text until shown."""
        if message.id in seen:
            return None
        if message.after is not None and message.after not in seen:
            self._waiting[message.after] = message
            if len(self._waiting) > self.limit:
                self._waiting.popitem(last=False)
            return []
        ready = []
        while message is not None:
            text = (
                None if sender is None else {"from": sender, "ts": message.ts, "body": message.body}
            )
            if seen.add(message.id, text):
                ready.append(message)
            message = self._waiting.pop(message.id, None)
        return ready

    def hold(self, message: Plaintext) -> None:
        """Hold ``message`` back again (a text kept across a restart, see kept.py)."""
        if message.after is not None:
            self._waiting[message.after] = message

    def __len__(self) -> int:
        return len(self._waiting)
