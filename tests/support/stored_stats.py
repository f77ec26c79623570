"""The stored bench's figures, apart from gevent so that bench/storedgen.py can merge them.

tests/support/relay_stored_load.py runs a slice of the pairs per process and reports one
*raw* part per phase: the store phase's acks and end time, then one record per reconnecting
client (entries, what of them was lost, duplicated or out of order, its timings, whether it
dropped). `merge` joins the parts of processes that began each phase at one shared moment;
`summarize` turns the merged part, the shared phase starts and the relays' + Redis CPU over
each phase into the figures the bench prints, as one process carrying every pair would.

    parts = [json.loads(line) for line in outputs]            # one "drained" line each
    figures = summarize(merge(parts), store_at, drain_at, cpu_store_s, cpu_drain_s)
"""

from __future__ import annotations

import statistics

# Summed over processes when merging.
COUNTS = ("stored", "refused", "client_cpu_s")
# Summed over clients: every message accounted for.
CLIENT_COUNTS = ("entries", "lost", "duplicates", "out_of_order")


def client_record(
    seqs: list[int], expected: int, drain_s: float, stream_s: float, dropped: str = ""
) -> dict:
    """One reconnecting client's record: the sequence numbers it received (in arrival
    order) checked against the `expected` 0..expected-1 its peer stored, and its timings
    (connect to mailbox_done, first stored_message to mailbox_done); `dropped` says why it
    lost its connection ("": it did not)."""
    distinct = set(seqs)
    return {
        "entries": len(seqs),
        "lost": len(set(range(expected)) - distinct),
        "duplicates": len(seqs) - len(distinct),
        "out_of_order": sum(1 for x, y in zip(seqs, seqs[1:], strict=False) if y <= x),
        "drain_s": drain_s,
        "stream_s": stream_s,
        "dropped": dropped,
    }


def merge(parts: list[dict]) -> dict:
    """One raw result from the parts of processes that began each phase together: counts
    add up, the client records pool, the phase ends are the latest (`time.time()`)."""
    if not parts:
        raise ValueError("merge needs at least one part")
    return {
        **{key: sum(part[key] for part in parts) for key in COUNTS},
        "clients": [c for part in parts for c in part["clients"]],
        "store_end": max(part["store_end"] for part in parts),
        "drain_end": max(part["drain_end"] for part in parts),
    }


def summarize(
    raw: dict, store_at: float, drain_at: float, cpu_store_s: float, cpu_drain_s: float
) -> dict:
    """The stored bench's figures (the keys bench/relay.py prints) from a merged result, the
    shared start of each phase and the relays' + Redis CPU seconds over each phase.

    The drain rate is per reconnecting client (its entries over its own connect to
    mailbox_done): the median and the slowest over ALL clients, pooled; a client that
    dropped counts with what it got.
    """
    clients = raw["clients"]
    if not clients:
        raise ValueError("no client records")
    totals = {key: sum(c[key] for c in clients) for key in CLIENT_COUNTS}
    rates = [c["entries"] / c["drain_s"] for c in clients if c["drain_s"] > 0]
    streams = [c["entries"] / c["stream_s"] for c in clients if c["stream_s"] > 0]
    stored_s = raw["store_end"] - store_at
    return {
        "stored": raw["stored"],
        "refused": raw["refused"],
        "stored_s": round(stored_s, 2),
        "store_msgs_per_s": round(raw["stored"] / stored_s, 1) if stored_s > 0 else 0.0,
        "cpu_us_per_stored": round(cpu_store_s * 1e6 / max(1, raw["stored"]), 1),
        "drained": totals["entries"],
        "lost": totals["lost"],
        "duplicates": totals["duplicates"],
        "out_of_order": totals["out_of_order"],
        "drain_s": round(raw["drain_end"] - drain_at, 2),
        "drain_msgs_per_s_per_client_median": round(statistics.median(rates), 1) if rates else 0.0,
        "drain_msgs_per_s_per_client_min": round(min(rates), 1) if rates else 0.0,
        "stream_msgs_per_s_per_client_median": (
            round(statistics.median(streams), 1) if streams else 0.0
        ),
        "clients": len(clients),
        "client_cpu_s": round(raw["client_cpu_s"], 1),
        "clients_dropped": sum(1 for c in clients if c["dropped"]),
        "dropped_why": sorted({c["dropped"] for c in clients if c["dropped"]}),
        "cpu_us_per_drained": round(cpu_drain_s * 1e6 / max(1, totals["entries"]), 1),
    }
