"""free_port() (tests/support/servers.py): the ports test servers are started on. Every path
of it: below the kernel's ephemeral range, the bind(0) fallback on a machine whose range
leaves too little room below it, and a clear error when no port in the range is free."""

from __future__ import annotations

import socket

import pytest

from tests.support import servers


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_ports_lie_below_the_ephemeral_range_and_are_free():
    high = servers.ephemeral_low() - 1
    ports = [servers.free_port() for _ in range(50)]
    assert all(servers.LOWEST_TEST_PORT <= p <= high for p in ports), ports
    assert all(bindable(p) for p in ports)
    assert len(set(ports)) > 1  # drawn, not one fixed port


def test_a_taken_port_is_never_handed_out(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        free = servers.free_port()  # a real free one, for the second draw
        draws = iter([busy, busy, free])
        monkeypatch.setattr(servers._pick, "randint", lambda low, high: next(draws))
        monkeypatch.setattr(servers, "ephemeral_low", lambda: 60000)
        assert servers.free_port() == free


def test_no_free_port_in_the_range_is_a_clear_error(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        monkeypatch.setattr(servers._pick, "randint", lambda low, high: busy)
        monkeypatch.setattr(servers, "ephemeral_low", lambda: 60000)
        with pytest.raises(RuntimeError, match=f"no free port in {servers.LOWEST_TEST_PORT}-59999"):
            servers.free_port()


def test_a_narrow_room_below_the_range_falls_back_to_bind_0(monkeypatch):
    monkeypatch.setattr(servers, "ephemeral_low", lambda: servers.LOWEST_TEST_PORT + 500)
    monkeypatch.setattr(servers._pick, "randint", lambda low, high: pytest.fail("drew a port"))
    port = servers.free_port()
    assert port >= servers.LOWEST_TEST_PORT + 500  # the kernel's pick, from its own range
    assert bindable(port)
