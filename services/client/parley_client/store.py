"""Private files in the client's home: permission checks, atomic writes, append-only journals.

Everything the client keeps lives in one folder (mode 0700) of files with mode 0600, like
``~/.ssh``: a home or file that group or others can read is refused with one line naming the
``chmod`` that fixes it. Whole files are replaced atomically (temp file, fsync, rename, fsync of
the folder), so a crash leaves either the old or the new version. Data that grows with every
message (outbox, seen ids) goes to append-only journals of JSON lines, fsynced per record: a
crash can only tear the last line, which loading ignores.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .config import ConfigError

FILE_MODE, DIR_MODE = 0o600, 0o700
# Journals are compacted on load; a journal is small (unreceipted texts, the seen-id window),
# but a hostile or corrupt one must not make loading eat all memory.
MAX_JOURNAL_BYTES = 64 * 1024 * 1024


class HomeError(ConfigError):
    """The home folder or one of its files is unusable; shown as one line (exit status 2)."""


def check_private(path: Path) -> None:
    """Refuse a file or folder that group or others may access (what ssh does for keys)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise HomeError(f"cannot read {path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise HomeError(f"{path} is a symbolic link; parley keeps its keys in plain files")
    is_dir = stat.S_ISDIR(st.st_mode)
    if st.st_mode & 0o077:
        mode = "700" if is_dir else "600"
        what = "folder" if is_dir else "file"
        raise HomeError(
            f"{what} {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); fix it with: chmod {mode} {path}"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise HomeError(f"{path} belongs to another user (uid {st.st_uid}); refusing to use it")


def ensure_dir(path: Path) -> Path:
    """Create a private folder (0700) if missing, and check an existing one."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    except OSError as e:
        raise HomeError(f"cannot create folder {path}: {e.strerror}") from None
    check_private(path)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600) so a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as pretty JSON (see :func:`write_atomic`)."""
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(path, text.encode("utf-8"))


def read_json(path: Path, default):
    """Read a private JSON file; ``default`` if it does not exist. Corrupt -> HomeError."""
    check_private(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise HomeError(f"cannot read {path}: {e}") from None


class Journal:
    """An append-only file of JSON objects, one a line, each fsynced before append returns."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self.torn = False  # the last load skipped a line: compact before appending again
        self.appended = 0  # bytes appended since the last load or rewrite

    def load(self) -> list[dict]:
        """Every intact record, in order; a torn or corrupt line (a crash mid-append) is skipped
        and sets :attr:`torn` (the caller must :meth:`rewrite` before it appends)."""
        check_private(self.path)
        try:
            size = self.path.stat().st_size
            if size > MAX_JOURNAL_BYTES:
                raise HomeError(f"{self.path} is {size} bytes, more than any real journal")
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise HomeError(f"cannot read {self.path}: {e.strerror}") from None
        records = list(_records(raw))
        lines = sum(1 for line in raw.split(b"\n") if line.strip())
        self.torn = lines != len(records) or (bool(raw) and not raw.endswith(b"\n"))
        return records

    def rewrite(self, records: list[dict]) -> None:
        """Atomically replace the journal with ``records`` (compaction)."""
        self.close()
        write_atomic(self.path, b"".join(_line(r) for r in records))
        self.torn = False
        self.appended = 0

    def append(self, record: dict, durable: bool = True) -> None:
        """Add one record (write, then fsync unless ``durable=False``: the record then
        survives the process, not necessarily the machine)."""
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, FILE_MODE)
        line = _line(record)
        os.write(self._fd, line)
        self.appended += len(line)
        if durable:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _line(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _records(raw: bytes) -> Iterator[dict]:
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue  # torn by a crash mid-append: that record was never acknowledged
        if isinstance(obj, dict):
            yield obj


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/lock`` held for the life of the process, so two
    clients never share (and compact under each other) one room's journals."""

    def __init__(self, folder: Path):
        self.path = folder / "lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if we hold the lock now; False if another process holds it."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, FILE_MODE)
        except OSError as e:
            raise HomeError(f"cannot open {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
