"""Installing just to chat: the runtime-only install from the README, with the pip Debian
bookworm ships (23.x), pulls in everything the client needs to connect.

pip before 23.3 does not normalise extras (DESIGN.md section 8): spelled
``python-socketio[asyncio_client]`` the dependency installed no aiohttp, and the client could
not connect at all. This test downloads pip 23.2 and the dependencies (about 30 s here).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.clients import REPO, clean_env

PIP_VERSION = "23.2"  # older than 23.3, which started normalising extra names
STEP_TIMEOUT = 180  # seconds per pip step: downloads on a loaded machine


def _run(*args: str, cwd=None) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(2 * STEP_TIMEOUT + 60)
def test_runtime_install_with_pip_23_2_can_connect(tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    _run(python, "-m", "pip", "install", "-q", f"pip=={PIP_VERSION}")
    assert _run(python, "-m", "pip", "--version").startswith(f"pip {PIP_VERSION} ")
    _run(python, "-m", "pip", "install", "-q", "./shared/crypto", "./services/client", cwd=REPO)
    probe = (
        "import aiohttp, parley_client.transport, parley_client.ui; "
        "from socketio import AsyncClient; print('ok')"
    )
    assert _run(python, "-c", probe).strip() == "ok"
    version = _run(str(venv / "bin" / "parley"), "--version").strip()
    assert version.startswith("parley ") and "unknown" not in version
