"""The load tester's accounting on synthetic sequences: loss, duplicates,
reordering and latency percentiles must count exactly what happened."""

from __future__ import annotations

import random
from collections.abc import Collection

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loadgen.stats import (
    DeliveryTotals,
    LatencyHistogram,
    SequenceTracker,
    bucket_high,
    bucket_of,
    count_lost,
    guarantee_violations,
    new_bitmap,
    total_deliveries,
    tracker_to_wire,
)


def completed_bitmap(count: int, missing: tuple[int, ...] = ()) -> bytes:
    bitmap = new_bitmap(count)
    for seq in range(count):
        if seq not in missing:
            bitmap[seq >> 3] |= 1 << (seq & 7)
    return bytes(bitmap)


def feed(
    count: int, arrivals: list[int], dup_flags: Collection[int] = frozenset()
) -> SequenceTracker:
    tracker = SequenceTracker(count)
    for i, seq in enumerate(arrivals):
        tracker.record(seq, i in dup_flags)
    return tracker


def totals_of(count: int, arrivals: list[int], completed: bytes | None = None) -> DeliveryTotals:
    tracker = feed(count, arrivals)
    done = completed if completed is not None else completed_bitmap(count)
    return total_deliveries([tracker_to_wire(7, tracker)], {7: done})


def test_in_order_complete_run_is_clean() -> None:
    totals = totals_of(100, list(range(100)))
    assert (totals.received, totals.unique, totals.lost) == (100, 100, 0)
    assert (totals.duplicates, totals.out_of_order) == (0, 0)
    assert guarantee_violations(1, totals) == []
    assert guarantee_violations(2, totals) == []


def test_one_missing_message_is_one_loss() -> None:
    arrivals = [s for s in range(100) if s != 42]
    totals = totals_of(100, arrivals)
    assert totals.lost == 1
    assert totals.unique == 99
    assert totals.out_of_order == 0
    assert guarantee_violations(0, totals) == []
    assert guarantee_violations(1, totals) == ["1 message(s) lost at QoS 1"]


def test_loss_counts_only_completed_messages() -> None:
    # seq 9 was never acknowledged to the publisher, so its absence is no loss
    arrivals = list(range(9))
    totals = totals_of(10, arrivals, completed_bitmap(10, missing=(9,)))
    assert totals.lost == 0
    assert totals.expected == 9


def test_last_and_first_message_losses_are_seen() -> None:
    assert totals_of(17, list(range(1, 17))).lost == 1
    assert totals_of(17, list(range(16))).lost == 1
    assert totals_of(17, []).lost == 17


def test_duplicate_is_counted_once_and_not_as_reorder() -> None:
    totals = totals_of(10, [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9])
    assert totals.duplicates == 1
    assert totals.received == 11
    assert totals.unique == 10
    assert totals.out_of_order == 0
    assert totals.lost == 0
    assert guarantee_violations(1, totals) == []  # allowed at QoS 1 [MQTT-4.3.2]
    assert guarantee_violations(2, totals) == ["1 duplicate(s) at QoS 2"]


def test_late_duplicate_of_an_old_message_is_not_reorder() -> None:
    totals = totals_of(10, [*range(10), 2])
    assert (totals.duplicates, totals.out_of_order) == (1, 0)


def test_dup_flagged_duplicates_are_counted_apart() -> None:
    tracker = feed(5, [0, 1, 1, 2, 2], dup_flags={2})
    assert tracker.duplicates == 2
    assert tracker.dup_flagged == 1


def test_swapped_pair_is_one_out_of_order() -> None:
    totals = totals_of(10, [0, 1, 3, 2, 4, 5, 6, 7, 8, 9])
    assert totals.out_of_order == 1
    assert totals.lost == 0
    assert guarantee_violations(1, totals) == ["1 message(s) out of order at QoS 1"]
    assert guarantee_violations(0, totals) == []


def test_one_late_message_is_one_out_of_order() -> None:
    # 0 arrives after everything else: only that arrival is out of order
    totals = totals_of(6, [1, 2, 3, 4, 5, 0])
    assert totals.out_of_order == 1


def test_sequence_beyond_count_is_rejected() -> None:
    with pytest.raises(ValueError):
        SequenceTracker(8).record(8)


@given(st.lists(st.integers(0, 63), max_size=200))
def test_counts_agree_with_a_set_model(arrivals: list[int]) -> None:
    tracker = feed(64, arrivals)
    seen: set[int] = set()
    dups = reorders = 0
    highest = -1
    for seq in arrivals:
        if seq in seen:
            dups += 1
            continue
        seen.add(seq)
        if seq < highest:
            reorders += 1
        highest = max(highest, seq)
    assert tracker.received == len(arrivals)
    assert tracker.unique == len(seen)
    assert tracker.duplicates == dups
    assert tracker.out_of_order == reorders
    assert count_lost(completed_bitmap(64), bytes(tracker.seen)) == 64 - len(seen)


def test_totals_sum_over_subscribers() -> None:
    done = {0: completed_bitmap(10), 1: completed_bitmap(10)}
    wires = [
        tracker_to_wire(0, feed(10, list(range(10)))),
        tracker_to_wire(1, feed(10, [0, 1, 1, 2])),  # 7 lost, 1 duplicate
        tracker_to_wire(0, feed(10, [9, *range(9)])),  # a second subscriber of 0
    ]
    totals = total_deliveries(wires, done)
    assert totals.expected == 30
    assert totals.lost == 7
    assert totals.duplicates == 1
    assert totals.out_of_order == 9


def test_percentiles_of_a_uniform_sequence() -> None:
    hist = LatencyHistogram()
    for v in range(1, 10_001):
        hist.record(v * 1000)  # 1 µs .. 10 ms
    assert hist.total == 10_000
    assert hist.max_value == 10_000_000
    for p, exact in ((50, 5_000_000), (99, 9_900_000), (99.9, 9_990_000), (100, 10_000_000)):
        got = hist.percentile(p)
        assert exact <= got <= exact * 1.008, (p, got)


def test_percentiles_of_small_and_skewed_samples() -> None:
    hist = LatencyHistogram()
    assert hist.percentile(50) == 0
    for v in [100] * 999 + [50_000_000]:
        hist.record(v)
    assert hist.percentile(50) == 100
    assert hist.percentile(99.9) == 100  # the 999th of 1000 values
    assert hist.percentile(99.95) == 50_000_000
    assert hist.percentile(100) == 50_000_000


def test_merged_histograms_equal_one_histogram() -> None:
    rng = random.Random(5)
    values = [int(rng.expovariate(1 / 200_000)) for _ in range(5000)]
    whole, a, b = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i, v in enumerate(values):
        whole.record(v)
        (a if i % 2 else b).record(v)
    a.merge(LatencyHistogram.from_wire(b.to_wire()))
    assert a == whole
    for p in (50, 99, 99.9):
        assert a.percentile(p) == whole.percentile(p)


@given(st.integers(0, 2**40))
def test_bucket_holds_its_value_within_one_percent(value: int) -> None:
    high = bucket_high(bucket_of(value))
    assert value <= high <= value * 1.008 + 1
