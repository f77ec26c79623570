"""The load generator's figures merged over processes (tests/support/load_stats.py)."""

import pytest

from tests.support.load_stats import merge, send_phases, split_pairs, summarize


def raw(latencies_ms: list[float], sent: int, elapsed: float, send_s: float, **counts) -> dict:
    """A raw result as one relay_load process reports it (latencies in seconds)."""
    received = counts.pop("received", len(latencies_ms))
    base = {"duplicates": 0, "out_of_order": 0, "garbled": 0}
    return {
        **base,
        **counts,
        "sent": sent,
        "expected": sent,
        "received": received,
        "lost": sent - received,
        "latencies": [ms / 1000 for ms in latencies_ms],
        "elapsed": elapsed,
        "send_s": send_s,
    }


def test_merge_pools_samples_sums_counts_and_takes_the_longest_span():
    # One fast process, one slow one: the pool's p50 lies in neither part's middle, and
    # 99 slow samples out of 200 make the pool's p99 a slow one.
    fast = raw([1.0] * 100 + [2.0], sent=110, elapsed=2.0, send_s=1.5, duplicates=1)
    slow = raw([50.0] * 99, sent=100, elapsed=4.0, send_s=2.0, out_of_order=2)
    merged = summarize(merge([fast, slow]))
    assert merged["sent"] == 210 and merged["expected"] == 210
    assert merged["received"] == 200 and merged["lost"] == 10
    assert merged["duplicates"] == 1 and merged["out_of_order"] == 2
    assert merged["p50_ms"] == 2.0  # sorted pool: 100 x 1.0, 2.0, 99 x 50.0; index 100
    assert merged["p99_ms"] == 50.0
    assert merged["elapsed"] == 4.0 and merged["msgs_per_s"] == 50.0  # 200 received / 4 s
    assert merged["send_s"] == 2.0 and merged["offered_per_s"] == 105.0  # 210 sent / 2 s
    # Not what the parts' own figures would give by averaging or taking the worst.
    parts = [summarize(fast), summarize(slow)]
    assert merged["p50_ms"] not in {p["p50_ms"] for p in parts}


def test_merge_of_one_process_reports_what_that_process_reports():
    one = raw([3.0, 1.0, 2.0, 9.0], sent=4, elapsed=0.5, send_s=0.4)
    assert summarize(merge([one])) == summarize(one)


def test_merge_of_split_samples_equals_the_single_process_figures():
    samples = [float(i % 37) + i / 1000 for i in range(1000)]
    whole = raw(samples, sent=1000, elapsed=3.0, send_s=2.5)
    halves = [
        raw(samples[::2], sent=500, elapsed=3.0, send_s=2.5),
        raw(samples[1::2], sent=500, elapsed=2.9, send_s=2.4),
    ]
    assert summarize(merge(halves)) == summarize(whole)


def test_summarize_without_samples_or_span():
    empty = summarize(raw([], sent=0, elapsed=0.0, send_s=0.0))
    assert empty["p50_ms"] is None and empty["p99_ms"] is None
    assert empty["msgs_per_s"] == 0.0 and empty["offered_per_s"] == 0.0


def test_merge_of_nothing_is_refused():
    with pytest.raises(ValueError):
        merge([])


@pytest.mark.parametrize(
    ("pairs", "procs", "expected"),
    [
        (10, 2, [(0, 5), (5, 5)]),
        (11, 3, [(0, 4), (4, 4), (8, 3)]),
        (1, 4, [(0, 1)]),  # never a process without pairs
        (5, 0, [(0, 5)]),
    ],
)
def test_split_pairs_covers_every_pair_once(pairs, procs, expected):
    assert split_pairs(pairs, procs) == expected


def test_paced_senders_of_all_generators_together_send_one_even_stream():
    # 2 generators x 50 sides at 1,000 msg/s: interval 0.1 s, one send a millisecond.
    interval, shares = 0.1, split_pairs(50, 2)
    phases = sorted(
        phase
        for first, count in shares
        for phase in send_phases(interval, 2 * first, 2 * count, 2 * 50)
    )
    assert len(phases) == 100
    gaps = [b - a for a, b in zip(phases, phases[1:], strict=False)]
    assert min(gaps) == pytest.approx(0.001) and max(gaps) == pytest.approx(0.001)
    assert phases[0] == 0.0 and phases[-1] < interval


def test_one_generator_alone_spreads_its_own_senders():
    assert send_phases(0.5, 0, 5, 5) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
