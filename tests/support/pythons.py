"""The Python the default images run, found on this machine, with the client installed in a venv.

Dockerfile.client (and Dockerfile.relay) build ``FROM python:X.Y-slim`` unless ``BASE_IMAGE``
says otherwise, so a deployment that can reach a registry runs the client on X.Y, while the
suite, CI's local base image and Debian bookworm run 3.11. The libraries under the client do
not behave the same on both: from 3.12 ``asyncio.wait_for`` no longer runs its awaitable in a
task of its own, so python-engineio's read loop handles several buffered frames without
letting other tasks in (test_client_network.py). Tests of such behaviour run on both.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.support.clients import REPO, clean_env

INSTALL_TIMEOUT = 300  # seconds: venv + the client's dependencies from PyPI on a loaded machine


def image_python_version() -> str:
    """X.Y of Dockerfile.client's default base image (``python:X.Y-slim``)."""
    text = (REPO / "Dockerfile.client").read_text(encoding="utf-8")
    match = re.search(r"^ARG BASE_IMAGE=python:(\d+\.\d+)\b", text, re.MULTILINE)
    assert match, "Dockerfile.client: no `ARG BASE_IMAGE=python:X.Y-...` default found"
    return match.group(1)


def find_python(version: str) -> str | None:
    """A working ``python<version>`` on this machine: on PATH, or one pyenv installed."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    for path in filter(None, candidates):
        try:
            done = subprocess.run(
                [path, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return path  # a pyenv shim for a version not selected fails here, and is skipped
    return None


def install_client(python: str, where: Path) -> str:
    """A venv of `python` in `where` with the crypto core and the client installed from this
    checkout; returns the venv's interpreter."""
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    steps = (
        [python, "-m", "venv", str(where)],
        [str(where / "bin" / "python"), "-m", "pip", "install", "-q",
         "./shared/crypto", "./services/client"],
    )  # fmt: skip
    for step in steps:
        done = subprocess.run(
            step, cwd=REPO, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}"
    return str(where / "bin" / "python")
