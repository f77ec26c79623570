"""PARLEY_REDIS_PASSWORD_FILE and the `redis-secret` one-shot that writes the file."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from parley_relay.config import ConfigError, load_settings
from parley_relay.redis_secret import ensure_password_file, main, url_with_password

PASSWORD = "0123456789abcdef" * 4
RELAY_SRC = Path(__file__).resolve().parents[3] / "services" / "relay"
# redis_secret needs the standard library only, so any Python 3 can run it as another user.
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
NOBODY = 65534
URL = "redis://redis:6379/0"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "redis-password"
    path.write_text(PASSWORD + "\n")
    return path


def test_password_file_fills_a_url_without_password(secret_file):
    env = {"PARLEY_REDIS_URL": URL, "PARLEY_REDIS_PASSWORD_FILE": str(secret_file)}
    assert load_settings([], env).redis_url == f"redis://:{PASSWORD}@redis:6379/0"
    flags = ["--redis-url", "rediss://app@r:1/2?x=1", "--redis-password-file", str(secret_file)]
    assert load_settings(flags, {}).redis_url == f"rediss://app:{PASSWORD}@r:1/2?x=1"


def test_the_password_never_shows_in_the_settings_repr(secret_file):
    env = {"PARLEY_REDIS_URL": URL, "PARLEY_REDIS_PASSWORD_FILE": str(secret_file)}
    assert PASSWORD not in repr(load_settings([], env))


def test_a_password_in_the_url_wins_over_the_file(secret_file):
    for url in ("redis://:given@redis:6379/0", "redis://redis:6379/0?password=given"):
        env = {"PARLEY_REDIS_URL": url, "PARLEY_REDIS_PASSWORD_FILE": str(secret_file)}
        assert load_settings([], env).redis_url == url


def test_flag_beats_env_for_the_password_file(secret_file, tmp_path):
    env = {"PARLEY_REDIS_URL": URL, "PARLEY_REDIS_PASSWORD_FILE": str(tmp_path / "absent")}
    s = load_settings(["--redis-password-file", str(secret_file)], env)
    assert s.redis_url == f"redis://:{PASSWORD}@redis:6379/0"


def test_special_characters_are_percent_encoded_and_redis_py_reads_them_back():
    url = url_with_password(URL, "p@ss:w/rd%?#x")
    assert unquote(urlsplit(url).password) == "p@ss:w/rd%?#x"
    assert urlsplit(url).hostname == "redis"
    socket_url = url_with_password("unix:///run/redis.sock?db=1", PASSWORD)
    assert socket_url == f"unix://:{PASSWORD}@/run/redis.sock?db=1"


def _config_error(path: str, url: str | None = URL) -> str:
    env = {"PARLEY_REDIS_PASSWORD_FILE": path}
    if url:
        env["PARLEY_REDIS_URL"] = url
    with pytest.raises(ConfigError) as info:
        load_settings([], env)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_missing_empty_unreadable_or_bad_files_are_one_clear_error(tmp_path):
    absent = tmp_path / "absent"
    assert _config_error(str(absent)) == f"redis password file {absent} does not exist"
    empty = tmp_path / "empty"
    empty.write_text("\n  \n")
    assert _config_error(str(empty)) == f"redis password file {empty} is empty"
    assert "is a directory" in _config_error(str(tmp_path))
    short = tmp_path / "short"
    short.write_text("abc\n")
    assert "16 to 512 characters" in _config_error(str(short))
    spaced = tmp_path / "spaced"
    spaced.write_text("two words that are long enough\n")
    assert "no spaces, quotes or backslashes" in _config_error(str(spaced))
    assert "no redis url" in _config_error(str(tmp_path / "absent"), url=None)


def test_an_unreadable_file_says_which_user_cannot_read_it():
    """As the relay user in the container would see it: a 0600 file owned by someone else.
    Under root (which reads anything) the reader runs as `nobody` with the system Python."""
    folder = Path(tempfile.mkdtemp(prefix="parley-secret-"))
    try:
        folder.chmod(0o755)
        path = folder / "redis-password"
        path.write_text(PASSWORD + "\n")
        path.chmod(0o600 if os.geteuid() == 0 else 0)
        probe = (
            "import sys; from parley_relay.redis_secret import read_password_file as r\n"
            "try: r(sys.argv[1])\nexcept ValueError as e: print(e)"
        )
        as_nobody = {"user": NOBODY, "group": NOBODY} if os.geteuid() == 0 else {}
        proc = subprocess.run(
            [SYSTEM_PYTHON if as_nobody else sys.executable, "-c", probe, str(path)],
            env={"PYTHONPATH": str(RELAY_SRC), "PATH": "/usr/bin:/bin"},
            cwd=folder, capture_output=True, text=True, timeout=60, check=False, **as_nobody,
        )  # fmt: skip
        uid = NOBODY if as_nobody else os.getuid()
        assert proc.stdout.startswith(
            f"redis password file {path} is not readable by this user (uid {uid}"
        ), proc.stdout + proc.stderr
    finally:
        shutil.rmtree(folder)


def test_a_bad_url_error_never_echoes_the_url():
    with pytest.raises(ConfigError) as info:
        load_settings(["--redis-url", "http://:hunter2hunter2@r/0"], {})
    assert "hunter2" not in str(info.value)


def test_relay_start_with_a_missing_file_is_one_line_and_exit_2(tmp_path):
    """What the operator sees: no traceback, one line naming the file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(PARLEY_REDIS_URL=URL, PARLEY_REDIS_PASSWORD_FILE=str(tmp_path / "nope"))
    proc = subprocess.run(
        [sys.executable, "-m", "parley_relay"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"parley-relay: configuration error: redis password file {tmp_path / 'nope'} does not exist"
    ]


def test_generates_once_then_keeps_the_password(tmp_path):
    path = tmp_path / "redis-password"
    assert "generated" in ensure_password_file(path, None)
    first = path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert "kept" in ensure_password_file(path, None)
    assert path.read_text() == first
    assert os.listdir(tmp_path) == ["redis-password"], "no temporary file left behind"


def test_a_given_password_replaces_the_file_and_is_checked(tmp_path):
    path = tmp_path / "redis-password"
    ensure_password_file(path, None)
    assert "wrote" in ensure_password_file(path, PASSWORD)
    assert path.read_text() == PASSWORD + "\n"
    assert "holds" in ensure_password_file(path, PASSWORD)
    with pytest.raises(ValueError, match="REDIS_PASSWORD: the password must have 16"):
        ensure_password_file(path, "short")
    assert path.read_text() == PASSWORD + "\n", "a refused password changes nothing"


def test_a_broken_existing_file_is_an_error_not_silently_replaced(tmp_path, capsys):
    path = tmp_path / "redis-password"
    path.write_text("")
    assert main([str(path)]) == 2
    assert capsys.readouterr().err == f"redis-secret: redis password file {path} is empty\n"
    assert path.read_text() == ""


def test_main_reads_redis_password_from_the_environment(tmp_path, monkeypatch, capsys):
    path = tmp_path / "redis-password"
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    assert main([str(path)]) == 0
    assert path.read_text() == PASSWORD + "\n"
    out = capsys.readouterr().out
    assert PASSWORD not in out and "wrote REDIS_PASSWORD" in out
    monkeypatch.setenv("REDIS_PASSWORD", "")
    assert main([str(path)]) == 0
    assert path.read_text() == PASSWORD + "\n", "an empty REDIS_PASSWORD keeps the file"
    assert main([str(tmp_path / "no-such-dir" / "x")]) == 2
    assert "cannot write" in capsys.readouterr().err
