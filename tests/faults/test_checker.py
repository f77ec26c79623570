"""The soak checker must catch every way a delivery can go wrong (fast, no processes)."""

from __future__ import annotations

from tests.faults.checker import (
    Shown,
    check_stream,
    make_text,
    parse_shown,
    percentile,
    summarize,
)


def shown(*seqs: int, sender: str = "a01", sent: float = 100.0, at: float = 100.5) -> list[Shown]:
    return [Shown(sender, s, sent, at) for s in seqs]


def test_text_round_trip():
    item = parse_shown(make_text("a01", 7, 1234.5678), 1235.0)
    assert item == Shown("a01", 7, 1234.568, 1235.0)
    assert parse_shown("a01#x@1.0", 1.0) is None
    assert parse_shown("hello", 1.0) is None


def test_perfect_stream():
    report = summarize([check_stream("a01", "b01", 3, shown(1, 2, 3))])
    assert report.perfect
    assert (report.sent, report.delivered, report.lost, report.duplicated) == (3, 3, 0, 0)
    assert report.max_delay_s == 0.5


def test_loss_duplicate_reorder_and_foreign_are_each_counted():
    s = check_stream("a01", "b01", 5, shown(1, 3, 2, 3, 9) + shown(1, sender="a02"))
    assert s.lost == 2  # 4 and 5
    assert s.duplicated == 1  # the second 3
    assert s.out_of_order == 1  # 2 after 3
    assert s.foreign == 2  # 9 was never sent; a02 is not this stream's sender
    report = summarize([s])
    assert not report.perfect


def test_unparsable_output_is_a_failure():
    report = summarize([check_stream("a01", "b01", 1, shown(1))], unparsable=1)
    assert not report.perfect


def test_percentile_nearest_rank():
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile([], 99) == 0.0
