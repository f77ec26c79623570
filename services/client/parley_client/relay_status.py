"""What the transport knows about the relay, in plain words: why a connection failed, whether
the relay still answers, and whether a ``peer_left`` was really the peer leaving.

Kept apart from :mod:`.transport` (which only moves events) so each rule is tested on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlparse

# No ack from the relay for this long while it holds our events: it is frozen or cut off. Five
# seconds is far above a loaded relay's ack time (milliseconds) and short enough to be useful.
NOT_ANSWERING_AFTER = 5.0
# A relay that stops disconnects everyone, and the first disconnect reaches the other member
# as peer_left a moment before its own disconnect. Hold peer_left this long so a relay stop
# is not shown as "alice left the room".
PEER_LEFT_GRACE = 1.0
PROBE_TIMEOUT = 3.0  # the one extra TCP/TLS attempt that names why a connect failed
MAX_WATCHED_ACKS = 1000  # acks we wait for at once; older ones are forgotten (never unbounded)


def plain_error(url: str, exc: BaseException | str) -> str:
    """One line saying why ``url`` could not be reached, and what to do about it."""
    text = str(exc) if str(exc).strip() else type(exc).__name__
    low = text.lower()
    host = urlparse(url).hostname or url
    if (
        "wrong_version_number" in low
        or "record layer failure" in low
        or "ssl" in low
        and ("packet length" in low or "unknown protocol" in low)
    ):
        plain = url.replace("https://", "http://", 1).replace("wss://", "ws://", 1)
        return f"{url} does not speak TLS (a plain relay?); try --relay {plain}"
    if "certificate" in low:
        return f"the TLS certificate of {host} is not trusted ({_short(text)}); check --relay"
    if "connect call failed" in low or "connection refused" in low or "errno 111" in low:
        return (
            f"no relay at {url} (connection refused); start one with parley-relay or check --relay"
        )
    if "name or service not known" in low or "name resolution" in low or "nodename" in low:
        return f"cannot find the host {host!r}; check --relay"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) or "timed out" in low:
        return f"relay at {url} not answering (no reply in time); it may be overloaded or frozen"
    if "network is unreachable" in low or "no route to host" in low:
        return f"cannot reach {host}: no network route; check your connection and --relay"
    return f"cannot reach the relay at {url}: {_short(text)}"


async def probe(url: str, timeout: float = PROBE_TIMEOUT) -> BaseException | None:
    """Why ``url`` cannot be reached at the TCP/TLS level (python-socketio over websocket only
    reports "Connection error"); None when TCP (and TLS, for https/wss) is fine."""
    parsed = urlparse(url)
    tls = parsed.scheme in ("https", "wss")
    port = parsed.port or (443 if tls else 80)
    try:
        opening = asyncio.open_connection(
            parsed.hostname, port, ssl=tls or None, server_hostname=parsed.hostname if tls else None
        )
        _, writer = await asyncio.wait_for(opening, timeout)
    except (TimeoutError, OSError, ValueError) as e:  # ssl.SSLError is an OSError
        return e
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return None


def _short(text: str) -> str:
    return text.strip().splitlines()[0][:160] if text.strip() else "unknown error"


class AckWatch:
    """Remembers when each event still waiting for the relay's ack was sent."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._waiting: OrderedDict[int, float] = OrderedDict()
        self._next = 0
        self.not_answering = False

    def sent(self) -> int:
        """Register an emitted event; returns the token to pass to :meth:`acked`."""
        self._next += 1
        self._waiting[self._next] = self._clock()
        if len(self._waiting) > MAX_WATCHED_ACKS:
            self._waiting.popitem(last=False)
        return self._next

    def acked(self, token: int) -> bool:
        """The relay answered; returns True when it had been marked as not answering."""
        self._waiting.pop(token, None)
        was, self.not_answering = self.not_answering, False
        return was

    def reset(self) -> None:
        """A new connection: nothing is outstanding on it yet."""
        self._waiting.clear()
        self.not_answering = False

    def check(self) -> bool:
        """True once, when the oldest outstanding ack has been due too long."""
        if self.not_answering or not self._waiting:
            return False
        oldest = next(iter(self._waiting.values()))
        if self._clock() - oldest < NOT_ANSWERING_AFTER:
            return False
        self.not_answering = True
        return True


class PeerLeftHold:
    """Delays ``peer_left`` by PEER_LEFT_GRACE; dropped if our own connection ends meanwhile,
    delivered at once (before it) if any other event arrives."""

    def __init__(self, deliver: Callable[[object], None]):
        self._deliver = deliver
        self._held: tuple[object, asyncio.TimerHandle] | None = None

    def hold(self, payload: object) -> None:
        self.release()
        timer = asyncio.get_running_loop().call_later(PEER_LEFT_GRACE, self.release)
        self._held = (payload, timer)

    def release(self) -> None:
        """Deliver the held notice now (before another event, or when the grace is over)."""
        if self._held is not None:
            payload, timer = self._held
            self._held = None
            timer.cancel()
            self._deliver(payload)

    def drop(self) -> bool:
        """Our connection ended: the relay went away, not (necessarily) the peer."""
        if self._held is None:
            return False
        self._held[1].cancel()
        self._held = None
        return True
