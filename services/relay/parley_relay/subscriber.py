"""The bus's subscriber loop: SUBSCRIBE (or SSUBSCRIBE) on one connection, then lean reads.

redis-py's `PubSub.get_message` does, for every message: a health-check test, a poll of the
socket, a non-destructive peek to tell a closed socket from a readable one, two `settimeout`
calls and a dict per message. A profile under the bench load (docs/operations.md
"Performance notes") put about a quarter of the relay's CPU there. Here the loop calls the
connection's `read_response` directly: its hiredis reader hands out every reply already in
its buffer without touching the socket, and one socket read brings all the messages that
arrived meanwhile; nothing else runs per message.

Health and idle periods (what `health_check_interval` did for `get_message`): a read that
waits `idle_poll` seconds with nothing arriving sends a PING; the next wait of `idle_poll`
must bring something (the PONG at least), else the link is dead and `listen` raises, so the
bus resubscribes on a fresh connection. Idle periods are normal; a broken link is noticed
within about 2 x `idle_poll`. Any failure (Redis restarted, connection reset, MOVED) raises.
"""

from __future__ import annotations

from collections.abc import Callable

import gevent
import redis

# Messages handled in a row before the loop yields to other greenlets. A socket read that
# finds data does not yield in gevent, so under a steady stream the loop would otherwise
# keep the process to itself; yielding every so many lets the connections' writers flush
# what it queued (one write per connection for the whole run of messages) and clients'
# events run. 64 x ~50 us of handling: ~3 ms before others get their turn.
BURST = 64


class Kinds:
    """The reply kinds of one pub/sub flavour (plain or sharded)."""

    def __init__(self, subscribe: str, message: bytes, confirmed: bytes, moved: bytes | None):
        self.subscribe = subscribe  # the command
        self.message = message  # a published message: [kind, channel, data]
        self.confirmed = confirmed  # the subscription's confirmation
        self.moved = moved  # the server dropped the subscription (slot moved): resubscribe


PLAIN = Kinds("SUBSCRIBE", b"message", b"subscribe", b"unsubscribe")
SHARDED = Kinds("SSUBSCRIBE", b"smessage", b"ssubscribe", b"sunsubscribe")


class LinkLost(redis.ConnectionError):
    """The subscription ended: no answer to a PING, or the server dropped it."""


def listen(
    conn,
    channel: str,
    kinds: Kinds,
    on_data: Callable[[bytes], None],
    on_subscribed: Callable[[], None],
    idle_poll: float,
) -> None:
    """Subscribe `conn` (a connected or new redis-py Connection, no health-check interval)
    to `channel` and call `on_data(data)` for each message, in arrival order, until the link
    fails: then raise (never return). `on_subscribed()` runs once Redis confirmed."""
    conn.send_command(kinds.subscribe, channel)
    read = conn.read_response
    message, confirmed, moved = kinds.message, kinds.confirmed, kinds.moved
    pinged = False
    run = 0
    while True:
        try:
            reply = read(timeout=idle_poll, disconnect_on_error=False, push_request=True)
        except redis.TimeoutError:
            if pinged:
                raise LinkLost(f"no answer to PING within {idle_poll} s") from None
            conn.send_command("PING")
            pinged = True
            continue
        pinged = False  # anything that arrives shows the link works
        kind = reply[0] if isinstance(reply, list) and reply else None
        if kind == message:
            on_data(reply[2])
            run += 1
            if run >= BURST:
                run = 0
                gevent.sleep(0)
        elif kind == confirmed:
            on_subscribed()
        elif kind == moved:
            raise LinkLost(f"{channel}: subscription dropped by the server")
        # else: a PONG (or other housekeeping reply): nothing to do
