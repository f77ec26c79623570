"""Client configuration: flag, then ``PARLEY_*`` environment variable, then default.

Parsed exactly once in ``main()`` into a frozen :class:`Settings` and passed down; nothing
here reads the environment at import time.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from parley_crypto import groups

DEFAULT_RELAY = "http://localhost:5000"
GROUPS = groups.NAMES
HASHES = ("sha256", "sha1")
# Rooms stay ASCII: the relay uses them in Redis keys and log lines.
_ROOM_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Display names: what the relay accepts (core.MAX_NAME_CHARS), and short enough for one line.
MAX_NAME_CHARS = 64
# Inside a name besides letters and digits (a space too, but not at either end).
NAME_PUNCTUATION = "._-@' "
MAX_PORT = 65535
# `parley --new-room`: 16 random bytes (128 bits: nobody finds the room by guessing),
# URL-safe base64 (22 of A-Z a-z 0-9 - _, within the room rule) after an "r-".
NEW_ROOM_BYTES = 16


class ConfigError(Exception):
    """Bad configuration; ``str()`` is one line meant for the user (exit status 2)."""


@dataclass(frozen=True)
class Settings:
    """Everything the client needs, resolved once."""

    name: str
    room: str
    relays: tuple[str, ...]
    home: Path
    group: str = "ffdhe2048"
    hash: str = "sha256"
    token: str | None = None
    deniable: bool = False
    batch: bool = False
    json: bool = False
    timeout: float = 30.0
    resend_after: float = 5.0
    keylog: Path | None = None
    accept_new_key: str | None = None  # batch: the one contact whose changed key is accepted
    wait_delivered: bool = False  # batch: exit only on receipts (✓✓), not once stored (✓)


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line) instead of printing usage and exiting."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see parley --help)")


def new_room_name() -> str:
    """A fresh, unguessable room name to share with the person you want to talk to."""
    return "r-" + secrets.token_urlsafe(NEW_ROOM_BYTES)


class _NewRoom(argparse.Action):
    """`--new-room`: print a fresh room name and exit 0 (like --version: nothing else runs)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(new_room_name(), flush=True)  # on stdout, so `ROOM=$(parley --new-room)` works
        parser.exit(0)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="parley",
        description="Parley: end-to-end encrypted chat through a Parley relay.",
        epilog="Each option can also be set with its PARLEY_* environment variable.",
    )
    p.add_argument("--version", action="version", version=f"parley {_version()}")
    p.add_argument(
        "--new-room",
        action=_NewRoom,
        help="print a fresh, unguessable room name (to share with your peer) and exit",
    )
    p.add_argument("--name", help="your display name (PARLEY_NAME; default: your login name)")
    p.add_argument("--room", help="room to join (PARLEY_ROOM; default: lobby)")
    p.add_argument(
        "--relay", help=f"relay URL or comma-separated list (PARLEY_RELAY_URL; {DEFAULT_RELAY})"
    )
    p.add_argument(
        "--home",
        help="home folder: identity, contacts, outbox (PARLEY_HOME; default "
        "PARLEY_HOMES/NAME when PARLEY_HOMES is set, else ~/.local/share/parley)",
    )
    p.add_argument("--group", help="DH group (PARLEY_GROUP; default ffdhe2048)")
    p.add_argument("--hash", help="signature hash sha256|sha1 (PARLEY_HASH; default sha256)")
    p.add_argument("--token", help="relay access token (PARLEY_RELAY_TOKEN)")
    p.add_argument(
        "--deniable",
        action="store_true",
        default=None,
        help="do not sign each message (PARLEY_DENIABLE=1)",
    )
    p.add_argument(
        "--batch",
        action="store_true",
        default=None,
        help="scripted mode: stdin lines are messages (automatic when stdin is not a terminal)",
    )
    p.add_argument("--json", action="store_true", default=None, help="JSON lines in batch mode")
    p.add_argument(
        "--timeout", help="batch mode: seconds to wait for receipts at end of input (30)"
    )
    p.add_argument(
        "--wait-delivered",
        action="store_true",
        default=None,
        help="batch mode: wait for the contact's receipts (✓✓) even when it is away and the "
        "relay stored the messages (PARLEY_WAIT_DELIVERED=1)",
    )
    p.add_argument(
        "--accept-new-key",
        metavar="NAME",
        help="batch mode: accept a CHANGED key of this one contact (after you compared "
        "safety numbers another way); PARLEY_ACCEPT_NEW_KEY",
    )
    p.add_argument("--resend-after", help="resend unreceipted messages after N seconds (5)")
    return p


def _pick(flag, env: Mapping[str, str], var: str, default):
    if flag is not None:
        return flag
    value = env.get(var)
    if value is not None and value != "":
        return value
    return default


def _truthy(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"expected a yes/no value, got {value!r}")


def _number(value, what: str, kind=float, minimum=0):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if number <= minimum:
        raise ConfigError(f"{what} must be greater than {minimum}, got {value!r}")
    return number


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parley-client")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def display_name(value: str, what: str = "name") -> str:
    """A display name, NFC-normalised: letters and digits of any script, plus ``._-@'`` and
    inner spaces, at most MAX_NAME_CHARS. Raise ConfigError (one line) otherwise."""
    name = unicodedata.normalize("NFC", value)
    ok = (
        0 < len(name) <= MAX_NAME_CHARS
        and name.strip() == name
        and all(ch.isalnum() or ch in NAME_PUNCTUATION or _is_mark(ch) for ch in name)
        and any(ch.isalnum() for ch in name)  # never "." or "..": the name may name a folder
    )
    if not ok:
        raise ConfigError(
            f"{what} must be 1-{MAX_NAME_CHARS} letters or digits (any script), "
            f"with . _ - @ ' or spaces inside, got {value!r}"
        )
    return name


def _is_mark(ch: str) -> bool:
    # Combining marks that have no precomposed form (e.g. many Indic vowel signs).
    return unicodedata.category(ch).startswith("M")


def _relay_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https", "ws", "wss") or not parsed.hostname:
        raise ConfigError(f"relay URL must look like http://host:port, got {url!r}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port <= MAX_PORT:
        raise ConfigError(f"relay URL {url!r}: the port must be 1-{MAX_PORT}")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ConfigError(f"relay URL {url!r}: give only scheme, host and port")
    return url.rstrip("/")


def _relays(value: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in value.split(",") if u.strip())
    if not urls:
        raise ConfigError("--relay needs at least one URL")
    return tuple(_relay_url(url) for url in urls)


def _default_home(env: Mapping[str, str], name: str) -> Path:
    """``PARLEY_HOMES/<name>`` when PARLEY_HOMES is set (one home per display name, as the
    client image sets it for compose's keys volume), else ``$XDG_DATA_HOME/parley``."""
    homes = env.get("PARLEY_HOMES")
    if homes:
        # display_name() already refused "/", "." and ".."; the name is one folder.
        return Path(homes).expanduser() / name
    data = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")) / ".local" / "share")
    return Path(data).expanduser() / "parley"


def load_settings(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin_is_tty: bool = True,
) -> Settings:
    """Build :class:`Settings` from arguments and environment; raise ConfigError on bad input.

    ``--help`` still prints usage and exits 0 (argparse's own behaviour).
    """
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    name = display_name(_pick(args.name, env, "PARLEY_NAME", env.get("USER") or "anonymous"))
    room = _pick(args.room, env, "PARLEY_ROOM", "lobby")
    if not _ROOM_RE.match(room):
        raise ConfigError(f"room must be 1-64 of A-Z a-z 0-9 . _ -, got {room!r}")
    accept = _pick(args.accept_new_key, env, "PARLEY_ACCEPT_NEW_KEY", None)
    group = _pick(args.group, env, "PARLEY_GROUP", "ffdhe2048")
    if group not in GROUPS:
        raise ConfigError(f"unknown group {group!r}; choose one of {', '.join(GROUPS)}")
    hash_name = _pick(args.hash, env, "PARLEY_HASH", "sha256").lower()
    if hash_name not in HASHES:
        raise ConfigError(f"unknown hash {hash_name!r}; choose sha256 or sha1")
    home = _pick(args.home, env, "PARLEY_HOME", None)
    home_path = Path(home).expanduser() if home else _default_home(env, name)
    batch = _truthy(_pick(args.batch, env, "PARLEY_BATCH", False)) or not stdin_is_tty
    keylog = env.get("PARLEY_KEYLOG_FILE") or None
    return Settings(
        name=name,
        room=room,
        relays=_relays(_pick(args.relay, env, "PARLEY_RELAY_URL", DEFAULT_RELAY)),
        home=home_path,
        group=group,
        hash=hash_name,
        token=_pick(args.token, env, "PARLEY_RELAY_TOKEN", None),
        deniable=_truthy(_pick(args.deniable, env, "PARLEY_DENIABLE", False)),
        batch=batch,
        json=_truthy(_pick(args.json, env, "PARLEY_JSON", False)),
        timeout=_number(_pick(args.timeout, env, "PARLEY_TIMEOUT", 30.0), "--timeout"),
        resend_after=_number(
            _pick(args.resend_after, env, "PARLEY_RESEND_AFTER", 5.0), "--resend-after"
        ),
        keylog=Path(keylog) if keylog else None,
        accept_new_key=display_name(accept, "--accept-new-key") if accept else None,
        wait_delivered=_truthy(_pick(args.wait_delivered, env, "PARLEY_WAIT_DELIVERED", False)),
    )
