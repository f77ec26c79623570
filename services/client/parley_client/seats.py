"""Room seats the relay keeps for us: one resume secret per room, kept in the client's home.

The relay (v2) gives a room's seat to whoever first joins with a secret and keeps it for that
secret only (it stores SHA-256 of it): a reconnect, a failover to another replica or a
restart of this client resume the seat, a stranger using our name gets `room_full`. The
secrets live in `$PARLEY_HOME/seats.json` (0600, written atomically: temp + fsync + rename),
independent of the relay URL. The instance id is new per client process: the relay tells a
second terminal using the same seat (`already_connected`) from our own reconnect.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path

FILE_NAME = "seats.json"
SECRET_BYTES = 32  # 256 bits: the relay's only proof that a seat is ours
INSTANCE_BYTES = 16
_SECRET_RE = re.compile(r"[0-9a-f]{64}")


class SeatFileError(ValueError):
    """seats.json is unreadable or malformed; str() says which file and what to do."""


def new_instance() -> str:
    """A fresh instance id for this client process (32 lowercase hex characters)."""
    return secrets.token_hex(INSTANCE_BYTES)


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SeatFileError(f"{path}: cannot read seat secrets ({exc}); move it away") from None
    rooms = data.get("rooms") if isinstance(data, dict) else None
    if not isinstance(rooms, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _SECRET_RE.fullmatch(v)
        for k, v in rooms.items()
    ):
        raise SeatFileError(f"{path}: not a Parley seats file; move it away")
    return rooms


def _write_atomic(path: Path, rooms: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"v": 1, "rooms": rooms}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def room_secret(home: Path, room: str) -> str:
    """The resume secret of `room` (64 lowercase hex), created and saved on first use."""
    home = Path(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / FILE_NAME
    rooms = _load(path)
    secret = rooms.get(room)
    if secret is None:
        secret = secrets.token_hex(SECRET_BYTES)
        _write_atomic(path, {**rooms, room: secret})
    return secret


def forget_room(home: Path, room: str) -> bool:
    """Drop `room`'s secret (after the relay released the seat); False if there was none.

    A later join of the room starts a new seat with a new secret.
    """
    path = Path(home) / FILE_NAME
    rooms = _load(path)
    if room not in rooms:
        return False
    _write_atomic(path, {k: v for k, v in rooms.items() if k != room})
    return True


def seat_auth(auth: dict, home: Path, instance: str) -> dict:
    """`auth` plus this room's `secret` and the process's `instance` (relay v2)."""
    return {**auth, "secret": room_secret(home, auth["room"]), "instance": instance}
