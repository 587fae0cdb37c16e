"""flockmq/shard_directory.py: a shard starts at its static home; the
newest epoch names its node, stale and repeated announcements change
nothing; a worker announces at its claim and then every interval; and the
SHARD_AT envelope's receipt check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flockmq.envelopes import Kind, ShardAt, check_shard_at
from flockmq.shard_directory import ShardAnnouncer, ShardDirectory
from flockmq.shard_plan import assign_shards

NODES = ("a", "b", "c")


def home(shards: int = 8) -> dict[int, int]:
    placed = assign_shards(NODES, shards)
    return {s: NODES.index(n) for n, owned in placed.items() for s in owned}


def test_a_shard_is_at_home_until_an_announcement_moves_it() -> None:
    d = ShardDirectory(home())
    assert [d.node_of(s) for s in range(8)] == [home()[s] for s in range(8)]
    elsewhere = (home()[3] + 1) % 3
    assert d.announce(3, elsewhere, 1) == elsewhere  # moved: repoint
    assert d.node_of(3) == elsewhere and d.moves == 1
    assert d.announce(3, elsewhere, 1) is None  # the periodic re-send
    assert d.announce(3, elsewhere, 2) is None  # claimed again by the same node
    assert d.announce(3, home()[3], 1) is None and d.stale == 1  # a late frame of an older owner
    assert d.node_of(3) == elsewhere
    assert d.announce(3, home()[3], 3) == home()[3]  # moved back
    assert d.moves == 2


def test_an_announcement_at_home_at_a_first_epoch_is_no_move() -> None:
    d = ShardDirectory(home())
    assert d.announce(0, home()[0], 1) is None and d.moves == 0


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 20)), max_size=40))
def test_the_newest_epoch_wins_in_any_order(announcements: list[tuple[int, int]]) -> None:
    """Every process sees the same announcements in its own order: each
    ends with the node of the highest epoch (epochs name one claim)."""
    claims = {epoch: node for node, epoch in announcements}  # one node per epoch
    forward, backward = ShardDirectory(home()), ShardDirectory(home())
    for epoch, node in claims.items():
        forward.announce(5, node, epoch)
    for epoch, node in reversed(list(claims.items())):
        backward.announce(5, node, epoch)
    expected = claims[max(claims)] if claims else home()[5]
    assert forward.node_of(5) == backward.node_of(5) == expected


def test_a_directory_needs_every_shard_once_and_refuses_an_unknown_one() -> None:
    with pytest.raises(ValueError):
        ShardDirectory({0: 0, 2: 1})
    with pytest.raises(ValueError):
        ShardDirectory(home()).announce(8, 0, 1)


def test_a_worker_announces_at_its_claim_then_every_interval() -> None:
    a = ShardAnnouncer(shard=5, node=2, interval=2.0)
    assert a.tick(0.0) is None  # nothing before the claim
    assert a.claimed(7, 10.0) == ShardAt(Kind.SHARD_AT, 5, 2, 7)
    assert a.tick(11.9) is None
    assert a.tick(12.0) == ShardAt(Kind.SHARD_AT, 5, 2, 7)
    assert a.tick(13.0) is None
    assert a.tick(60.0) is not None  # after a stall: one, not twenty
    assert a.tick(61.0) is None
    assert a.tick(62.0) is not None


def test_a_shard_at_from_the_wire_is_checked() -> None:
    assert check_shard_at([Kind.SHARD_AT, 3, 2, 9], nodes=3, shards=8) == ShardAt(
        Kind.SHARD_AT, 3, 2, 9
    )
    for bad in (
        [Kind.SHARD_AT, 3, 2],
        [Kind.HEARTBEAT, 3, 2, 9],
        [Kind.SHARD_AT, 8, 2, 9],
        [Kind.SHARD_AT, -1, 2, 9],
        [Kind.SHARD_AT, 3, 3, 9],
        [Kind.SHARD_AT, 3, "a", 9],
        [Kind.SHARD_AT, 3, 2, 0],
        [Kind.SHARD_AT, 3, 2, 1 << 63],
        [Kind.SHARD_AT, 3.0, 2, 9],
    ):
        with pytest.raises((ValueError, TypeError)):
            check_shard_at(bad, nodes=3, shards=8)
