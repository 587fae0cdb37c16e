"""Sequence and latency accounting: what a subscriber got from each publisher,
what was lost, duplicated or reordered, and latency percentiles.

Definitions (per subscriber and publisher; the run sums them):
- received: every PUBLISH the subscriber got, duplicates included.
- duplicate: a sequence number that had already arrived. At QoS 2 that breaks
  the exactly-once guarantee; at QoS 1 the spec allows it [MQTT-4.3.2] and it is
  counted (and those that carried the DUP flag counted apart) but not a failure.
- out of order: a first arrival whose sequence number is below the highest seen
  so far from that publisher. QoS 1/2 promise per-publisher order [MQTT-4.6.0-6].
- lost: a message the publisher completed (QoS 0: sent; QoS 1: PUBACK; QoS 2:
  PUBCOMP) that never arrived by the end of the run.
Sequence sets are bitmaps (bit `seq` of byte `seq // 8`), so that trackers from
different processes can be shipped and compared cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def new_bitmap(count: int) -> bytearray:
    return bytearray((count + 7) // 8)


def bitmap_count(bitmap: bytes | bytearray) -> int:
    return int.from_bytes(bitmap, "little").bit_count()


def count_lost(completed: bytes, received: bytes) -> int:
    """How many sequence numbers are set in `completed` but not in `received`."""
    done = int.from_bytes(completed, "little")
    got = int.from_bytes(received, "little")
    return (done & ~got).bit_count()


class SequenceTracker:
    """The messages one subscriber got from one publisher of `count` messages."""

    __slots__ = ("dup_flagged", "duplicates", "highest", "out_of_order", "received", "seen")

    def __init__(self, count: int) -> None:
        self.seen = new_bitmap(count)
        self.received = 0
        self.duplicates = 0
        self.dup_flagged = 0  # duplicates that carried the DUP flag (a redelivery)
        self.out_of_order = 0
        self.highest = -1

    def record(self, seq: int, dup_flag: bool = False) -> bool:
        """Count one arrival; True if it is the first of this sequence number."""
        self.received += 1
        index = seq >> 3
        bit = 1 << (seq & 7)
        seen = self.seen
        if index >= len(seen):
            raise ValueError(f"sequence number {seq} is beyond the publisher's count")
        if seen[index] & bit:
            self.duplicates += 1
            if dup_flag:
                self.dup_flagged += 1
            return False
        seen[index] |= bit
        if seq < self.highest:
            self.out_of_order += 1
        else:
            self.highest = seq
        return True

    @property
    def unique(self) -> int:
        return bitmap_count(self.seen)


# Latency histogram: exact below 256 ns, then 128 buckets per power of two, so
# a reported value is within 0.8% of the true one. Buckets merge by adding.
_SUB_BITS = 8


def bucket_of(value: int) -> int:
    if value < (1 << _SUB_BITS):
        return max(value, 0)
    shift = value.bit_length() - _SUB_BITS
    return (shift << _SUB_BITS) | (value >> shift)


def bucket_high(bucket: int) -> int:
    """The largest value that falls in `bucket`."""
    shift = bucket >> _SUB_BITS
    if shift == 0:
        return bucket
    mantissa = bucket & ((1 << _SUB_BITS) - 1)
    return ((mantissa + 1) << shift) - 1


@dataclass
class LatencyHistogram:
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    max_value: int = 0

    def record(self, value: int) -> None:
        key = bucket_of(value)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1
        self.max_value = max(self.max_value, value)

    def merge(self, other: LatencyHistogram) -> None:
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.total += other.total
        self.max_value = max(self.max_value, other.max_value)

    def percentile(self, p: float) -> int:
        """The smallest recorded value v (to the bucket) with at least p% of
        the values <= v; 0 when empty. Never above the true maximum."""
        if not self.total:
            return 0
        rank = max(1, -(-self.total * p // 100))  # ceil, at least the first value
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return min(bucket_high(key), self.max_value)
        return self.max_value

    def to_wire(self) -> tuple[dict[int, int], int, int]:
        return self.counts, self.total, self.max_value

    @classmethod
    def from_wire(cls, wire: tuple[dict[int, int], int, int]) -> LatencyHistogram:
        counts, total, max_value = wire
        return cls(dict(counts), total, max_value)


@dataclass
class DeliveryTotals:
    """The run's sums over every (subscriber, publisher) pair."""

    expected: int = 0  # completed messages times the subscribers that should get them
    received: int = 0
    unique: int = 0
    lost: int = 0
    duplicates: int = 0
    dup_flagged: int = 0
    out_of_order: int = 0

    def add(self, tracker_wire: TrackerWire, completed: bytes) -> None:
        _, seen, received, duplicates, dup_flagged, out_of_order = tracker_wire
        self.expected += bitmap_count(completed)
        self.received += received
        self.unique += bitmap_count(seen)
        self.lost += count_lost(completed, seen)
        self.duplicates += duplicates
        self.dup_flagged += dup_flagged
        self.out_of_order += out_of_order


# A tracker as shipped between processes:
# (publisher id, seen bitmap, received, duplicates, dup_flagged, out_of_order).
TrackerWire = tuple[int, bytes, int, int, int, int]


def tracker_to_wire(publisher_id: int, tracker: SequenceTracker) -> TrackerWire:
    return (
        publisher_id,
        bytes(tracker.seen),
        tracker.received,
        tracker.duplicates,
        tracker.dup_flagged,
        tracker.out_of_order,
    )


def total_deliveries(
    trackers: Iterable[TrackerWire], completed: Mapping[int, bytes]
) -> DeliveryTotals:
    """Sum trackers against each publisher's completed-message bitmap."""
    totals = DeliveryTotals()
    for wire in trackers:
        totals.add(wire, completed.get(wire[0], b""))
    return totals


def guarantee_violations(qos: int, totals: DeliveryTotals) -> list[str]:
    """What the run broke of its QoS level's promises; empty for QoS 0."""
    broken: list[str] = []
    if qos >= 1 and totals.lost:
        broken.append(f"{totals.lost} message(s) lost at QoS {qos}")
    if qos >= 1 and totals.out_of_order:
        broken.append(f"{totals.out_of_order} message(s) out of order at QoS {qos}")
    if qos == 2 and totals.duplicates:
        broken.append(f"{totals.duplicates} duplicate(s) at QoS 2")
    return broken
