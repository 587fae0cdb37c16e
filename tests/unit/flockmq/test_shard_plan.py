"""flockmq/shard_plan.py: the target is fair, the same on every node, stable
when nothing changes; a dead node's shards go to the survivors, which keep
(almost all of) their own, and, given the cluster's nodes (sticky), every
one of their own; the plan is the difference with what is held."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flockmq.shard_plan import MAX_SHARDS, assign_shards, plan_shards, quotas

NODES = ("alpha", "bravo", "charlie")
names = st.sets(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=8)


def test_every_shard_has_one_owner_and_the_spread_is_fair() -> None:
    target = assign_shards(NODES, 64)
    assert sorted(s for owned in target.values() for s in owned) == list(range(64))
    assert {n: len(s) for n, s in target.items()} == {"alpha": 22, "bravo": 21, "charlie": 21}


@given(names, st.integers(1, 200))
def test_any_live_set_gets_a_partition_within_one_shard(nodes: set[str], shards: int) -> None:
    target = assign_shards(nodes, shards)
    owned = [s for got in target.values() for s in got]
    assert sorted(owned) == list(range(shards))
    sizes = [len(got) for got in target.values()]
    assert max(sizes) - min(sizes) <= 1
    assert {n: len(got) for n, got in target.items()} == quotas(nodes, shards)


def test_every_node_computes_the_same_target_whatever_the_order_it_lists() -> None:
    plans = [plan_shards(me, list(reversed(NODES)), 64, ()) for me in NODES]
    assert plans[0].target == plan_shards("alpha", NODES, 64, ()).target
    assert set().union(*(p.target for p in plans)) == set(range(64))
    assert sum(len(p.target) for p in plans) == 64


def test_a_node_that_holds_its_target_has_nothing_to_do() -> None:
    first = plan_shards("bravo", NODES, 64, ())
    assert first.acquire == tuple(sorted(first.target)) and first.release == ()
    again = plan_shards("bravo", NODES, 64, first.target)
    assert again.settled
    assert again.target == first.target


def test_a_dead_nodes_shards_go_to_the_survivors_who_keep_their_own() -> None:
    before = assign_shards(NODES, 64)
    survivors = ("alpha", "charlie")
    after = {me: plan_shards(me, survivors, 64, before[me]) for me in survivors}
    # bravo's shards are all taken, spread over both survivors
    orphans = before["bravo"]
    taken = [set(after[me].acquire) & orphans for me in survivors]
    assert taken[0] | taken[1] == orphans and all(taken)
    assert sorted(len(after[me].target) for me in survivors) == [32, 32]
    # measured: 2 shards move from one survivor to the other (the quotas
    # change from 22/21/21 to 32/32); none is given up for nothing
    kept = sum(len(before[me] & after[me].target) for me in survivors)
    assert kept >= len(before["alpha"]) + len(before["charlie"]) - 2
    released = {s for me in survivors for s in after[me].release}
    acquired = {s for me in survivors for s in after[me].acquire}
    assert released <= acquired  # what one lets go, the other takes


def test_a_joining_node_takes_its_share_mostly_from_each_of_the_others() -> None:
    before = assign_shards(NODES, 64)
    joined = (*NODES, "delta")
    plans = {me: plan_shards(me, joined, 64, before.get(me, ())) for me in joined}
    assert len(plans["delta"].acquire) == 16
    given_up = {s for me in NODES for s in plans[me].release}
    assert set(plans["delta"].acquire) <= given_up
    assert len(given_up) <= 16 + 2  # measured: 18 given up, 2 of them between the old nodes
    assert all(plans[me].release for me in NODES)  # each gives some


def test_a_node_missing_from_its_own_live_list_counts_itself() -> None:
    assert (
        plan_shards("alpha", ["bravo"], 8, ()).target
        == assign_shards(["alpha", "bravo"], 8)["alpha"]
    )


def test_shards_out_of_range_are_released() -> None:
    plan = plan_shards("alpha", ["alpha"], 4, {0, 1, 2, 3, 7})
    assert plan.release == (7,) and plan.acquire == ()


@pytest.mark.parametrize(
    ("nodes", "shards"),
    [
        (["a"], 0),
        (["a"], MAX_SHARDS + 1),
        ([""], 4),
        (["x" * 256], 4),
        ([f"n{i}" for i in range(257)], 4),
    ],
)
def test_unreasonable_inputs_are_refused(nodes: list[str], shards: int) -> None:
    with pytest.raises(ValueError):
        assign_shards(nodes, shards)


def test_sticky_a_dead_nodes_shards_move_and_no_other() -> None:
    before = assign_shards(NODES, 64)
    survivors = ("alpha", "charlie")
    after = {me: plan_shards(me, survivors, 64, before[me], every=NODES) for me in survivors}
    assert all(after[me].release == () for me in survivors)  # nothing between survivors
    assert {s for me in survivors for s in after[me].acquire} == before["bravo"]
    assert sorted(len(after[me].target) for me in survivors) == [32, 32]
    # and bravo back: exactly its own shards return to it
    back = assign_shards(NODES, 64, every=NODES)
    assert back == before


@given(names, st.data(), st.integers(1, 200))
def test_sticky_any_live_subset_is_fair_and_keeps_the_survivors_shards(
    every: set[str], data: st.DataObject, shards: int
) -> None:
    live = data.draw(st.sets(st.sampled_from(sorted(every)), min_size=1))
    full = assign_shards(every, shards)
    target = assign_shards(live, shards, every)
    assert sorted(s for got in target.values() for s in got) == list(range(shards))
    assert {n: len(got) for n, got in target.items()} == quotas(live, shards)
    for node in live:
        if len(full[node]) <= quotas(live, shards)[node]:
            assert full[node] <= target[node]
