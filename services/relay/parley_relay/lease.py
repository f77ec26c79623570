"""This replica's lease on its seats: valid until one heartbeat TTL after the last renewal.

Other replicas treat us as dead once our `alive:` key expires and vacate our seats; from
then on our connections may be resumed elsewhere. So we stop forwarding as soon as our own
clock says the lease may have run out, and fence (disconnect our clients, who resume
wherever they reconnect) instead of letting two connections act for one seat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Lease:
    """`valid()` while the last renewal is less than `ttl` seconds old (always without Redis)."""

    def __init__(self, ttl: float | None, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self.until = math.inf if ttl is None else -math.inf

    def renewed(self, started: float) -> None:
        """A renewal sent at `started` (clock time before the request) succeeded."""
        if self.ttl is not None:
            self.until = started + self.ttl

    def valid(self) -> bool:
        return self.clock() < self.until

    def lapsed(self) -> bool:
        """True once a lease we held has run out (False before the first renewal)."""
        return self.until != -math.inf and not self.valid()
