"""TopicTree and topic_matches: the matching rules of MQTT 3.1.1 section 4.7 and
5.0 sections 4.7/4.8, subscription bookkeeping, shared-group rotation, and the
match cache, checked by spec tables and by hypothesis against a regex model."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flockmq.mqtt.errors import ProtocolError
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.router.topic_tree import TopicTree, check_topic_filter, topic_matches

# -- an independent reference matcher: filter -> regex --------------------


def reference_matches(topic_filter: str, topic: str) -> bool:
    """Brute force: translate the filter into a regular expression."""
    levels = topic_filter.split("/")
    if topic.startswith("$") and levels[0] in ("+", "#"):
        return False
    multi = levels[-1] == "#"
    if multi:
        levels = levels[:-1]
    parts = ["[^/]*" if level == "+" else re.escape(level) for level in levels]
    pattern = "/".join(parts)
    if multi:
        pattern = pattern + "(/.*)?" if levels else ".*"
    return re.fullmatch(pattern, topic, flags=re.DOTALL) is not None


# 3.1.1 section 4.7.1 and 4.7.2 examples (the same in 5.0 section 4.7).
SPEC_TABLE = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    ("#", "a", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("sport/+", "sport/tennis/player1", False),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("+", "", True),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/b", "a//b", False),
    ("/a", "/a", True),
    ("/a", "a", False),
    ("a/b", "a/b", True),
    ("a/b", "A/b", False),
    ("a/b/c", "a/b", False),
    ("a/b", "a/b/c", False),
    # [MQTT-4.7.2-1] "$" topics and leading wildcards.
    ("#", "$SYS/broker/uptime", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("+", "$SYS", False),
    ("a/+", "a/$x", True),
    ("a/#", "a/$x/b", True),
    ("$x", "$x", True),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), SPEC_TABLE)
def test_topic_matches_spec_table(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected
    assert reference_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), SPEC_TABLE)
def test_tree_match_spec_table(topic_filter: str, topic: str, expected: bool) -> None:
    tree: TopicTree[str, int] = TopicTree()
    tree.subscribe(topic_filter, "c", 1)
    tree.subscribe("unrelated/filter", "d", 0)
    assert tree.match(topic) == ([("c", topic_filter, 1)] if expected else [])


def test_shared_filter_matches_as_its_real_filter() -> None:
    assert topic_matches("$share/g/sport/+", "sport/tennis")
    assert not topic_matches("$share/g/#", "$SYS/x")
    assert topic_matches("$share/g/$SYS/#", "$SYS/x")


@pytest.mark.parametrize(
    "bad",
    ["", "a/#/b", "a#", "#a", "a/b#", "a+", "+a/b", "a/+b", "a\x00b", "$share/g", "$share/g/",
     "$share//a", "$share/g+/a", "$share/g#/a", "$share/g/a/#/b"],
)  # fmt: skip
def test_invalid_filters_are_rejected(bad: str) -> None:
    tree: TopicTree[str, int] = TopicTree()
    with pytest.raises(ProtocolError) as info:
        tree.subscribe(bad, "c", 0)
    assert info.value.reason_code == ReasonCode.TOPIC_FILTER_INVALID
    assert len(tree) == 0
    assert tree.count_nodes() == 0


@pytest.mark.parametrize("good", ["#", "+", "/", "//", "+/+/#", "$SYS/#", "$share/g/#", "a/$b"])
def test_valid_filters_are_accepted(good: str) -> None:
    check_topic_filter(good)


# -- bookkeeping -------------------------------------------------------------


def test_subscribe_replaces_and_reports_new() -> None:
    tree: TopicTree[str, int] = TopicTree()
    assert tree.subscribe("a/+", "c", 0) is True
    assert tree.subscribe("a/+", "c", 2) is False
    assert len(tree) == 1
    assert tree.match("a/b") == [("c", "a/+", 2)]
    assert tree.subscriptions_of("c") == {"a/+": 2}


def test_overlapping_filters_each_match() -> None:
    tree: TopicTree[str, int] = TopicTree()
    for f, qos in [("a/b", 0), ("a/+", 1), ("a/#", 2), ("#", 0), ("+/b", 1)]:
        tree.subscribe(f, "c", qos)
    tree.subscribe("a/b", "d", 1)
    got = sorted(tree.match("a/b"))
    assert got == sorted(
        [("c", "a/b", 0), ("c", "a/+", 1), ("c", "a/#", 2), ("c", "#", 0), ("c", "+/b", 1),
         ("d", "a/b", 1)]
    )  # fmt: skip
    assert len(tree) == 6
    assert tree.count_filters() == 5


def test_unsubscribe_prunes_nodes() -> None:
    tree: TopicTree[str, int] = TopicTree()
    tree.subscribe("a/b/c", "c", 0)
    tree.subscribe("a/b", "c", 0)
    tree.subscribe("a/b/c", "d", 0)
    assert tree.count_nodes() == 3
    assert tree.unsubscribe("a/b/c", "c") is True
    assert tree.unsubscribe("a/b/c", "c") is False
    assert tree.unsubscribe("x/y", "c") is False
    assert tree.count_nodes() == 3  # "d" still holds a/b/c
    assert tree.unsubscribe("a/b/c", "d") is True
    assert tree.count_nodes() == 2
    assert tree.unsubscribe("a/b", "c") is True
    assert tree.count_nodes() == 0
    assert len(tree) == 0
    assert tree.count_filters() == 0
    assert tree.subscribers() == []


def test_unsubscribe_all() -> None:
    tree: TopicTree[str, int] = TopicTree()
    for f in ["a", "a/#", "+/b", "$share/g/a", "$share/h/a"]:
        tree.subscribe(f, "c", 1)
    tree.subscribe("a", "d", 0)
    tree.subscribe("$share/g/a", "d", 0)
    assert len(tree) == 7
    assert tree.unsubscribe_all("c") == 5
    assert tree.unsubscribe_all("c") == 0
    assert tree.subscriptions_of("c") == {}
    assert len(tree) == 2
    assert sorted(tree.match("a")) == [("d", "$share/g/a", 0), ("d", "a", 0)]
    assert tree.unsubscribe_all("d") == 2
    assert tree.count_nodes() == 0
    assert tree.count_filters() == 0


def test_churn_does_not_grow_memory() -> None:
    tree: TopicTree[int, int] = TopicTree(cache_size=8)
    tree.subscribe("keep/#", -1, 0)
    baseline = tree.count_nodes()
    for i in range(500):
        tree.subscribe(f"dev/{i}/+/state", i, 0)
        tree.subscribe(f"$share/g{i % 3}/dev/{i}", i, 0)
        tree.match(f"dev/{i}/x/state")
        tree.unsubscribe_all(i)
    assert tree.count_nodes() == baseline
    assert len(tree) == 1
    assert tree.cache_info().size <= 8


def test_contains() -> None:
    tree: TopicTree[str, int] = TopicTree()
    tree.subscribe("a", "c", 0)
    assert ("a", "c") in tree
    assert ("a", "d") not in tree
    assert "a" not in tree


# -- shared subscriptions (MQTT 5.0 section 4.8.2) ---------------------------


def test_shared_group_round_robin_uses_cache() -> None:
    tree: TopicTree[str, int] = TopicTree()
    for member in ["m1", "m2", "m3"]:
        tree.subscribe("$share/g/s/+", member, 1)
    tree.subscribe("s/+", "plain", 0)
    picks = []
    for _ in range(6):
        got = tree.match("s/x")
        shared = [m for m, f, _ in got if f == "$share/g/s/+"]
        assert len(shared) == 1  # exactly one member per group per message
        assert ("plain", "s/+", 0) in got
        picks.append(shared[0])
    assert picks == ["m1", "m2", "m3", "m1", "m2", "m3"]
    info = tree.cache_info()
    assert (info.misses, info.hits) == (1, 5)


def test_shared_group_rotation_is_per_group_and_survives_removal() -> None:
    tree: TopicTree[str, int] = TopicTree()
    for member in ["a", "b", "c"]:
        tree.subscribe("$share/g/t", member, 0)
    tree.subscribe("$share/h/t", "z", 0)
    tree.subscribe("$share/h/t", "y", 0)
    first = tree.match("t")
    assert sorted(first) == [("a", "$share/g/t", 0), ("z", "$share/h/t", 0)]
    tree.unsubscribe("$share/g/t", "a")  # "b" was next, and still is
    got = [m for m, f, _ in tree.match("t") if f == "$share/g/t"]
    assert got == ["b"]
    tree.unsubscribe("$share/g/t", "c")
    assert [m for m, f, _ in tree.match("t") if f == "$share/g/t"] == ["b"]
    assert [m for m, f, _ in tree.match("t") if f == "$share/g/t"] == ["b"]


def test_shared_and_plain_subscriptions_of_one_subscriber_coexist() -> None:
    tree: TopicTree[str, int] = TopicTree()
    assert tree.subscribe("a/b", "c", 0)
    assert tree.subscribe("$share/g/a/b", "c", 1)
    assert not tree.subscribe("$share/g/a/b", "c", 2)
    assert tree.subscriptions_of("c") == {"a/b": 0, "$share/g/a/b": 2}
    assert sorted(tree.match("a/b")) == [("c", "$share/g/a/b", 2), ("c", "a/b", 0)]
    assert tree.count_filters() == 2


def test_shared_same_real_filter_different_groups_each_deliver() -> None:
    tree: TopicTree[str, int] = TopicTree()
    tree.subscribe("$share/g1/#", "a", 0)
    tree.subscribe("$share/g2/#", "b", 0)
    assert sorted(tree.match("x")) == [("a", "$share/g1/#", 0), ("b", "$share/g2/#", 0)]
    assert tree.match("$SYS/x") == []  # [MQTT-4.7.2-1] applies to shared filters too


# -- the match cache ---------------------------------------------------------


def test_cache_hits_and_invalidation() -> None:
    tree: TopicTree[str, int] = TopicTree()
    tree.subscribe("a/+", "c", 0)
    assert tree.match("a/b") == [("c", "a/+", 0)]
    assert tree.match("a/b") == [("c", "a/+", 0)]
    assert tree.cache_info()[:3] == (1, 1, 1)
    tree.subscribe("a/#", "d", 1)  # a cached topic must see the new filter
    assert sorted(tree.match("a/b")) == [("c", "a/+", 0), ("d", "a/#", 1)]
    tree.unsubscribe("a/+", "c")
    assert tree.match("a/b") == [("d", "a/#", 1)]
    tree.subscribe("a/#", "d", 2)  # a replaced value is seen too
    assert tree.match("a/b") == [("d", "a/#", 2)]
    tree.unsubscribe_all("d")
    assert tree.match("a/b") == []


def test_cached_result_is_not_shared_with_caller() -> None:
    tree: TopicTree[str, int] = TopicTree()
    tree.subscribe("a", "c", 0)
    tree.match("a").clear()
    assert tree.match("a") == [("c", "a", 0)]


def test_cache_is_bounded() -> None:
    tree: TopicTree[str, int] = TopicTree(cache_size=10)
    tree.subscribe("#", "c", 0)
    for i in range(1000):
        assert tree.match(f"t/{i}") == [("c", "#", 0)]
        assert tree.cache_info().size <= 10
    assert tree.cache_info().misses == 1000


def test_cache_disabled() -> None:
    tree: TopicTree[str, int] = TopicTree(cache_size=0)
    tree.subscribe("#", "c", 0)
    tree.match("a")
    tree.match("a")
    assert tree.cache_info() == (0, 2, 0, 0)


# -- property tests against the reference ------------------------------------

LEVELS = ["", "$x", "a", "b"]
topic_levels = st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4)
topics = topic_levels.map("/".join)


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from([*LEVELS, "+"]), min_size=0, max_size=4))
    if levels in ([], [""]) or draw(st.booleans()):
        levels.append("#")  # an empty filter is invalid [MQTT-4.7.3-1]
    return "/".join(levels)


@st.composite
def maybe_shared_filters(draw: st.DrawFn) -> str:
    f = draw(filters())
    group = draw(st.sampled_from([None, "g1", "g2"]))
    return f if group is None else f"$share/{group}/{f}"


@settings(deadline=None, max_examples=500)
@given(filters(), topics)
def test_topic_matches_agrees_with_reference(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) == reference_matches(topic_filter, topic)


SUBSCRIBERS = ["s1", "s2", "s3"]
ops = st.one_of(
    st.tuples(
        st.just("sub"), maybe_shared_filters(), st.sampled_from(SUBSCRIBERS), st.integers(0, 2)
    ),
    st.tuples(st.just("unsub"), maybe_shared_filters(), st.sampled_from(SUBSCRIBERS)),
    st.tuples(st.just("unsub_all"), st.sampled_from(SUBSCRIBERS)),
    st.tuples(st.just("match"), topics),
)


def split_share(f: str) -> tuple[str | None, str]:
    if f.startswith("$share/"):
        group, _, real = f[len("$share/") :].partition("/")
        return group, real
    return None, f


def check_match(tree: TopicTree[str, int], model: dict[tuple[str, str], int], topic: str) -> None:
    got = tree.match(topic)
    expected_plain = Counter(
        (s, f, v) for (s, f), v in model.items()
        if not f.startswith("$share/") and reference_matches(f, topic)
    )  # fmt: skip
    groups: dict[str, dict[str, int]] = {}
    for (s, f), v in model.items():
        group, real = split_share(f)
        if group is not None and reference_matches(real, topic):
            groups.setdefault(f, {})[s] = v
    got_plain = Counter(t for t in got if not t[1].startswith("$share/"))
    assert got_plain == expected_plain
    got_shared = [t for t in got if t[1].startswith("$share/")]
    assert sorted(f for _, f, _ in got_shared) == sorted(groups)  # one per group
    for s, f, v in got_shared:
        assert groups[f][s] == v


@settings(deadline=None, max_examples=300)
@given(st.lists(ops, max_size=40), st.sampled_from([0, 1, 3, 10_000]))
def test_tree_agrees_with_model(operations: list[tuple[Any, ...]], cache_size: int) -> None:
    tree: TopicTree[str, int] = TopicTree(cache_size=cache_size)
    model: dict[tuple[str, str], int] = {}
    for op in operations:
        if op[0] == "sub":
            _, f, s, v = op
            assert tree.subscribe(f, s, v) == ((s, f) not in model)
            model[(s, f)] = v
        elif op[0] == "unsub":
            _, f, s = op
            assert tree.unsubscribe(f, s) == ((s, f) in model)
            model.pop((s, f), None)
        elif op[0] == "unsub_all":
            _, s = op
            mine = [key for key in model if key[0] == s]
            assert tree.unsubscribe_all(s) == len(mine)
            for key in mine:
                del model[key]
        else:
            check_match(tree, model, op[1])
            check_match(tree, model, op[1])  # and again, likely from the cache
        assert len(tree) == len(model)
    for s in SUBSCRIBERS:
        assert tree.subscriptions_of(s) == {f: v for (s2, f), v in model.items() if s2 == s}
    for s in SUBSCRIBERS:
        tree.unsubscribe_all(s)
    assert tree.count_nodes() == 0
    assert tree.count_filters() == 0


@settings(deadline=None, max_examples=200)
@given(filters(), topics, st.integers(1, 8))
def test_every_matching_member_gets_its_turn(real: str, topic: str, members: int) -> None:
    """n members of one group get one message each over n matches (cached or not)."""
    tree: TopicTree[int, int] = TopicTree()
    shared = f"$share/grp/{real}"
    for i in range(members):
        tree.subscribe(shared, i, 0)
    picks = [m for _ in range(members) for m, f, _ in tree.match(topic) if f == shared]
    if reference_matches(real, topic):
        assert sorted(picks) == list(range(members))
    else:
        assert picks == []
