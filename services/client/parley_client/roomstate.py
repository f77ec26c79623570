"""What a conversation must remember across restarts: the outbox, the seen ids, the session.

One small interface (:class:`RoomState`) with two stores: :class:`MemoryRoomState` (unit tests,
and nothing else) and :class:`DiskRoomState`, a folder per room under the home:

- ``outbox.log``: journal of ``{"op": "add", "id", "ts", "body", "to"}`` (``to``: the key id
  the text is for), ``{"op": "done", "id"}`` (receipted by that key),
  ``{"op": "to", "id", "to"}`` (the user sent it on to a new key) and
  ``{"op": "stored", "id", "entry"}`` (the relay stored it in the away contact's mailbox;
  ``entry`` null again when it expired there);
- ``seen.log``: journal of ``{"id", "text"}`` for every text shown, written *before* it is
  shown, then ``{"id", "op": "shown"}`` once it was: a client killed in between shows that
  ``text`` (``{"from", "ts", "body"}``) again at its next start, marked recovered, instead of
  taking its id for a duplicate of a text nobody saw (the offline soak once lost a line so);
- ``session.json``: the ratchet state (``Session.to_state()``) when the crypto layer has one;
- ``prekeys.json``: our private prekeys for this room's seat (``PrekeyStore.to_state()``);
- ``withheld-session.json``: the session of a changed, untrusted key that sealed kept texts
  (``Session.to_state()``), so its further stored entries still open after a restart;
- ``kept.json``: stored (mailbox) messages opened but not shown yet, with their plaintext:
  withheld from a changed key or held for order (see kept.py); the relay entry is acknowledged
  only once the text is shown or discarded, and opening it again would fail (its keys are used);
- ``lock``: held while a client uses the room, so two processes never share the journals.

Journals are compacted on load. The contract tests run against both stores.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from . import store
from .messages import valid_ts

_FIELDS = ("id", "ts", "body", "to", "stored")


def _showable(text: object) -> bool:
    """A saved text to show again: ``{"from": str, "ts": number, "body": str}``."""
    return (
        isinstance(text, dict)
        and isinstance(text.get("from"), str)
        and isinstance(text.get("body"), str)
        and valid_ts(text.get("ts"))
    )


SEEN_LIMIT = 100_000  # ids remembered (a few MB); older ones cannot come back within a chat
# seen.log is compacted in a session once this much was appended (texts of shown messages):
# far below the journals' 64 MiB cap, and a rewrite (100k ids: ~2.5 MB) every 200+ texts.
SEEN_COMPACT_BYTES = 8 * 1024 * 1024


class RoomState(Protocol):
    """Durable memory of one room's conversation."""

    def pending(self) -> list[dict]:
        """Unreceipted texts in submission order: ``{"id", "ts", "body", "to", "stored"}``."""

    def queued(self, record: dict) -> None:
        """A text entered the outbox (durable when this returns)."""

    def delivered(self, message_id: str) -> None:
        """A text was receipted by the key it was for."""

    def addressed(self, message_id: str, key_id: str | None) -> None:
        """A text is now for another key (first use, or the user's explicit choice)."""

    def stored(self, message_id: str, entry: str | None) -> None:
        """The relay stored a text in the contact's mailbox as ``entry`` (None: expired)."""

    def seen(self) -> list[str]:
        """Ids of texts already shown, oldest first."""

    def saw(self, message_id: str, text: dict | None = None) -> None:
        """A text is about to be shown (durable when this returns); ``text`` is what to show
        again if the process ends before :meth:`showed`."""

    def showed(self, message_id: str) -> None:
        """The text :meth:`saw` announced is on the screen."""

    def unshown(self) -> list[dict]:
        """Texts announced by :meth:`saw` and never marked shown: ``{"id", "from", "ts",
        "body"}``, oldest first."""

    def session_state(self) -> dict | None:
        """The saved ratchet state, if any."""

    def save_session(self, state: dict | None) -> None:
        """Replace the saved ratchet state (None forgets it)."""

    def prekeys(self) -> dict | None:
        """Our saved private prekeys, if any."""

    def save_prekeys(self, state: dict) -> None:
        """Replace the saved private prekeys (durable when this returns)."""

    def kept(self) -> list[dict]:
        """Stored messages opened but not shown yet (kept.py's records), oldest first."""

    def save_kept(self, records: list[dict]) -> None:
        """Replace the kept records (durable when this returns)."""

    def withheld_session(self) -> dict | None:
        """The saved session of the key whose texts are withheld, if any."""

    def save_withheld_session(self, state: dict | None) -> None:
        """Replace (None: forget) the withheld key's session state."""

    def close(self) -> None:
        """Release files and locks."""


class MemoryRoomState:
    """A RoomState that forgets everything with the process."""

    def __init__(self) -> None:
        self._outbox: dict[str, dict] = {}
        self._seen: list[str] = []
        self._unshown: dict[str, dict] = {}
        self._session: dict | None = None
        self._prekeys: dict | None = None
        self._kept: list[dict] = []
        self._withheld: dict | None = None

    def pending(self) -> list[dict]:
        return [dict(r) for r in self._outbox.values()]

    def queued(self, record: dict) -> None:
        self._outbox[record["id"]] = dict(record)

    def delivered(self, message_id: str) -> None:
        self._outbox.pop(message_id, None)

    def addressed(self, message_id: str, key_id: str | None) -> None:
        if message_id in self._outbox:
            self._outbox[message_id]["to"] = key_id

    def stored(self, message_id: str, entry: str | None) -> None:
        if message_id in self._outbox:
            self._outbox[message_id]["stored"] = entry

    def seen(self) -> list[str]:
        return list(self._seen[-SEEN_LIMIT:])

    def saw(self, message_id: str, text: dict | None = None) -> None:
        self._seen.append(message_id)
        if text is not None:
            self._unshown[message_id] = dict(text)

    def showed(self, message_id: str) -> None:
        self._unshown.pop(message_id, None)

    def unshown(self) -> list[dict]:
        return [{"id": i, **t} for i, t in self._unshown.items()]

    def session_state(self) -> dict | None:
        return self._session

    def save_session(self, state: dict | None) -> None:
        self._session = state

    def prekeys(self) -> dict | None:
        return self._prekeys

    def save_prekeys(self, state: dict) -> None:
        self._prekeys = state

    def kept(self) -> list[dict]:
        return [dict(r) for r in self._kept]

    def save_kept(self, records: list[dict]) -> None:
        self._kept = [dict(r) for r in records]

    def withheld_session(self) -> dict | None:
        return self._withheld

    def save_withheld_session(self, state: dict | None) -> None:
        self._withheld = state

    def close(self) -> None:
        return None


def room_folder(home: Path, room: str) -> Path:
    """``<home>/rooms/<hash>``: room names may be any Unicode, folder names stay plain."""
    digest = hashlib.sha256(room.encode("utf-8")).hexdigest()[:32]
    return home / "rooms" / digest


class RoomBusy(store.HomeError):
    """Another client process already uses this room from this home."""


class DiskRoomState:
    """A RoomState in a private folder (see the module docstring)."""

    def __init__(self, folder: Path, room: str):
        store.ensure_dir(folder.parent)
        self.folder = store.ensure_dir(folder)
        self._lock = store.FolderLock(folder)
        if not self._lock.acquire():
            raise RoomBusy(
                f"you are already connected to room {room!r} from another terminal "
                f"(this home, {folder.parent.parent}, is in use for that room)"
            )
        self._outbox = store.Journal(folder / "outbox.log")
        self._seen = store.Journal(folder / "seen.log")
        self._session_path = folder / "session.json"
        self._prekeys_path = folder / "prekeys.json"
        self._kept_path = folder / "kept.json"
        self._withheld_path = folder / "withheld-session.json"
        self._pending = self._load_outbox()
        self._unshown: dict[str, dict] = {}
        self._seen_ids = self._load_seen()

    def _load_outbox(self) -> dict[str, dict]:
        records = self._outbox.load()
        items: dict[str, dict] = {}
        for r in records:
            mid = r.get("id")
            if not isinstance(mid, str):
                continue
            if r.get("op") == "add" and isinstance(r.get("body"), str):
                items[mid] = {k: r.get(k) for k in _FIELDS}
            elif r.get("op") == "done":
                items.pop(mid, None)
            elif r.get("op") == "to" and mid in items:
                items[mid]["to"] = r.get("to")
            elif r.get("op") == "stored" and mid in items:
                entry = r.get("entry")
                items[mid]["stored"] = entry if isinstance(entry, str) else None
        if self._outbox.torn or len(records) != len(items):
            self._outbox.rewrite([{"op": "add", **r} for r in items.values()])
        return items

    def _load_seen(self) -> list[str]:
        records = self._seen.load()
        ids, unshown = [], self._unshown
        for r in records:
            mid = r.get("id")
            if not isinstance(mid, str):
                continue
            if r.get("op") == "shown":
                unshown.pop(mid, None)
                continue
            ids.append(mid)
            if _showable(r.get("text")):
                unshown[mid] = {k: r["text"][k] for k in ("from", "ts", "body")}
        ids = ids[-SEEN_LIMIT:]
        kept = set(ids)
        for mid in [m for m in unshown if m not in kept]:
            del unshown[mid]
        if self._seen.torn or len(ids) != len(records) or unshown:
            self._compact_seen(ids)
        return ids

    def _compact_seen(self, ids: list[str] | None = None) -> None:
        """One record per id, the unshown ones still with their text (the texts of shown ones
        would otherwise fill the journal: each is up to 40 kB)."""
        ids = self._seen_ids[-SEEN_LIMIT:] if ids is None else ids
        unshown = self._unshown
        self._seen.rewrite(
            [{"id": i, "text": unshown[i]} if i in unshown else {"id": i} for i in ids]
        )

    def pending(self) -> list[dict]:
        return [dict(r) for r in self._pending.values()]

    def queued(self, record: dict) -> None:
        entry = {k: record.get(k) for k in _FIELDS}
        self._outbox.append({"op": "add", **entry})
        self._pending[entry["id"]] = entry

    def delivered(self, message_id: str) -> None:
        if self._pending.pop(message_id, None) is not None:
            self._outbox.append({"op": "done", "id": message_id})

    def addressed(self, message_id: str, key_id: str | None) -> None:
        if message_id in self._pending:
            self._outbox.append({"op": "to", "id": message_id, "to": key_id})
            self._pending[message_id]["to"] = key_id

    def stored(self, message_id: str, entry: str | None) -> None:
        if message_id in self._pending:
            self._outbox.append({"op": "stored", "id": message_id, "entry": entry})
            self._pending[message_id]["stored"] = entry

    def seen(self) -> list[str]:
        return list(self._seen_ids)

    def saw(self, message_id: str, text: dict | None = None) -> None:
        record = {"id": message_id}
        if text is not None:
            record["text"] = text
        self._seen.append(record)
        self._seen_ids.append(message_id)
        if text is not None:
            self._unshown[message_id] = dict(text)

    def showed(self, message_id: str) -> None:
        if self._unshown.pop(message_id, None) is not None:
            # No fsync: a mark lost with the machine (not with the process) only shows the
            # text once more, marked recovered.
            self._seen.append({"id": message_id, "op": "shown"}, durable=False)
            if self._seen.appended > SEEN_COMPACT_BYTES:
                self._compact_seen()  # keeps the texts still unshown

    def unshown(self) -> list[dict]:
        return [{"id": i, **t} for i, t in self._unshown.items()]

    def session_state(self) -> dict | None:
        data = store.read_json(self._session_path, None)
        return data if isinstance(data, dict) else None

    def save_session(self, state: dict | None) -> None:
        if state is None:
            self._session_path.unlink(missing_ok=True)
        else:
            store.write_json(self._session_path, state)

    def prekeys(self) -> dict | None:
        data = store.read_json(self._prekeys_path, None)
        return data if isinstance(data, dict) else None

    def save_prekeys(self, state: dict) -> None:
        store.write_json(self._prekeys_path, state)

    def kept(self) -> list[dict]:
        data = store.read_json(self._kept_path, [])
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def save_kept(self, records: list[dict]) -> None:
        store.write_json(self._kept_path, records)

    def withheld_session(self) -> dict | None:
        data = store.read_json(self._withheld_path, None)
        return data if isinstance(data, dict) else None

    def save_withheld_session(self, state: dict | None) -> None:
        if state is None:
            self._withheld_path.unlink(missing_ok=True)
        else:
            store.write_json(self._withheld_path, state)

    def close(self) -> None:
        self._outbox.close()
        self._seen.close()
        self._lock.release()
