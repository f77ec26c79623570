"""The interactive client in a pseudo-terminal, driven with pexpect (fixture ``terminal``).

Test modules import the fixture: ``from tests.support.terminal import terminal_fixture``.
"""

from __future__ import annotations

import io
import re
import sys

import pexpect
import pytest

from tests.support.clients import clean_env

CPR_REQUEST = re.escape("\x1b[6n")  # prompt_toolkit asks the terminal for the cursor position


class Terminal:
    """A pexpect child that answers cursor-position requests like a real terminal would."""

    def __init__(self, args, env):
        self.output = io.StringIO()  # everything the terminal showed, for "never shown" checks
        self.child = pexpect.spawn(
            sys.executable, args, env=env, encoding="utf-8", timeout=30, dimensions=(40, 140)
        )
        self.child.logfile_read = self.output

    def expect(self, pattern) -> str:
        while True:
            if self.child.expect([pattern, CPR_REQUEST]) == 0:
                return self.child.after
            self.child.send("\x1b[40;1R")

    def line(self, text: str) -> None:
        self.child.sendline(text)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture(name="terminal")
def terminal_fixture():
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        """Run ``python -m parley_client ARGS`` in a pseudo-terminal."""
        term = Terminal(["-m", "parley_client", *args], clean_env(TERM="xterm"))
        started.append(term)
        return term

    try:
        yield start
    finally:
        for term in started:
            term.close()
