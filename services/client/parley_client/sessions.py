"""The sessions a conversation may open envelopes with, and who each one speaks for.

A session names the sender of what it opens: the peer identity that authenticated it. When a
new session is authenticated by another key, every older session is closed at once (nothing
still in flight under the old key may be shown). An older session of the *same* key stays open
for :data:`SESSION_GRACE_SECONDS` after the peer was first seen on the newer one, for envelopes
sealed before it switched. (Two rounds that cross on the wire can leave each side's newest
session the other's older one; the old session then stays until the peer is seen on the new
one, as the peer is still sealing with it.)
"""

from __future__ import annotations

from collections.abc import Callable

from parley_crypto import errors

# Long enough for envelopes in flight during a rekey or a reconnect (the relay forwards within
# milliseconds; a resend follows after --resend-after seconds anyway), short enough that a
# session the peer no longer uses cannot be fed held-back envelopes for long.
SESSION_GRACE_SECONDS = 10.0


class SessionSet:
    """Newest session first; the others expire (same key) or are gone (other key)."""

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._newest = None
        self._older: list[tuple[object, float | None]] = []  # (session, expiry; None: not yet)
        self._restored = None  # the session an earlier run saved, while nothing newer exists

    @property
    def newest(self):
        """The session texts go out on, or None."""
        return self._newest

    def add(self, session) -> None:
        """Make ``session`` the newest; close or time-limit the others (see module docstring)."""
        previous, self._restored = self._newest, None
        if previous is not None and _key(previous) == _key(session):
            self._older = [(previous, None)]  # the clock starts once the peer uses the new one
        else:
            self._older = []  # another key: nothing sealed under the old one may be shown
        self._newest = session

    def restore(self, session) -> None:
        """A session saved by an earlier run: it may open envelopes sealed before the restart
        for the grace period, and it never seals (its sending chain may be stale)."""
        if self._newest is None:
            self._older = [(session, self._clock() + SESSION_GRACE_SECONDS)]
            self._restored = session

    def rearm(self) -> None:
        """On joining: the restored session's grace period starts now, so the mailbox backlog
        sealed for it (receipts, texts of the same key) still opens after a slow start."""
        if self._newest is None and self._restored is not None:
            self._older = [(self._restored, self._clock() + SESSION_GRACE_SECONDS)]

    def open(self, envelope) -> tuple[object, bytes]:
        """(session, plaintext) from the first live session that opens it; raises the last
        session's ParleyError (InvalidMessage "no session" when there is none)."""
        now = self._clock()
        self._older = [(s, t) for s, t in self._older if t is None or t > now]
        candidates = [s for s in (self._newest, *(s for s, _ in self._older)) if s is not None]
        if not candidates:
            raise errors.InvalidMessage("no session")
        last: Exception | None = None
        for session in candidates:
            try:
                data = session.open(envelope)
            except errors.ParleyError as e:
                last = e
                continue
            if session is self._newest:  # the peer has switched: the grace period starts
                deadline = now + SESSION_GRACE_SECONDS
                self._older = [(s, deadline if t is None else t) for s, t in self._older]
            return session, data
        raise last  # type: ignore[misc]

    def clear(self) -> None:
        """Forget every session (the peer left for good)."""
        self._newest, self._older, self._restored = None, [], None

    def __len__(self) -> int:
        now = self._clock()
        live = sum(1 for _, t in self._older if t is None or t > now)
        return (self._newest is not None) + live


def _key(session) -> str:
    return session.peer.key_id
