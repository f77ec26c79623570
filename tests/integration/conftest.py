"""Fixtures for the integration tests that run real `parley` client processes."""

from __future__ import annotations

import pytest

from tests.support.clients import client_pool


@pytest.fixture
def batch_clients(tmp_path):
    """Start `parley --batch` processes on demand; all are stopped when the test ends."""
    with client_pool(tmp_path) as start:
        yield start


@pytest.fixture
def terminal():
    """Start real interactive `parley` processes in pseudo-terminals; all are killed at the end."""
    from tests.support.terminal import Terminal

    started: list[Terminal] = []

    def start(*args: str, **kwargs) -> Terminal:
        term = Terminal(list(args), **kwargs)
        started.append(term)
        return term

    try:
        yield start
    finally:
        for term in started:
            term.close()
