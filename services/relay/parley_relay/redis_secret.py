"""The Redis password, kept in a file that Redis and every relay replica read.

Compose runs `python3 -m parley_relay.redis_secret PATH` once before Redis starts (the
`redis-secret` service): it writes REDIS_PASSWORD from the environment when one is given, else
keeps the password already in PATH, else generates a random one. Redis is started with the
password from PATH, and the relays read it through PARLEY_REDIS_PASSWORD_FILE
(`read_password_file`) and fill it into their Redis URL (`url_with_password`). So a deployment
needs no setup step and the password never appears in the compose file or its environment.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

# 32 random bytes = 256 bits: far past any online guessing, and 64 hex characters need no
# escaping in a URL or in redis.conf.
GENERATED_BYTES = 32
# A given password: printable ASCII without spaces, quotes or backslashes (so it is one plain
# word in redis.conf), long enough that guessing it over the network is hopeless.
MIN_PASSWORD_CHARS = 16
MAX_PASSWORD_CHARS = 512
_PASSWORD_RE = re.compile(r"[!#-&(-\[\]-~]+")
# Owner (the relay user) and group (given to Redis with compose's group_add) may read it.
FILE_MODE = 0o640
EXIT_CONFIG = 2


class PasswordFileError(ValueError):
    """The password (file) cannot be used; str() is one line naming the file and the fix."""


def check_password(password: str, source: str) -> None:
    """Refuse a password that is too short or would need quoting in redis.conf."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise PasswordFileError(
            f"{source}: the password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} "
            f"characters, it has {len(password)}; make one with: openssl rand -hex 32"
        )
    if not _PASSWORD_RE.fullmatch(password):
        raise PasswordFileError(
            f"{source}: the password may hold printable ASCII only, no spaces, quotes or "
            "backslashes; make one with: openssl rand -hex 32"
        )


def read_password_file(path: str) -> str:
    """The password stored in `path` (one line; surrounding whitespace is ignored)."""
    where = f"redis password file {path}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PasswordFileError(f"{where} does not exist") from None
    except PermissionError:
        raise PasswordFileError(
            f"{where} is not readable by this user (uid {os.getuid()}, gid {os.getgid()})"
        ) from None
    except IsADirectoryError:
        raise PasswordFileError(f"{where} is a directory, not a file") from None
    except OSError as exc:
        raise PasswordFileError(f"{where} cannot be read: {exc.strerror}") from None
    try:
        password = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise PasswordFileError(f"{where} holds non-ASCII bytes") from None
    if not password:
        raise PasswordFileError(f"{where} is empty")
    check_password(password, where)
    return password


def url_has_password(url: str) -> bool:
    """True when a redis URL already carries a password (in the userinfo or ?password=)."""
    parts = urlsplit(url)
    return parts.password is not None or "password" in parse_qs(parts.query)


def url_with_password(url: str, password: str) -> str:
    """`url` with `password` put in its userinfo (percent-encoded; redis-py decodes it)."""
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _write_atomically(path: Path, password: str) -> None:
    """Write `password` to `path` (mode FILE_MODE) so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask must not take the group's read bit away
        os.write(fd, (password + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_password_file(path: Path, given: str | None) -> str:
    """Make `path` hold the password; returns what was done, as one line for the log.

    `given` (REDIS_PASSWORD) wins; without it an existing valid password is kept, so Redis and
    the relays agree across restarts; otherwise a new random one is written.
    """
    if given:
        check_password(given, "REDIS_PASSWORD")
        if path.exists() and read_password_file(str(path)) == given:
            return f"{path}: holds REDIS_PASSWORD"
        _write_atomically(path, given)
        return f"{path}: wrote REDIS_PASSWORD"
    if path.exists():
        read_password_file(str(path))  # a broken file is an error, never silently replaced
        return f"{path}: kept the existing password"
    _write_atomically(path, secrets.token_hex(GENERATED_BYTES))
    return f"{path}: generated a new random password"


def main(argv: list[str] | None = None) -> int:
    """`python3 -m parley_relay.redis_secret PATH`: see the module docstring."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m parley_relay.redis_secret PATH", file=sys.stderr)
        return EXIT_CONFIG
    try:
        done = ensure_password_file(Path(args[0]), os.environ.get("REDIS_PASSWORD") or None)
    except PasswordFileError as exc:
        print(f"redis-secret: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"redis-secret: cannot write {args[0]}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"redis-secret: {done}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
