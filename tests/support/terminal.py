"""The real ``parley`` in a pseudo-terminal (pexpect), answering like a terminal would."""

from __future__ import annotations

import io
import re
import sys

import pexpect

from tests.support.clients import REPO, clean_env

CPR_REQUEST = re.escape("\x1b[6n")  # prompt_toolkit asks the terminal for the cursor position
SAFETY = r"(\d{5} ){11}\d{5}"
# What a crash or a leaked resource prints; none of it may ever reach the screen.
CRASH_SIGNS = ("Traceback", "Unclosed client session", "Event loop is closed", "KeyboardInterrupt")
ESC = "\x1b"
PASTE_START, PASTE_END = ESC + "[200~", ESC + "[201~"
# A line break as the terminal receives it: CR LF, maybe with style resets after it.
NL = r"\r*\n(?:\x1b\[[0-9;?]*[A-Za-z])*"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[>=]|\r")


class Terminal:
    """A pexpect child that answers cursor-position requests and keeps everything it read."""

    def __init__(self, args, env=None, dimensions=(40, 160)):
        self.log = io.StringIO()
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "parley_client", *args],
            env=env or clean_env(TERM="xterm", LANG="C.UTF-8"),
            encoding="utf-8",
            timeout=30,
            dimensions=dimensions,
            cwd=str(REPO),
        )
        self.child.logfile_read = self.log

    def expect(self, pattern, timeout: float = 30) -> str:
        """Wait for ``pattern`` (a regex) in the raw output; returns the matched text."""
        while True:
            if self.child.expect([pattern, CPR_REQUEST], timeout=timeout) == 0:
                return self.child.after
            self.child.send("\x1b[40;1R")

    def expect_all(self, *patterns, timeout: float = 30) -> None:
        """Wait until every pattern has appeared, in any order."""
        left = list(patterns)
        while left:
            index = self.child.expect([CPR_REQUEST, *left], timeout=timeout)
            if index == 0:
                self.child.send("\x1b[40;1R")
            else:
                left.pop(index - 1)

    def line(self, text: str) -> None:
        self.child.send(text + "\r")

    def paste(self, text: str) -> None:
        """A bracketed paste, as a terminal sends it for pasted text."""
        self.child.send(PASTE_START + text + PASTE_END)

    def ctrl(self, key: str) -> None:
        self.child.sendcontrol(key)

    def wait_exit(self, timeout: float = 30) -> int:
        """Wait for the process to end (answering the terminal meanwhile); its exit status."""
        try:
            self.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise AssertionError(f"still running; screen:\n{self.screen_text()[-3000:]}") from None
        self.child.close()
        return self.child.exitstatus

    def screen_text(self) -> str:
        """Everything printed so far, with escape sequences removed."""
        return ANSI.sub("", self.log.getvalue())

    def crash_signs(self) -> list[str]:
        text = self.log.getvalue()
        return [sign for sign in CRASH_SIGNS if sign in text]

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
