"""Did each fault of the soak take effect? A zero-loss verdict proves nothing otherwise.

For every fault the harness ran (`FaultRecord`: action, wall-clock start and end) one check
of what it must have caused, from the relays' structured logs and the clients' output:

* restart_redis: every relay logged `membership_resynced` before the next fault (Redis
  forgot everyone; the heartbeat noticed and re-registered its members);
* kill_relay:k: a client that was on replica k connected to the other replica afterwards
  (a failover, not only a reconnect to the restarted one);
* cut_client:stall: the stalled client was sent messages during the stall, and every one of
  them was shown only after the connection was restored (bytes really waited);
* cut_client:reset: the cut client connected to a relay again after the restore;
* bounds:<attack>:k: the relay refused the attack as it must (tests/faults/bounds.py), its
  peak RSS grew by less than ATTACK_RSS_BOUND_KB meanwhile, /healthz answered 200, and for
  seat_by_name the attacked pair only ever shook hands with each other's key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from tests.faults.bounds import ATTACK_RSS_BOUND_KB
from tests.faults.checker import parse_shown

CONNECTED = "connected to relay "


@dataclass(frozen=True)
class FaultRecord:
    """One fault as the harness ran it (wall-clock seconds)."""

    action: str
    began: float
    ended: float


def _log_times(log: str, event: str) -> list[float]:
    times = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
            if record.get("event") == event:
                times.append(datetime.fromisoformat(record["ts"]).timestamp())
        except (ValueError, KeyError, TypeError):
            continue
    return times


def _connections(client) -> list[tuple[float, str]]:
    """(read time, relay URL) of every "connected to relay" line of a client."""
    return [
        (at, e["url"])
        for at, e in client.timed_events()
        if e.get("event") == "info" and str(e.get("message", "")).startswith(CONNECTED)
    ]


def _replica_of(soak, url: str) -> int | None:
    for i, relay in enumerate(soak.relays):
        if url == relay.url or (i < len(soak.proxies) and url == soak.proxies[i].url):
            return i
    return None


def _resynced(soak, fault: FaultRecord, until: float) -> bool:
    return all(
        any(fault.began < t < until for t in _log_times(r.log(), "membership_resynced"))
        for r in soak.relays
    )


def _failed_over(soak, fault: FaultRecord, killed: int) -> bool:
    for client in soak.clients.values():
        history = _connections(client)
        before = [url for at, url in history if at < fault.began]
        after = [url for at, url in history if at > fault.began]
        moved = any(_replica_of(soak, url) not in (killed, None) for url in after)
        if before and _replica_of(soak, before[-1]) == killed and moved:
            return True
    return False


def _held_by_stall(soak, fault: FaultRecord) -> bool:
    cut = soak.clients[soak.cut_name]
    during = []
    for at, e in cut.timed_events():
        if e.get("event") == "message":
            item = parse_shown(str(e.get("text", "")), at)
            # One second of slack each side: what was already in flight is not evidence.
            if item is not None and fault.began + 1 < item.sent < fault.ended - 1:
                during.append(item)
    return bool(during) and all(item.shown_at >= fault.ended - 0.5 for item in during)


def _reconnected(soak, fault: FaultRecord) -> bool:
    return any(at > fault.ended for at, _ in _connections(soak.clients[soak.cut_name]))


def _undisturbed(soak) -> bool:
    """The attacked pair only ever met each other: every handshake of either member was with
    the same key and none saw a changed key (a seat taken by name would show a stranger's
    key). Reconnects do not count: a loaded machine may fence a replica meanwhile."""
    room, _ = soak.victim()
    pair = [name for name, c in soak.clients.items() if c.args[c.args.index("--room") + 1] == room]
    for name in pair:
        events = [e for _, e in soak.clients[name].timed_events()]
        keys = {e.get("fingerprint") for e in events if e.get("event") == "secure"}
        if len(keys) != 1 or any(e.get("event") == "key_changed" for e in events):
            return False
    return len(pair) == 2


def _attack_held(soak, fault: FaultRecord) -> bool:
    attack = soak.attacks.get(fault)
    if attack is None or not attack.refused or attack.growth_kb >= ATTACK_RSS_BOUND_KB:
        return False
    return _undisturbed(soak) if fault.action.startswith("bounds:seat_by_name") else True


def _next_main(soak, n: int, fault: FaultRecord) -> float:
    """When the next fault of the main sequence began (the attacks run beside it)."""
    later = [f.began for f in soak.done[n + 1 :] if not f.action.startswith("bounds:")]
    return later[0] if later else fault.ended + 60


def fault_effects(soak, report=None) -> list[dict]:
    """One {"action", "began", "seen", "expected"} row per fault the soak ran."""
    rows = []
    for n, fault in enumerate(soak.done):
        until = _next_main(soak, n, fault)
        if fault.action.startswith("bounds:"):
            seen = _attack_held(soak, fault)
            expected = f"refused, peak RSS < +{ATTACK_RSS_BOUND_KB // 1024} MB, healthz 200"
        elif fault.action == "restart_redis":
            seen, expected = _resynced(soak, fault, until), "every relay resynced"
        elif fault.action.startswith("kill_relay:"):
            killed = int(fault.action.split(":")[1])
            seen, expected = _failed_over(soak, fault, killed), "a client failed over"
        elif fault.action == "cut_client:stall":
            seen, expected = _held_by_stall(soak, fault), "messages held until restore"
        elif fault.action == "cut_client:reset":
            seen, expected = _reconnected(soak, fault), "cut client reconnected"
        else:
            seen, expected = False, "unknown fault"
        rows.append(
            {"action": fault.action, "began": round(fault.began, 2), "seen": seen,
             "expected": expected}
        )  # fmt: skip
    return rows
