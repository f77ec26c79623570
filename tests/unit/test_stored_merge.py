"""The stored bench's figures merged over load processes (tests/support/stored_stats.py)."""

import pytest

from tests.support.stored_stats import client_record, merge, summarize


def part(clients: list[dict], stored: int, store_end: float, drain_end: float, **kw) -> dict:
    """One relay_stored_load process's "drained" report."""
    return {
        "stored": stored,
        "refused": kw.get("refused", 0),
        "client_cpu_s": kw.get("client_cpu_s", 1.0),
        "store_end": store_end,
        "drain_end": drain_end,
        "clients": clients,
    }


def test_client_record_accounts_for_every_message():
    # 0..9 stored; 3 and 7 never came, 5 came twice, 2 came after 4.
    rec = client_record([0, 1, 4, 2, 5, 5, 6, 8, 9], 10, drain_s=2.0, stream_s=1.0)
    assert rec["entries"] == 9 and rec["lost"] == 2 and rec["duplicates"] == 1
    assert rec["out_of_order"] == 2  # 4 -> 2 and 5 -> 5
    assert rec["dropped"] == ""
    clean = client_record(list(range(10)), 10, 1.0, 0.5)
    assert (clean["lost"], clean["duplicates"], clean["out_of_order"]) == (0, 0, 0)


def test_merge_pools_clients_sums_counts_and_takes_the_latest_ends():
    # Process 1: two fast clients; process 2: one slow client that dropped after 40 entries.
    fast = [client_record(list(range(100)), 100, 1.0, 0.5) for _ in range(2)]
    slow = [client_record(list(range(40)), 100, 4.0, 2.0, dropped="ping timeout")]
    p1 = part(fast, stored=200, store_end=105.0, drain_end=201.0, client_cpu_s=2.0)
    p2 = part(slow, stored=100, store_end=110.0, drain_end=204.0, refused=1)
    figures = summarize(merge([p1, p2]), store_at=100.0, drain_at=200.0, cpu_store_s=0.3,
                        cpu_drain_s=0.28)  # fmt: skip
    assert figures["stored"] == 300 and figures["refused"] == 1
    assert figures["stored_s"] == 10.0 and figures["store_msgs_per_s"] == 30.0  # latest end
    assert figures["cpu_us_per_stored"] == 1000.0  # 0.3 s over 300 stored
    assert figures["drained"] == 240 and figures["lost"] == 60
    assert figures["clients"] == 3 and figures["clients_dropped"] == 1
    assert figures["dropped_why"] == ["ping timeout"]
    assert figures["drain_s"] == 4.0  # the slowest process's end, from the shared start
    # Per client, over the pool: 100/1, 100/1, 40/4 -> median 100, slowest 10.
    assert figures["drain_msgs_per_s_per_client_median"] == 100.0
    assert figures["drain_msgs_per_s_per_client_min"] == 10.0
    assert figures["stream_msgs_per_s_per_client_median"] == 200.0
    assert figures["cpu_us_per_drained"] == 1166.7  # 0.28 s over 240 drained
    assert figures["client_cpu_s"] == 3.0
    # Not what one part alone would report.
    alone = summarize(merge([p1]), 100.0, 200.0, 0.3, 0.28)
    assert alone["drain_msgs_per_s_per_client_min"] != figures["drain_msgs_per_s_per_client_min"]


def test_merge_needs_parts():
    with pytest.raises(ValueError):
        merge([])
