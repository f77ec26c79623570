"""The relay-wide stored-bytes budget in Redis (`Limits.total_bytes`), shared by every replica.

Per-seat limits alone do not bound Redis: rooms are free, so one client can open many rooms
and fill a mailbox in each. Every stored payload and published prekey is therefore counted
against one budget, and a store past it is refused (`mailbox_full`) before Redis itself is
full (where joins would fail too).

Why time buckets and not one counter: a single counter must be decremented for every byte
that leaves, but entries also leave by key TTL, by a relay dying between two steps, or by a
janitor that did not run; each such miss would leak budget for ever, until every store is
refused. Here the bytes stored during one bucket (`ttl / 8`) are counted in that bucket's
own key, which expires when everything counted in it must have expired too. The used budget
is the sum of the live buckets. An ack or expiry subtracts from the bucket the entry was
counted in (the entry carries its bucket number); a miss only overstates the use until the
bucket expires, never for longer: the count heals itself.

Why not a per-address quota: addresses are cheap (IPv6, proxies) and many members share one
behind a NAT; it neither bounds the total nor is fair. Why not inside the mailbox's Lua
script: under Redis Cluster a script only touches the room's slot; the buckets live in the
global slot `{g}` (one slot, so the reserve and release scripts work on a Cluster too). The
reservation and the store are two steps: a reservation the store did not use is given back
(a relay dying between them only overstates the use until that bucket expires).
"""

from __future__ import annotations

import time

from .redis_store import global_key

MARGIN_MS = 60_000  # an entry outlives its TTL by at most the mailbox key's own margin

# Count ARGV[1] bytes in the newest bucket (KEYS[#KEYS]) unless the sum over all of them
# would pass the budget ARGV[2]; 1 if counted, 0 if not.
RESERVE = """
local now = KEYS[#KEYS]
local used = 0
for i = 1, #KEYS do used = used + tonumber(redis.call('GET', KEYS[i]) or '0') end
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', now, ARGV[1])
redis.call('PEXPIRE', now, ARGV[3])
return 1
"""

# Subtract freed bytes only from a bucket that still exists (a DECRBY on a missing key
# would create a negative counter without a TTL).
RELEASE = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECRBY', KEYS[i], ARGV[i]) end
end
return 0
"""


def bucket_ms(ttl_ms: int) -> int:
    """A bucket's length: an eighth of the TTL (at least a second)."""
    return max(1000, ttl_ms // 8)


class RedisBudget:
    """Reserve and release bytes of the relay-wide budget."""

    def __init__(self, client, total_bytes: int, ttl_ms: int, clock=time.time):
        self.client = client
        self.total = total_bytes
        self.step = bucket_ms(ttl_ms)
        self.span = ttl_ms // self.step + 2  # buckets that may still hold live bytes
        self.life = ttl_ms + 2 * self.step + MARGIN_MS
        self.clock = clock
        self._reserve = client.register_script(RESERVE)
        self._release = client.register_script(RELEASE)

    def key(self, bucket: int) -> str:
        return global_key(f"stored:{bucket}")

    def _live(self) -> tuple[int, list[str]]:
        now = int(self.clock() * 1000) // self.step
        return now, [self.key(b) for b in range(now - self.span + 1, now + 1)]

    def used(self) -> int:
        """Bytes counted in the live buckets (tests, diagnostics)."""
        return sum(int(self.client.get(k) or 0) for k in self._live()[1])

    def reserve(self, size: int) -> int | None:
        """Count `size` bytes now; their bucket number, or None (nothing counted) past the
        budget."""
        now, keys = self._live()
        if self._reserve(keys=keys, args=[size, self.total, self.life]):
            return now
        return None

    def release(self, freed: dict) -> None:
        """Bytes that left the store, by the bucket they were counted in."""
        freed = {int(b): int(n) for b, n in freed.items() if int(n) > 0}
        if freed:
            keys = [self.key(b) for b in freed]
            self._release(keys=keys, args=list(freed.values()))
