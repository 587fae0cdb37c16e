"""flockmq/shard_manager.py with a fake clock: at start every node runs its
static shards; a dead node's shards start on the survivors (every shard
on exactly one of them); a node back for less than the rejoin delay moves
nothing, one back for longer gets its own shards back; a node without a
quorum (3 nodes or more) starts nothing; and whatever the live sets, nodes
with the same view run disjoint workers covering every shard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flockmq.shard_manager import ShardManager, WorkerActions
from flockmq.shard_plan import assign_shards

NODES = ("a", "b", "c")
SHARDS = 16
DELAY = 5.0


def managers(now: float = 0.0) -> dict[str, ShardManager]:
    return {me: ShardManager(me, NODES, SHARDS, DELAY, now) for me in NODES}


def update_all(ms: dict[str, ShardManager], live: set[str], now: float) -> dict[str, WorkerActions]:
    return {me: m.update(live, now) for me, m in ms.items() if me in live}


def test_at_start_every_node_runs_the_static_placement() -> None:
    ms = managers()
    static = assign_shards(NODES, SHARDS)
    for me, m in ms.items():
        # membership presumes every node live at start (flockmq/membership.py)
        assert m.update(set(NODES), 0.0) == WorkerActions(tuple(sorted(static[me])), ())
        assert m.update(set(NODES), 0.1) == WorkerActions((), ())
        assert m.running == static[me]


def test_a_dead_nodes_shards_start_on_the_survivors_each_on_one() -> None:
    ms = managers()
    update_all(ms, set(NODES), 0.0)
    static = assign_shards(NODES, SHARDS)
    acts = update_all(ms, {"a", "c"}, 10.0)  # b declared dead
    started = [set(acts[me].start) for me in ("a", "c")]
    assert started[0] | started[1] >= static["b"] and started[0] and started[1]
    running = [ms[me].running for me in ("a", "c")]
    assert running[0] | running[1] == set(range(SHARDS)) and not running[0] & running[1]
    # a survivor may hand one of its own to the other (the quotas change),
    # never to nobody: what one stops, the other starts
    stopped = set(acts["a"].stop) | set(acts["c"].stop)
    assert stopped <= started[0] | started[1]


def test_a_flapping_node_moves_nothing_back_until_it_stays() -> None:
    ms = managers()
    update_all(ms, set(NODES), 0.0)
    static = assign_shards(NODES, SHARDS)
    update_all(ms, {"a", "c"}, 10.0)
    after_death = {me: ms[me].running for me in ("a", "c")}
    now = 10.0
    for _ in range(5):  # b heard for 4 s, then dead again, and again
        now += 1.0
        assert not any(update_all({k: ms[k] for k in "ac"}, set(NODES), now).values())
        assert ms["a"].next_timer() == now + DELAY
        now += 3.0
        assert not any(update_all({k: ms[k] for k in "ac"}, set(NODES), now).values())
        now += 6.0
        assert not any(update_all({k: ms[k] for k in "ac"}, {"a", "c"}, now).values())
        assert ms["a"].next_timer() is None
    assert {me: ms[me].running for me in ("a", "c")} == after_death
    # b stays: once live for the whole delay, its shards go back to it
    now += 1.0
    update_all({k: ms[k] for k in "ac"}, set(NODES), now)
    assert ms["c"].next_timer() == now + DELAY
    now += DELAY
    acts = update_all({k: ms[k] for k in "ac"}, set(NODES), now)
    assert set(acts["a"].stop) | set(acts["c"].stop) == static["b"]
    assert not acts["a"].start and not acts["c"].start
    assert {me: ms[me].running for me in ("a", "c")} == {me: static[me] for me in ("a", "c")}


def test_a_restarted_node_plans_with_everyone_at_once() -> None:
    """b came back as a new process: its membership presumes everyone live,
    so it starts its own shards' workers at once (standbys until the
    survivors let them go, after their rejoin delay)."""
    b = ShardManager("b", NODES, SHARDS, DELAY, 100.0)
    assert set(b.update(set(NODES), 100.0).start) == assign_shards(NODES, SHARDS)["b"]


def test_unknown_nodes_in_the_live_set_are_ignored_and_bad_input_refused() -> None:
    m = ShardManager("a", NODES, SHARDS, DELAY, 0.0)
    m.update({"a", "b", "c", "zz"}, 0.0)
    assert m.running == assign_shards(NODES, SHARDS)["a"]
    with pytest.raises(ValueError):
        ShardManager("zz", NODES, SHARDS, DELAY, 0.0)
    with pytest.raises(ValueError):
        ShardManager("a", NODES, 0, DELAY, 0.0)
    with pytest.raises(ValueError):
        ShardManager("a", NODES, SHARDS, -1.0, 0.0)


@given(
    st.lists(
        st.tuples(st.sets(st.sampled_from(NODES), min_size=1), st.floats(0.0, 8.0)), max_size=30
    )
)
def test_live_nodes_converge_to_one_worker_per_shard(steps: list[tuple[set[str], float]]) -> None:
    """Whatever the deaths and returns (a dead node is not updated: it is cut
    off, and comes back with its old view): what a node runs is what its
    actions said, and once the live set, a quorum, has been stable for the
    rejoin delay, the live nodes run every shard exactly once."""
    ms = managers()
    running: dict[str, set[int]] = {me: set() for me in NODES}
    now = 0.0
    final = steps[-1][0] if steps else set(NODES)
    for live, gap in [*steps, (final, 0.0)]:
        now += gap
        for me, acts in update_all(ms, live, now).items():
            assert not set(acts.start) & running[me]
            assert set(acts.stop) <= running[me]
            running[me] = (running[me] | set(acts.start)) - set(acts.stop)
            assert running[me] == ms[me].running
    update_all(ms, final, now + DELAY + 0.5)
    covered = [s for me in final for s in ms[me].running]
    if len(final) >= 2:  # a quorum of 3: one node alone takes nothing (below)
        assert sorted(covered) == list(range(SHARDS))


def test_the_assignment_is_every_shards_node_by_the_current_plan() -> None:
    m = ShardManager("a", NODES, SHARDS, DELAY, 0.0)
    m.update(set(NODES), 0.0)
    static = assign_shards(NODES, SHARDS)
    assert m.assignment() == {s: n for n, owned in static.items() for s in owned}
    m.update({"a", "b"}, 10.0)
    after = m.assignment()
    assert set(after.values()) == {"a", "b"} and sorted(after) == list(range(SHARDS))
    assert {s for s, n in after.items() if n == "a"} == m.running


def test_a_node_without_a_quorum_starts_nothing_and_keeps_what_it_runs() -> None:
    """Cut off (or the majority dead): its workers could not reach PostgreSQL
    either, and the nodes with a quorum take the shards. Its plan stays as
    it was; a node heard again while it had no quorum starts its rejoin
    delay when the quorum is back, not before."""
    m = ShardManager("a", NODES, SHARDS, DELAY, 0.0)
    static = assign_shards(NODES, SHARDS)
    m.update(set(NODES), 0.0)
    assert m.update({"a"}, 10.0) == WorkerActions((), ())
    assert m.without_quorum and m.running == static["a"]
    assert m.update({"a"}, 20.0) == WorkerActions((), ())
    acts = m.update({"a", "b"}, 30.0)  # a quorum: c is dead, its shards move
    assert not m.without_quorum and set(acts.start) and not set(acts.start) & static["a"]
    moved = m.running
    m.update(set(NODES), 31.0)  # c heard: its delay starts
    m.update({"a"}, 32.0)  # no quorum: c is not joining any more
    assert m.next_timer() is None and m.running == moved
    assert m.update(set(NODES), 40.0) == WorkerActions((), ())
    assert m.next_timer() == 40.0 + DELAY  # from when it was heard with a quorum
    assert m.update(set(NODES), 40.0 + DELAY).stop  # c gets its shards back


def test_with_two_nodes_the_survivor_takes_every_shard() -> None:
    """No node alone is a majority of 2: the locks decide (the survivor's
    workers get them once PostgreSQL ends the dead node's sessions)."""
    m = ShardManager("a", ("a", "b"), SHARDS, DELAY, 0.0)
    m.update({"a", "b"}, 0.0)
    m.update({"a"}, 10.0)
    assert not m.without_quorum and m.running == set(range(SHARDS))


def test_a_node_without_a_quorum_that_reaches_the_store_plans_as_usual() -> None:
    """The majority is dead (or only the links between nodes are cut) but
    this node renews its PostgreSQL lease: it takes the dead nodes' shards
    (their locks decide, freed once their leases expire)."""
    m = ShardManager("a", NODES, SHARDS, DELAY, 0.0)
    m.update(set(NODES), 0.0)
    assert m.update({"a"}, 10.0) == WorkerActions((), ())  # cut off: no quorum, no store
    acts = m.update({"a"}, 11.0, reaches_store=True)
    assert not m.without_quorum and m.running == set(range(SHARDS))
    assert set(acts.start) == set(range(SHARDS)) - assign_shards(NODES, SHARDS)["a"]
