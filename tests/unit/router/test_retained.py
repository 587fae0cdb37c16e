"""RetainedStore: last message per topic, deletes, pruning, byte accounting,
and filter matching checked by the spec table and by hypothesis against the
regex reference matcher."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flockmq.router.retained import RetainedStore

from .test_topic_tree import SPEC_TABLE, filters, reference_matches, topics


def test_set_get_replace_delete() -> None:
    store: RetainedStore[bytes] = RetainedStore()
    store.set("a/b", b"1")
    store.set("a/b", b"2")
    assert store.get("a/b") == b"2"
    assert len(store) == 1
    assert "a/b" in store
    store.set("a/b", None)
    assert store.get("a/b") is None
    assert len(store) == 0
    store.set("a/b", None)  # deleting nothing is fine
    assert store.count_nodes() == 0


def test_delete_prunes_only_empty_nodes() -> None:
    store: RetainedStore[bytes] = RetainedStore()
    store.set("a/b/c", b"x")
    store.set("a", b"y")
    assert store.count_nodes() == 3
    store.set("a/b/c", None)
    assert store.count_nodes() == 1
    assert store.match("a/#") == [("a", b"y")]
    store.set("a", None)
    assert store.count_nodes() == 0


def test_items_and_clear() -> None:
    store: RetainedStore[bytes] = RetainedStore()
    data = {"a": b"1", "$SYS/x": b"2", "/": b"3"}
    for topic, message in data.items():
        store.set(topic, message)
    assert dict(store.items()) == data
    store.clear()
    assert len(store) == 0
    assert list(store.items()) == []
    assert store.match("#") == []
    assert store.count_nodes() == 0


def test_total_bytes() -> None:
    store: RetainedStore[bytes] = RetainedStore(sizeof=lambda _t, m: len(m))
    store.set("a", b"12345")
    store.set("b", b"12")
    assert store.total_bytes == 7
    store.set("a", b"1")
    assert store.total_bytes == 3
    store.set("b", None)
    assert store.total_bytes == 1
    store.clear()
    assert store.total_bytes == 0


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), SPEC_TABLE)
def test_match_spec_table(topic_filter: str, topic: str, expected: bool) -> None:
    store: RetainedStore[str] = RetainedStore()
    store.set(topic, "m")
    store.set("$zz/unrelated/x/y/z", "n")  # matched by no table filter
    assert store.match(topic_filter) == ([(topic, "m")] if expected else [])


def test_match_dollar_topics() -> None:
    store: RetainedStore[int] = RetainedStore()
    for i, topic in enumerate(["$SYS/a", "$SYS", "a", "a/b", "/a"]):
        store.set(topic, i)
    assert sorted(store.match("#")) == [("/a", 4), ("a", 2), ("a/b", 3)]
    assert sorted(store.match("+")) == [("a", 2)]
    assert sorted(store.match("$SYS/#")) == [("$SYS", 1), ("$SYS/a", 0)]
    assert sorted(store.match("a/#")) == [("a", 2), ("a/b", 3)]


def test_shared_subscriptions_get_no_retained_messages() -> None:
    # MQTT 5.0 section 4.8.2: retained messages are not sent to a new shared subscription.
    store: RetainedStore[int] = RetainedStore()
    store.set("a", 1)
    assert store.match("$share/g/a") == []
    assert store.match("$share/g/#") == []


@settings(deadline=None, max_examples=300)
@given(
    st.lists(st.tuples(topics, st.one_of(st.none(), st.integers(0, 9))), max_size=30),
    st.lists(filters(), min_size=1, max_size=5),
)
def test_match_agrees_with_reference(
    writes: list[tuple[str, int | None]], topic_filters: list[str]
) -> None:
    store: RetainedStore[int] = RetainedStore(sizeof=lambda _t, m: m)
    model: dict[str, int] = {}
    for topic, message in writes:
        store.set(topic, message)
        if message is None:
            model.pop(topic, None)
        else:
            model[topic] = message
        assert len(store) == len(model)
        assert store.total_bytes == sum(model.values())
    assert dict(store.items()) == model
    for f in topic_filters:
        expected = sorted((t, m) for t, m in model.items() if reference_matches(f, t))
        assert sorted(store.match(f)) == expected
    for topic in list(model):
        store.set(topic, None)
    assert store.count_nodes() == 0
