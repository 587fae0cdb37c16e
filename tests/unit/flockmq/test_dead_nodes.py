"""flockmq/dead_nodes.py: when a survivor may evict a dead node, with time
and lease rounds passed in. With a quorum at once (a quorum regained later
does not count); without one only when
the dead node's lease expired by the server's clock AND this node's own
renewal in that fresh round succeeded; never while both leases are fresh
(a partition of two nodes that both reach PostgreSQL); a restarted
incarnation loses only its old broker id's sessions."""

from __future__ import annotations

from flockmq.dead_nodes import DeadNodes, Lease, LeaseRound, Target
from flockmq.membership import Change, ChangeKind

TIMEOUT = 2.0
NOW = 100.0


def left(node: str = "b", incarnation: int = 7) -> Change:
    return Change(ChangeKind.LEFT, node, incarnation, f"broker-{node}-{incarnation}")


def round_of(
    renewed: bool = True, started: float = NOW - 0.1, **leases: tuple[int, float]
) -> LeaseRound:
    """leases: node=(incarnation, age)."""
    return LeaseRound(
        started,
        renewed,
        {node: Lease(inc, f"broker-{node}-{inc}", age) for node, (inc, age) in leases.items()},
    )


def dead(*changes: Change) -> DeadNodes:
    nodes = DeadNodes(TIMEOUT)
    for change in changes:
        nodes.changed(change)
    return nodes


def test_with_a_quorum_a_dead_node_is_evicted_at_once_by_address_and_broker() -> None:
    nodes = dead(left())
    assert nodes.due(True, None, NOW) == [Target("b", 7, "broker-b-7", True, "quorum")]
    assert nodes.due(True, None, NOW) == []  # once
    assert nodes.waiting() == []


def test_without_a_quorum_nothing_happens_until_a_lease_round() -> None:
    nodes = dead(left())
    assert nodes.due(False, None, NOW) == []
    assert nodes.waiting() == ["b"]


def test_an_expired_lease_and_this_nodes_own_renewal_evict_the_dead_node() -> None:
    nodes = dead(left())
    got = nodes.due(False, round_of(a=(1, 0.0), b=(7, TIMEOUT + 0.1)), NOW)
    assert got == [Target("b", 7, "broker-b-7", True, "lease expired")]
    assert nodes.waiting() == []


def test_an_expired_lease_evicts_nobody_when_this_nodes_own_renewal_failed() -> None:
    nodes = dead(left())
    assert nodes.due(False, round_of(renewed=False, b=(7, 60.0)), NOW) == []
    # no database at all: the round says so, with no rows
    assert nodes.due(False, LeaseRound(NOW - 0.1, False, {}), NOW) == []
    assert nodes.waiting() == ["b"]


def test_a_round_whose_answer_took_longer_than_the_timeout_is_stale() -> None:
    nodes = dead(left())
    stale = round_of(started=NOW - TIMEOUT - 0.1, a=(1, 0.0), b=(7, 60.0))
    assert nodes.due(False, stale, NOW) == []
    assert nodes.waiting() == ["b"]


def test_a_partition_with_both_leases_fresh_evicts_nobody_until_one_expires() -> None:
    nodes = dead(left())
    for age in (0.0, 0.5, TIMEOUT):  # renewed lately: it reaches PostgreSQL
        assert nodes.due(False, round_of(a=(1, 0.0), b=(7, age)), NOW) == []
    assert nodes.waiting() == ["b"]
    # it lost PostgreSQL too, later: now it goes
    got = nodes.due(False, round_of(a=(1, 0.0), b=(7, TIMEOUT + 0.5)), NOW)
    assert [t.why for t in got] == ["lease expired"]


def test_a_node_that_never_renewed_is_left_to_the_keepalives() -> None:
    nodes = dead(left())
    assert nodes.due(False, round_of(a=(1, 0.0)), NOW) == []
    assert nodes.waiting() == ["b"]


def test_a_node_heard_again_with_the_same_incarnation_is_no_longer_pending() -> None:
    nodes = dead(left())
    nodes.changed(Change(ChangeKind.JOINED, "b", 7, "broker-b-7"))
    assert nodes.waiting() == []
    assert nodes.due(True, round_of(b=(7, 60.0)), NOW) == []


def test_a_fresh_lease_of_a_newer_incarnation_evicts_only_the_old_broker() -> None:
    """The node restarted and renews again (PostgreSQL hears it, we do not):
    its new sessions share its address, so only the old broker id goes."""
    nodes = dead(left())
    got = nodes.due(False, round_of(a=(1, 0.0), b=(8, 0.2)), NOW)
    assert got == [Target("b", 7, "broker-b-7", False, "restarted")]


def test_a_dead_node_heard_again_as_a_new_incarnation_keeps_its_old_broker_pending() -> None:
    nodes = dead(left())
    nodes.changed(Change(ChangeKind.JOINED, "b", 8, "broker-b-8"))
    assert nodes.waiting() == ["b"]
    assert nodes.due(True, None, NOW) == [Target("b", 7, "broker-b-7", False, "quorum")]


def test_a_restart_evicts_the_old_broker_only_even_when_the_lease_expired() -> None:
    nodes = dead(Change(ChangeKind.RESTARTED, "b", 7, "broker-b-7"))
    got = nodes.due(False, round_of(a=(1, 0.0), b=(8, 60.0)), NOW)
    assert got == [Target("b", 7, "broker-b-7", False, "lease expired")]


def test_several_dead_nodes_are_judged_each_by_its_own_lease() -> None:
    nodes = dead(left("b"), left("c", 3))
    got = nodes.due(False, round_of(a=(1, 0.0), b=(7, 0.3), c=(3, 9.0)), NOW)
    assert [(t.node, t.why) for t in got] == [("c", "lease expired")]
    assert nodes.waiting() == ["b"]


def test_the_next_look_is_due_as_the_first_fresh_lease_of_a_dead_node_expires() -> None:
    nodes = dead(left("b"), left("c", 3))
    assert nodes.expiring_in(round_of(a=(1, 0.0), b=(7, 0.5), c=(3, 1.5))) == TIMEOUT - 1.5
    assert nodes.expiring_in(round_of(a=(1, 0.0))) is None  # no rows: nothing to wait for
    assert dead().expiring_in(round_of(a=(1, 0.0), b=(7, 0.5))) is None  # nobody pending


def test_a_quorum_regained_later_evicts_nobody_the_lease_decides() -> None:
    """A node cut off alone declared the others dead; back, it hears one of
    them (a quorum again) before the other: that one is not evicted for
    it, since it is likely alive; its fresh lease keeps it."""
    nodes = dead(left("b"), left("c", 3))
    assert nodes.due(False, None, NOW) == []  # alone: no quorum when they left
    nodes.changed(Change(ChangeKind.JOINED, "b", 7, "broker-b-7"))
    assert nodes.due(True, None, NOW) == []  # a quorum now, but c's death was not judged with it
    assert nodes.due(True, round_of(a=(1, 0.0), c=(3, 0.4)), NOW) == []
    assert nodes.waiting() == ["c"]
    got = nodes.due(True, round_of(a=(1, 0.0), c=(3, TIMEOUT + 1.0)), NOW)
    assert [(t.node, t.why) for t in got] == [("c", "lease expired")]
