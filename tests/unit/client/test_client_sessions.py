"""SessionSet's decisions one by one, with stand-in sessions (a key id and what they open):
which session may open an envelope, when an older one stops, and which error comes out."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from parley_client.sessions import SESSION_GRACE_SECONDS, SessionSet
from parley_crypto import errors


class FakeSession:
    """Opens envelopes addressed to its tag; refuses anything else with its own error."""

    def __init__(self, key_id: str, tag: str):
        self.peer = SimpleNamespace(key_id=key_id)
        self.tag = tag

    def open(self, envelope):
        if envelope != self.tag:
            raise errors.InvalidMessage(f"{self.tag} cannot open {envelope}")
        return f"opened by {self.tag}".encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_grace_constant_is_ten_seconds():
    assert SESSION_GRACE_SECONDS == 10.0  # documented in the module and the client README


def test_no_session_is_a_clear_refusal(clock):
    sessions = SessionSet(clock)
    with pytest.raises(errors.InvalidMessage, match="^no session$"):
        sessions.open("x")
    assert len(sessions) == 0 and sessions.newest is None


def test_same_key_older_session_waits_then_expires_exactly_after_the_grace(clock):
    sessions = SessionSet(clock)
    old, new = FakeSession("k1", "old"), FakeSession("k1", "new")
    sessions.add(old)
    sessions.add(new)
    assert sessions.newest is new and len(sessions) == 2
    clock.now += 10 * SESSION_GRACE_SECONDS  # no deadline before the peer uses the new one
    assert sessions.open("old") == (old, b"opened by old")  # an older one opening: no clock
    assert len(sessions) == 2
    assert sessions.open("new") == (new, b"opened by new")  # the peer switched: clock starts
    switched = clock.now
    clock.now = switched + SESSION_GRACE_SECONDS - 0.001
    assert len(sessions) == 2
    assert sessions.open("old")[0] is old
    clock.now = switched + SESSION_GRACE_SECONDS  # the deadline itself is too late
    assert len(sessions) == 1
    clock.now += 1.0  # and stays gone
    assert len(sessions) == 1
    with pytest.raises(errors.InvalidMessage, match="new cannot open old"):
        sessions.open("old")


def test_the_deadline_is_set_once_not_renewed(clock):
    sessions = SessionSet(clock)
    old, new = FakeSession("k1", "old"), FakeSession("k1", "new")
    sessions.add(old)
    sessions.add(new)
    sessions.open("new")
    first = clock.now
    clock.now += SESSION_GRACE_SECONDS / 2
    sessions.open("new")  # does not push the old session's end further out
    clock.now = first + SESSION_GRACE_SECONDS
    with pytest.raises(errors.InvalidMessage):
        sessions.open("old")


def test_another_key_closes_every_older_session_at_once(clock):
    sessions = SessionSet(clock)
    old, other = FakeSession("k1", "old"), FakeSession("k2", "other")
    sessions.add(old)
    sessions.add(other)
    assert len(sessions) == 1
    with pytest.raises(errors.InvalidMessage, match="other cannot open old"):
        sessions.open("old")


def test_only_the_previous_newest_is_kept(clock):
    sessions = SessionSet(clock)
    first, second, third = (FakeSession("k1", t) for t in ("first", "second", "third"))
    for s in (first, second, third):
        sessions.add(s)
    assert len(sessions) == 2
    with pytest.raises(errors.InvalidMessage):
        sessions.open("first")


def test_the_newest_is_tried_first(clock):
    class Greedy(FakeSession):
        def open(self, envelope):
            return f"opened by {self.tag}".encode()

    sessions = SessionSet(clock)
    older, newest = Greedy("k1", "older"), Greedy("k1", "newest")
    sessions.add(older)
    sessions.add(newest)
    assert sessions.open("anything")[0] is newest


def test_a_restored_session_opens_for_the_grace_period_and_never_seals(clock):
    sessions = SessionSet(clock)
    saved = FakeSession("k1", "saved")
    sessions.restore(saved)
    assert sessions.newest is None and len(sessions) == 1
    assert sessions.open("saved") == (saved, b"opened by saved")
    clock.now += SESSION_GRACE_SECONDS - 0.001
    assert sessions.open("saved")[0] is saved
    clock.now += 0.001
    assert len(sessions) == 0
    with pytest.raises(errors.InvalidMessage, match="^no session$"):
        sessions.open("saved")


def test_restore_after_a_live_session_changes_nothing(clock):
    sessions = SessionSet(clock)
    live = FakeSession("k1", "live")
    sessions.add(live)
    sessions.restore(FakeSession("k1", "saved"))
    assert len(sessions) == 1
    with pytest.raises(errors.InvalidMessage, match="live cannot open saved"):
        sessions.open("saved")


def test_clear_forgets_everything(clock):
    sessions = SessionSet(clock)
    sessions.add(FakeSession("k1", "a"))
    sessions.add(FakeSession("k1", "b"))
    sessions.clear()
    assert sessions.newest is None and len(sessions) == 0
    with pytest.raises(errors.InvalidMessage, match="^no session$"):
        sessions.open("a")


def test_the_last_error_is_raised_when_none_opens(clock):
    sessions = SessionSet(clock)
    sessions.add(FakeSession("k1", "old"))
    sessions.add(FakeSession("k1", "new"))
    with pytest.raises(errors.InvalidMessage, match="^old cannot open x$"):
        sessions.open("x")


def test_rearm_restarts_a_restored_sessions_grace_on_joining(clock):
    sessions = SessionSet(clock)
    saved = FakeSession("k1", "saved")
    sessions.restore(saved)
    clock.now += SESSION_GRACE_SECONDS  # the restored session's first grace has run out
    assert len(sessions) == 0
    sessions.rearm()  # joining: the backlog sealed for it may still come
    rearmed = clock.now
    assert sessions.open("saved") == (saved, b"opened by saved")
    clock.now = rearmed + SESSION_GRACE_SECONDS - 0.001
    assert len(sessions) == 1
    clock.now = rearmed + SESSION_GRACE_SECONDS
    assert len(sessions) == 0


def test_rearm_does_nothing_once_a_live_session_exists(clock):
    sessions = SessionSet(clock)
    sessions.restore(FakeSession("k1", "saved"))
    sessions.add(FakeSession("k2", "live"))  # another key: the saved one is gone for good
    sessions.rearm()
    assert len(sessions) == 1
    with pytest.raises(errors.InvalidMessage, match="live cannot open saved"):
        sessions.open("saved")


def test_rearm_without_a_restored_session_does_nothing(clock):
    sessions = SessionSet(clock)
    sessions.rearm()
    assert len(sessions) == 0 and sessions.newest is None
    sessions.restore(FakeSession("k1", "saved"))
    sessions.clear()
    sessions.rearm()  # clear() forgot the restored session too; nothing comes back
    assert len(sessions) == 0
