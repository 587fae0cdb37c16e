"""The broker's subscription index: topic filters of every session on every
shard, matched against topic names (MQTT 3.1.1 section 4.7, 5.0 sections 4.7
and 4.8). Sans-IO: plain objects, no sockets, no event loop.

Owns:
- `TopicTree`, a trie keyed by filter level holding ordinary and shared
  subscriptions, a per-subscriber index, and a bounded per-topic match cache.
- `subscribe` (checks the filter: for filters nobody checked yet) and
  `subscribe_valid` (the router's: its filters were checked at the edge, by
  the acceptor's codec or by a worker loading stored subscriptions).
What a filter is and what it matches is defined in flockmq/mqtt/topics.py
(`topic_matches`, re-exported here, is the definition `match` agrees with).

Invariants:
- Every trie node other than the root holds a subscription or has a child;
  empty nodes are pruned on unsubscribe, so memory does not grow with churn.
- `_by_subscriber[k][f]` exists exactly when subscriber `k` is subscribed to
  filter `f` (full filter string, `$share/...` included), so `len(self)` and
  `unsubscribe_all` never scan the trie.
- The match cache only ever holds results computed since the last change to
  the subscriptions; every subscribe/unsubscribe clears it. It holds only
  topics with at least one match, and is bounded in entries and in bytes.
- Shared groups are chosen round-robin on every `match`, cached or not: the
  cache stores the group objects, never the chosen member.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, NamedTuple, TypeVar

from flockmq.mqtt.topics import (
    is_dollar_topic,
    parse_topic_filter,
    split_topic_filter,
    topic_matches,
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# `check_topic_filter` and `topic_matches` are MQTT's rules, defined in
# flockmq/mqtt/topics.py; re-exported for the tests that check the tree with them.
check_topic_filter = parse_topic_filter
__all__ = ["TopicTree", "check_topic_filter", "topic_matches"]

DEFAULT_CACHE_SIZE = 10_000
DEFAULT_CACHE_BYTES = 8 * 1024 * 1024
_ENTRY_BYTES = 200  # a cache entry's own objects, estimated
_MATCH_BYTES = 80  # one (subscriber, filter, value) tuple in it, estimated


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    maxsize: int


class _SharedGroup(Generic[K, V]):
    """Members of one `$share/{group}/{filter}`, chosen from in turn."""

    __slots__ = ("cursor", "filter", "members", "order")

    def __init__(self, full_filter: str) -> None:
        self.filter = full_filter
        self.members: dict[K, V] = {}
        self.order: list[K] = []
        self.cursor = 0

    def add(self, subscriber: K, value: V) -> bool:
        new = subscriber not in self.members
        if new:
            self.order.append(subscriber)
        self.members[subscriber] = value
        return new

    def remove(self, subscriber: K) -> None:
        del self.members[subscriber]
        i = self.order.index(subscriber)
        del self.order[i]
        # Keep the rotation fair: whoever was next is still next.
        if i < self.cursor:
            self.cursor -= 1

    def pick(self) -> tuple[K, str, V]:
        # Each message goes to one member of the group (MQTT 5.0 section 4.8.2).
        order = self.order
        if self.cursor >= len(order):
            self.cursor = 0
        subscriber = order[self.cursor]
        self.cursor += 1
        return subscriber, self.filter, self.members[subscriber]


class _Node(Generic[K, V]):
    """One level of the trie. A node knows its own level only through its
    parent's `children` key; `filter` (the whole filter, for reporting a
    match) is set only on nodes where ordinary subscriptions end, so memory
    stays linear in the filters' length, not quadratic in their depth."""

    __slots__ = ("children", "filter", "shared", "subs")

    def __init__(self) -> None:
        self.filter = ""
        self.children: dict[str, _Node[K, V]] = {}
        self.subs: dict[K, V] = {}
        self.shared: dict[str, _SharedGroup[K, V]] = {}

    def is_empty(self) -> bool:
        return not (self.children or self.subs or self.shared)


# A cached match: the ordinary matches, and the shared groups to pick from.
_CacheEntry = tuple[list[tuple[K, str, V]], list[_SharedGroup[K, V]]]


class TopicTree(Generic[K, V]):
    """Subscriptions keyed by (subscriber, filter), each with an opaque value."""

    def __init__(
        self, cache_size: int = DEFAULT_CACHE_SIZE, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self._root: _Node[K, V] = _Node()
        self._by_subscriber: dict[K, dict[str, V]] = {}
        self._count = 0
        self._filters = 0
        self._cache: dict[str, _CacheEntry[K, V]] = {}
        self._cache_size = cache_size
        self._cache_budget = cache_bytes
        self._cache_bytes = 0  # estimated bytes held by _cache
        self._hits = 0
        self._misses = 0

    # -- changes ---------------------------------------------------------

    def subscribe(self, topic_filter: str, subscriber: K, value: V) -> bool:
        """`subscribe_valid` for a filter nobody checked yet: raise
        ProtocolError(TOPIC_FILTER_INVALID) for an invalid one, which leaves
        the tree unchanged."""
        parse_topic_filter(topic_filter)
        return self.subscribe_valid(topic_filter, subscriber, value)

    def subscribe_valid(self, topic_filter: str, subscriber: K, value: V) -> bool:
        """Add or replace `subscriber`'s subscription on `topic_filter`, a
        filter checked at the edge (not checked again: an invalid one is
        stored where it can match no valid topic name, or only the one it
        spells). True if it is new, False if it replaced one [MQTT-3.8.4-3]."""
        share_name, real = split_topic_filter(topic_filter)
        node = self._root
        for level in real.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if share_name is None:
            new = subscriber not in node.subs
            if not node.subs:
                self._filters += 1
                node.filter = topic_filter
            node.subs[subscriber] = value
        else:
            group = node.shared.get(share_name)
            if group is None:
                group = node.shared[share_name] = _SharedGroup(topic_filter)
                self._filters += 1
            new = group.add(subscriber, value)
        self._by_subscriber.setdefault(subscriber, {})[topic_filter] = value
        if new:
            self._count += 1
        self._clear_cache()
        return new

    def unsubscribe(self, topic_filter: str, subscriber: K) -> bool:
        """Remove one subscription; True if it existed. Prunes empty nodes."""
        mine = self._by_subscriber.get(subscriber)
        if mine is None or topic_filter not in mine:
            return False
        del mine[topic_filter]
        if not mine:
            del self._by_subscriber[subscriber]
        self._remove_from_trie(topic_filter, subscriber)
        self._count -= 1
        self._clear_cache()
        return True

    def has_subscriptions(self, subscriber: K) -> bool:
        return subscriber in self._by_subscriber

    def unsubscribe_all(self, subscriber: K) -> int:
        """Remove every subscription of `subscriber`; return how many."""
        mine = self._by_subscriber.pop(subscriber, None)
        if not mine:
            return 0
        for topic_filter in mine:
            self._remove_from_trie(topic_filter, subscriber)
        self._count -= len(mine)
        self._clear_cache()
        return len(mine)

    def _remove_from_trie(self, topic_filter: str, subscriber: K) -> None:
        share_name, real = split_topic_filter(topic_filter)
        path: list[tuple[_Node[K, V], str]] = []
        node = self._root
        for level in real.split("/"):
            path.append((node, level))
            node = node.children[level]
        if share_name is None:
            del node.subs[subscriber]
            if not node.subs:
                self._filters -= 1
                node.filter = ""
        else:
            group = node.shared[share_name]
            group.remove(subscriber)
            if not group.members:
                del node.shared[share_name]
                self._filters -= 1
        # Prune from the leaf up while nodes are empty.
        for parent, level in reversed(path):
            if not parent.children[level].is_empty():
                break
            del parent.children[level]

    # -- queries ---------------------------------------------------------

    def subscriptions_of(self, subscriber: K) -> dict[str, V]:
        """A copy of `subscriber`'s subscriptions: filter -> value."""
        return dict(self._by_subscriber.get(subscriber, {}))

    def subscribers(self) -> list[K]:
        return list(self._by_subscriber)

    def __len__(self) -> int:
        """Number of (subscriber, filter) subscriptions."""
        return self._count

    def __contains__(self, item: object) -> bool:
        """`(topic_filter, subscriber) in tree`."""
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        topic_filter, subscriber = item
        return topic_filter in self._by_subscriber.get(subscriber, {})

    def count_filters(self) -> int:
        """Distinct filters with at least one subscriber (each shared group counts once)."""
        return self._filters

    def count_nodes(self) -> int:
        """Trie nodes below the root: for memory metrics and pruning tests."""
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += len(node.children)
            stack.extend(node.children.values())
        return count

    def _clear_cache(self) -> None:
        if self._cache:
            self._cache.clear()
            self._cache_bytes = 0

    def cache_bytes(self) -> int:
        """Estimated bytes the match cache holds (bounded by `cache_bytes`)."""
        return self._cache_bytes

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, len(self._cache), self._cache_size)

    def match(self, topic: str) -> list[tuple[K, str, V]]:
        """Every (subscriber, filter, value) whose filter matches the topic name.

        A subscriber with overlapping filters appears once per matching filter;
        each matching shared group contributes exactly one member, in turn.
        The returned list is the caller's to keep.
        """
        entry = self._cache.get(topic)
        if entry is None:
            self._misses += 1
            entry = self._collect(topic)
            if self._cache_size > 0 and (entry[0] or entry[1]):
                # Bounded in entries and in bytes; a topic nobody subscribes
                # to is not cached, so publishing to many such topics (each
                # up to 64 KB long) costs nothing here.
                cost = _ENTRY_BYTES + len(topic) + _MATCH_BYTES * (len(entry[0]) + len(entry[1]))
                if (
                    len(self._cache) >= self._cache_size
                    or self._cache_bytes + cost > self._cache_budget
                ):
                    self._clear_cache()
                if cost <= self._cache_budget:
                    self._cache[topic] = entry
                    self._cache_bytes += cost
        else:
            self._hits += 1
        plain, groups = entry
        if not groups:
            return plain.copy()
        result = plain.copy()
        for group in groups:
            result.append(group.pick())
        return result

    def _collect(self, topic: str) -> _CacheEntry[K, V]:
        plain: list[tuple[K, str, V]] = []
        groups: list[_SharedGroup[K, V]] = []
        levels = topic.split("/")
        current = [self._root]
        # [MQTT-4.7.2-1] filters starting with "#" or "+" do not match "$..." topics.
        skip_wildcards = is_dollar_topic(topic)
        for level in levels:
            following: list[_Node[K, V]] = []
            for node in current:
                children = node.children
                if not children:
                    continue
                if not skip_wildcards:
                    # "#" matches this level and everything below [MQTT-4.7.1-1].
                    multi = children.get("#")
                    if multi is not None:
                        _collect_node(multi, plain, groups)
                    # "+" matches exactly one level, empty included [MQTT-4.7.1-2].
                    single = children.get("+")
                    if single is not None:
                        following.append(single)
                exact = children.get(level)
                if exact is not None:
                    following.append(exact)
            if not following:
                return plain, groups
            current = following
            skip_wildcards = False
        for node in current:
            _collect_node(node, plain, groups)
            # "a/#" also matches "a": "#" includes the parent level [MQTT-4.7.1-1].
            multi = node.children.get("#")
            if multi is not None:
                _collect_node(multi, plain, groups)
        return plain, groups


def _collect_node(
    node: _Node[K, V], plain: list[tuple[K, str, V]], groups: list[_SharedGroup[K, V]]
) -> None:
    if node.subs:
        topic_filter = node.filter
        plain.extend([(k, topic_filter, v) for k, v in node.subs.items()])
    if node.shared:
        groups.extend(node.shared.values())
