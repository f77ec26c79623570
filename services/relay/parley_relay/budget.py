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

Prekeys are counted differently: a publish renews their TTL (they live as long as the seat),
so they would outlive any bucket they were counted in. Their bytes are kept exactly instead:
`prekeyed` (sorted set) holds each seat's current prekey bytes as its score ("<room>|<tag>",
set to the total the publish / fetch script reports, so a retry cannot drift it) and
`prekey_bytes` their sum. A seat whose keys expired by TTL is found by the janitor
(`prekey_round`) and its score removed. The budget in use is the live buckets plus that sum.
"""

from __future__ import annotations

import time

from .redis_store import global_key

MARGIN_MS = 60_000  # an entry outlives its TTL by at most the mailbox key's own margin
PREKEY_BYTES = global_key("prekey_bytes")
PREKEYED = global_key("prekeyed")

# Count ARGV[1] bytes in the newest bucket (KEYS[#KEYS]) unless the sum over all keys (the
# buckets and the prekey sum) would pass the budget ARGV[2]; 1 if counted, 0 if not.
RESERVE = """
local now = KEYS[#KEYS]
local used = 0
for i = 1, #KEYS do used = used + tonumber(redis.call('GET', KEYS[i]) or '0') end
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', now, ARGV[1])
redis.call('PEXPIRE', now, ARGV[3])
return 1
"""

# A seat's prekey bytes are now ARGV[2] (0: gone); the sum follows.
SET_PREKEYS = """
local old = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new > 0 then redis.call('ZADD', KEYS[2], new, ARGV[1])
else redis.call('ZREM', KEYS[2], ARGV[1]) end
redis.call('INCRBY', KEYS[1], new - old)
return 0
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
        self.cursor = 0
        self._reserve = client.register_script(RESERVE)
        self._set_prekeys = client.register_script(SET_PREKEYS)
        self._release = client.register_script(RELEASE)

    def key(self, bucket: int) -> str:
        return global_key(f"stored:{bucket}")

    def _live(self) -> tuple[int, list[str]]:
        now = int(self.clock() * 1000) // self.step
        return now, [PREKEY_BYTES] + [self.key(b) for b in range(now - self.span + 1, now + 1)]

    def used(self) -> int:
        """Bytes counted in the live buckets and prekeys (tests, diagnostics)."""
        return sum(int(self.client.get(k) or 0) for k in self._live()[1])

    def reserve(self, size: int) -> int | None:
        """Count `size` bytes now; their bucket number, or None (nothing counted) past the
        budget."""
        now, keys = self._live()
        if self._reserve(keys=keys, args=[size, self.total, self.life]):
            return now
        return None

    def fits(self, size: int) -> bool:
        """Would `size` more bytes stay within the budget (prekeys: checked, then set)."""
        return self.used() + size <= self.total

    def set_prekeys(self, member: str, total: int) -> None:
        """The seat ("<room>|<tag>") keeps `total` prekey bytes now."""
        self._set_prekeys(keys=[PREKEY_BYTES, PREKEYED], args=[member, total])

    def prekey_round(self, gone, count: int = 200) -> None:
        """Janitor: forget the prekey bytes of a round of seats whose keys are `gone`."""
        self.cursor, members = self.client.zscan(PREKEYED, self.cursor, count=count)
        for member, _ in members:
            if gone(member):
                self.set_prekeys(member, 0)

    def release(self, freed: dict) -> None:
        """Bytes that left the store, by the bucket they were counted in."""
        freed = {int(b): int(n) for b, n in freed.items() if int(n) > 0}
        if freed:
            keys = [self.key(b) for b in freed]
            self._release(keys=keys, args=list(freed.values()))
