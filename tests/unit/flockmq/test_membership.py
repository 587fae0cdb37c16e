"""flockmq/membership.py with a fake clock: heartbeats keep a node live, a
node silent for heartbeat_timeout (and only then) is declared dead, a
restart and a rejoin are told apart, stale and unknown heartbeats are
ignored; and the HEARTBEAT envelope's receipt check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flockmq.envelopes import Heartbeat, Kind, check_heartbeat
from flockmq.membership import Change, ChangeKind, Membership

NODES = ("a", "b", "c")
INTERVAL, TIMEOUT = 1.0, 5.0


def membership(now: float = 100.0, me: str = "a") -> Membership:
    return Membership(me, NODES, INTERVAL, TIMEOUT, now)


def test_every_node_is_presumed_live_at_start_and_dead_after_one_timeout() -> None:
    m = membership()
    assert m.live == {"a", "b", "c"}
    assert m.tick(104.9) == []
    m.heard("b", 7, "hb", 102.0)
    assert m.tick(105.0) == [Change(ChangeKind.LEFT, "c", -1, "")]  # never heard
    assert m.live == {"a", "b"}
    assert m.tick(106.9) == [] and m.live == {"a", "b"}
    assert m.tick(107.0) == [Change(ChangeKind.LEFT, "b", 7, "hb")]
    assert m.live == {"a"}  # this node never leaves its own live set


def test_a_node_missed_for_less_than_the_timeout_stays_live_with_no_change() -> None:
    m = membership()
    now = 100.0
    for gap in (1.0, 4.9, 0.5, 4.99, 2.0):  # heartbeats late, never as late as the timeout
        now += gap
        assert m.heard("b", 1, "hb", now) == []
        assert m.heard("c", 1, "hc", now) == []
        assert m.tick(now + gap * 0.9) == []
    assert m.live == set(NODES)


def test_a_dead_node_heard_again_rejoins_and_a_new_incarnation_is_a_restart() -> None:
    m = membership()
    m.heard("b", 1, "b1", 100.5)
    m.heard("c", 1, "c1", 100.5)
    assert m.tick(105.5) == [
        Change(ChangeKind.LEFT, "b", 1, "b1"),
        Change(ChangeKind.LEFT, "c", 1, "c1"),
    ]
    # c's link comes back: the same incarnation, a rejoin
    assert m.heard("c", 1, "c1", 106.0) == [Change(ChangeKind.JOINED, "c", 1, "c1")]
    # b was restarted while dead: a rejoin with the new incarnation
    assert m.heard("b", 2, "b2", 106.0) == [Change(ChangeKind.JOINED, "b", 2, "b2")]
    assert m.live == set(NODES)
    # c restarts within the timeout: never dead, but what c1 held is gone
    assert m.heard("c", 5, "c5", 107.0) == [Change(ChangeKind.RESTARTED, "c", 1, "c1")]
    assert (m.incarnation("c"), m.broker("c")) == (5, "c5")
    assert m.heard("c", 5, "c5", 108.0) == []


def test_stale_and_unknown_heartbeats_change_nothing() -> None:
    m = membership()
    m.heard("b", 3, "b3", 100.0)
    assert m.heard("b", 2, "b2", 104.0) == []  # an older incarnation's, late
    assert m.stale == 1
    assert Change(ChangeKind.LEFT, "b", 3, "b3") in m.tick(105.0)  # it did not keep b live
    assert m.heard("z", 1, "z", 105.0) == [] and m.unknown == 1
    assert m.heard("a", 1, "a", 105.0) == [] and m.unknown == 1  # its own echo is not news
    assert "z" not in m.live and m.nodes == set(NODES)


def test_heartbeats_are_due_every_interval_without_a_burst_after_a_stall() -> None:
    m = membership()
    assert m.heartbeat_due(100.0)
    assert not m.heartbeat_due(100.5)
    assert m.heartbeat_due(101.0)
    assert m.heartbeat_due(150.0)  # a stalled loop sends one, not fifty
    assert not m.heartbeat_due(150.5)
    assert m.heartbeat_due(151.0)


def test_the_timer_is_the_next_heartbeat_or_the_first_death_due() -> None:
    m = membership()
    m.heartbeat_due(100.0)
    assert m.next_timer() == 101.0
    m.heartbeat_due(101.0)
    m.heartbeat_due(102.0)
    m.heartbeat_due(103.0)
    m.heartbeat_due(104.0)
    assert m.next_timer() == 105.0  # b and c, presumed live at 100, are due to die at 105
    m.heard("b", 1, "b", 104.5)
    m.heard("c", 1, "c", 104.5)
    m.heartbeat_due(105.0)
    m.heartbeat_due(106.0)
    m.heartbeat_due(107.0)
    m.heartbeat_due(108.0)
    m.heartbeat_due(109.0)
    assert m.next_timer() == 109.5


def test_quorum_is_more_than_half_of_the_cluster_file() -> None:
    m = membership()
    m.heard("b", 1, "b", 104.0)
    m.tick(105.0)  # c dead
    assert m.live == {"a", "b"} and m.has_quorum()
    m.tick(109.0)  # b dead too
    assert m.live == {"a"} and not m.has_quorum()
    two = Membership("a", ("a", "b"), INTERVAL, TIMEOUT, 0.0)
    two.tick(5.0)
    assert not two.has_quorum()  # one of two is not a majority: the leases decide (dead_nodes.py)


def test_a_quorum_at_a_time_counts_only_the_peers_heard_lately() -> None:
    """Cut off from both others at 100, a heard at 100.4 and b at 100: when
    b is declared dead, a is still live here but as silent: no quorum; a
    peer heard within half the timeout counts."""
    m = membership()
    m.heard("b", 1, "b", 100.0)
    m.heard("c", 1, "c", 100.4)
    assert [c.node for c in m.tick(100.0 + TIMEOUT)] == ["b"]
    assert m.live == {"a", "c"} and m.has_quorum()  # by the live set alone
    assert not m.has_quorum(100.0 + TIMEOUT)  # c silent for nearly a timeout too
    m.heard("c", 1, "c", 100.0 + TIMEOUT)
    assert m.has_quorum(100.0 + TIMEOUT + TIMEOUT / 2 - 0.01)


def test_a_node_must_be_in_the_cluster_and_the_timeout_longer_than_the_interval() -> None:
    with pytest.raises(ValueError, match="not one of"):
        Membership("z", NODES, INTERVAL, TIMEOUT, 0.0)
    with pytest.raises(ValueError, match="longer"):
        Membership("a", NODES, 2.0, 2.0, 0.0)


@given(st.lists(st.tuples(st.sampled_from(("b", "c")), st.floats(0.0, 12.0)), max_size=40))
def test_live_means_heard_within_the_timeout(events: list[tuple[str, float]]) -> None:
    """Whatever the heartbeats' timing: after a tick, a node is live exactly
    when it was heard (or the start was) less than the timeout ago, and the
    changes told are exactly the flips of the live set."""
    m = membership(now=0.0)
    last = {"b": 0.0, "c": 0.0}
    now = 0.0
    live = set(NODES)
    for node, gap in events:
        now += gap
        changes = m.tick(now) + m.heard(node, 1, node, now)
        last[node] = now
        for change in changes:
            if change.kind == ChangeKind.LEFT:
                live.discard(change.node)
            elif change.kind == ChangeKind.JOINED:
                live.add(change.node)
        assert m.live == live
        expected = {"a"} | {n for n, t in last.items() if now - t < TIMEOUT}
        assert m.live == expected


def test_a_heartbeat_from_the_wire_is_checked() -> None:
    h = check_heartbeat([Kind.HEARTBEAT, "b", 3, "host:ab"])
    assert h == Heartbeat(Kind.HEARTBEAT, "b", 3, "host:ab")
    for bad in (
        [Kind.HEARTBEAT, "b", 3],  # arity
        [Kind.SHARD_AT, "b", 3, "x"],
        [Kind.HEARTBEAT, "", 3, "x"],
        [Kind.HEARTBEAT, "b" * 300, 3, "x"],
        [Kind.HEARTBEAT, 5, 3, "x"],
        [Kind.HEARTBEAT, "b", -1, "x"],
        [Kind.HEARTBEAT, "b", 1 << 63, "x"],
        [Kind.HEARTBEAT, "b", "3", "x"],
        [Kind.HEARTBEAT, "b", 3, "x" * 64],
        [Kind.HEARTBEAT, "b", 3, None],
    ):
        with pytest.raises((ValueError, TypeError)):
            check_heartbeat(bad)


def test_silence_is_counted_from_the_last_heartbeat_or_the_start() -> None:
    m = membership()
    m.heard("b", 1, "b", 102.0)
    assert m.silent_for("b", 108.5) == 6.5
    assert m.silent_for("c", 108.5) == 8.5
