"""``PARLEY_KEYLOG_FILE``: a debug log of session keys, in the spirit of ``SSLKEYLOGFILE``.

It holds only what a debugger of the symmetric layer needs (each session's message keys, or
the ratchet's root and chain keys), never the identity key or a DH exponent, which would let
the reader impersonate the user later. It is loud (one warning line at start-up), and the file
must be new: opened with ``O_EXCL | O_NOFOLLOW`` and mode 0600, so it cannot be pointed at an
existing file or through a symlink. The test suite uses it to prove no key reaches the relay.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from .config import ConfigError

# A v1 session's fields that hold symmetric keys (a v2 session says itself, debug_secrets).
_V1_DIRECTIONS = ("_send", "_receive")
_V1_PARTS = ("enc_key", "mac_key")


class KeyLog:
    """An open key log; :meth:`record` is the core's ``on_session`` hook."""

    def __init__(self, fd: int, path: Path):
        self._fd = fd
        self.path = path

    @classmethod
    def open(cls, path: Path) -> KeyLog:
        """Create the log (it must not exist yet) and say loudly that it is on."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise ConfigError(
                f"PARLEY_KEYLOG_FILE {path} already exists; a key log is only written to a "
                "new file (remove it, or unset PARLEY_KEYLOG_FILE)"
            ) from None
        except OSError as e:
            raise ConfigError(f"cannot create PARLEY_KEYLOG_FILE {path}: {e.strerror}") from None
        # Straight to stderr, whatever the output mode: this must not drown in --json events.
        sys.stderr.write(
            f"parley: WARNING: DEBUG KEY LOG IS ON: session keys go to {path}; whoever reads "
            "it can read this chat. Unset PARLEY_KEYLOG_FILE unless you are debugging.\n"
        )
        sys.stderr.flush()
        return cls(fd, path)

    def record(self, session, *_ignored) -> None:
        """Append this session's symmetric keys (hex) as one JSON line."""
        entry = {"time": time.time(), **session_secrets(session)}
        os.write(self._fd, (json.dumps(entry) + "\n").encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def session_secrets(session) -> dict[str, str]:
    """The symmetric keys of a session (hex): the ratchet's root and chain keys (protocol v2's
    ``Session.debug_secrets``), or a v1 session's message keys."""
    debug = getattr(session, "debug_secrets", None)
    if callable(debug):
        return dict(debug())
    found = {}
    for direction in _V1_DIRECTIONS:
        keys = getattr(session, direction, None)
        for part in _V1_PARTS:
            value = getattr(keys, part, None)
            if isinstance(value, bytes):
                found[f"{direction[1:]}_{part}"] = value.hex()
    return found
