"""Memory a client's topics and filters can make the router and the codec
hold (issue 9 items 2 and 7): the trie is linear in a filter's depth (before:
every node stored its whole prefix, quadratic), and the match cache, the
router's plan cache and the codec's topic cache stay within their byte
bounds and hold no topic without subscribers (before: bounded in entries
only, 16,000 topics of 64 KB grew the router by 1 GB)."""

from __future__ import annotations

import tracemalloc

from flockmq.frontend.codec import Publish, decode, encode
from flockmq.frontend.codec import body_parsers as codec_cache
from flockmq.router.router import MAX_PLANS_BYTES, Router
from flockmq.router.topic_tree import TopicTree
from tests.unit.router.test_router import route, sub

LONG = "x" * (64 * 1024 - 16)


def long_topic(i: int) -> str:
    return f"{i:08d}/{LONG}"


def trie_bytes(levels: int) -> int:
    """Bytes allocated by subscribing one filter of `levels` 32-byte levels."""
    topic_filter = "/".join(f"{i:032d}" for i in range(levels))
    tree: TopicTree[str, int] = TopicTree()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tree.subscribe(topic_filter, "deep", 1)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_trie_memory_is_linear_in_filter_depth() -> None:
    small, large = trie_bytes(200), trie_bytes(400)
    assert 1.5 < large / small < 2.5, f"200 levels: {small} B, 400 levels: {large} B"


def test_match_cache_holds_no_topic_without_subscribers() -> None:
    tree: TopicTree[str, int] = TopicTree()
    tree.subscribe("other/#", "alice", 1)
    for i in range(100):
        assert tree.match(long_topic(i)) == []
    assert tree.cache_info().size == 0
    assert tree.cache_bytes() == 0


def test_match_cache_stays_within_its_byte_bound() -> None:
    budget = 1024 * 1024
    tree: TopicTree[str, int] = TopicTree(cache_bytes=budget)
    tree.subscribe("#", "alice", 1)
    for i in range(100):  # 6.4 MB of topics, each matched
        assert [m[0] for m in tree.match(long_topic(i))] == ["alice"]
        assert tree.cache_bytes() <= budget
        assert tree.cache_info().size * len(LONG) <= budget
    assert tree.cache_info().size > 0  # it still caches what it can


def test_router_plan_cache_holds_no_topic_without_subscribers() -> None:
    router = Router()
    sub(router, 0, "alice", ("other/#", 0))
    for i in range(100):
        route(router, long_topic(i), qos=0)
    assert router.plans == {}
    assert router.tree.cache_info().size == 0


def test_router_plan_cache_stays_within_its_byte_bound() -> None:
    router = Router()
    sub(router, 0, "alice", ("#", 0))
    topics = MAX_PLANS_BYTES // len(LONG) + 50
    for i in range(topics):
        route(router, long_topic(i), qos=0)
        assert sum(len(topic) for topic, _ in router.plans) <= MAX_PLANS_BYTES
    assert router.plans  # it still caches what it can


def test_codec_topic_cache_keeps_long_topics_out() -> None:
    codec_cache.topic_cache.clear()
    for i in range(300):  # 19 MB of distinct topic names
        packet = decode(encode(Publish(long_topic(i), b"p", 0), 4), 4)
        assert isinstance(packet, Publish) and packet.topic == long_topic(i)
    held = sum(len(raw) for raw in codec_cache.topic_cache)
    assert held <= 4096 * 256, f"the codec's topic cache holds {held} bytes"
    decode(encode(Publish("short/topic", b"p", 0), 4), 4)
    assert b"short/topic" in codec_cache.topic_cache  # short ones are still cached
