"""The relay load generator's figures, apart from gevent so that a bench can merge them.

tests/support/relay_load.py collects one *raw* result per process: counts, every latency
sample (seconds), the receive span and the send span, unrounded. `summarize` turns a raw
result into the reported figures; `merge` joins the raw results of several generator
processes that started at one shared moment, so `summarize(merge(parts))` reports them
exactly as one process carrying all their pairs would.

    parts = [json.loads(line)["raw"] for line in outputs]   # relay_load --samples
    result = summarize(merge(parts))
"""

from __future__ import annotations

# Summed over processes when merging; a raw result also holds "latencies" (a list of
# seconds), "elapsed" (start to last receive, s) and "send_s" (start to the end of the last
# message's send slot, s).
COUNTS = ("sent", "expected", "received", "lost", "duplicates", "out_of_order", "garbled")


def percentile_ms(ordered: list[float], p: float) -> float | None:
    """The `p` quantile (0..1) of sorted latencies in seconds, in ms; None without samples."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)


def rate(count: int, seconds: float) -> float:
    """`count` per second over `seconds`, 0.0 for an empty span."""
    return round(count / seconds, 1) if seconds > 0 else 0.0


def summarize(raw: dict) -> dict:
    """The reported figures of a raw result: counts, spans, rates, p50/p99 latency.

    msgs_per_s is the received rate; offered_per_s the rate the generator managed to send at
    (below the offered `--rate` when it, or the relay's back-pressure, fell behind).
    """
    ordered = sorted(raw["latencies"])
    return {
        **{key: raw[key] for key in COUNTS},
        "elapsed": round(raw["elapsed"], 3),
        "msgs_per_s": rate(raw["received"], raw["elapsed"]),
        "send_s": round(raw["send_s"], 3),
        "offered_per_s": rate(raw["sent"], raw["send_s"]),
        "p50_ms": percentile_ms(ordered, 0.50),
        "p99_ms": percentile_ms(ordered, 0.99),
    }


def merge(parts: list[dict]) -> dict:
    """One raw result from the raw results of processes that began sending together.

    Counts add up and the samples pool (a percentile of the pool, not a mean or max of the
    parts' percentiles); the spans are the longest, as all parts started at the same moment.
    """
    if not parts:
        raise ValueError("merge needs at least one result")
    return {
        **{key: sum(part[key] for part in parts) for key in COUNTS},
        "latencies": [s for part in parts for s in part["latencies"]],
        "elapsed": max(part["elapsed"] for part in parts),
        "send_s": max(part["send_s"] for part in parts),
    }


def split_pairs(pairs: int, procs: int) -> list[tuple[int, int]]:
    """(first pair, pair count) for each of up to `procs` processes, as even as can be."""
    procs = max(1, min(procs, pairs))
    share, extra = divmod(pairs, procs)
    out, first = [], 0
    for k in range(procs):
        count = share + (1 if k < extra else 0)
        out.append((first, count))
        first += count
    return out


def send_phases(interval: float, first_side: int, count: int, all_sides: int) -> list[float]:
    """When in each `interval` the senders `first_side` .. `first_side + count - 1` of
    `all_sides` (over every generator sharing the load) send: sender k at k / all_sides of
    it. So a paced load is one even stream (1,000 msg/s offered: one message a millisecond),
    not every sender at once; with one phase for all, 100 senders queued 100 messages
    together each interval and the latency measured was that queue's (p50 ~28 ms at
    1,000 msg/s for Parley and Node alike; ~1 ms evenly paced, bench/relay.py)."""
    return [interval * ((first_side + k) % all_sides) / all_sides for k in range(count)]
