"""The retained-message store: the last retained message per topic name
(MQTT 3.1.1 section 3.3.1.3, 5.0 section 3.3.1.3). Sans-IO: plain objects;
persistence and reload go through `items()` and `set()`.

Owns `RetainedStore`: a dict topic -> message for `get`/`set`, and a trie of
topic levels so a subscribe with a literal prefix (`a/b/+`) visits only that
branch instead of every retained topic.

Invariants:
- A topic is in the trie exactly when it has a message in `_messages`, and
  every trie node other than the root leads to at least one retained topic
  (empty nodes are pruned on delete).
- `total_bytes` is the sum of `sizeof(topic, m)` over stored messages (0
  without a `sizeof`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from flockmq.mqtt.topics import is_dollar_topic, is_shared

M = TypeVar("M")


class _Node:
    __slots__ = ("children", "topic")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        # The topic name stored here, or None if no message ends at this node.
        self.topic: str | None = None


class RetainedStore(Generic[M]):
    """Last retained message per topic, matched by topic filter."""

    def __init__(self, sizeof: Callable[[str, M], int] | None = None) -> None:
        self._messages: dict[str, M] = {}
        self._root = _Node()
        self._sizeof = sizeof
        self.total_bytes = 0

    def set(self, topic: str, message: M | None) -> None:
        """Store or replace the retained message of `topic`; None deletes it
        (a retained PUBLISH with an empty payload [MQTT-3.3.1-10])."""
        if message is None:
            self._delete(topic)
            return
        old = self._messages.get(topic)
        if old is None:
            node = self._root
            for level in topic.split("/"):
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _Node()
                node = child
            node.topic = topic
        elif self._sizeof is not None:
            self.total_bytes -= self._sizeof(topic, old)
        if self._sizeof is not None:
            self.total_bytes += self._sizeof(topic, message)
        self._messages[topic] = message

    def _delete(self, topic: str) -> None:
        old = self._messages.pop(topic, None)
        if old is None:
            return
        if self._sizeof is not None:
            self.total_bytes -= self._sizeof(topic, old)
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in topic.split("/"):
            path.append((node, level))
            node = node.children[level]
        node.topic = None
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.children or child.topic is not None:
                break
            del parent.children[level]

    def get(self, topic: str) -> M | None:
        return self._messages.get(topic)

    def __len__(self) -> int:
        return len(self._messages)

    def __contains__(self, topic: object) -> bool:
        return topic in self._messages

    def items(self) -> Iterator[tuple[str, M]]:
        """(topic, message) pairs, for persistence. Do not `set` while iterating."""
        return iter(self._messages.items())

    def clear(self) -> None:
        self._messages.clear()
        self._root = _Node()
        self.total_bytes = 0

    def count_nodes(self) -> int:
        """Trie nodes below the root: for memory metrics and pruning tests."""
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += len(node.children)
            stack.extend(node.children.values())
        return count

    def match(self, topic_filter: str) -> list[tuple[str, M]]:
        """Every retained (topic, message) whose topic matches `topic_filter`.

        A shared subscription gets no retained messages (MQTT 5.0 section 4.8.2:
        "retained messages are not sent to the session when it establishes a
        new Shared Subscription"), so a `$share/...` filter matches nothing.
        """
        if is_shared(topic_filter):
            return []
        found: list[str] = []
        current = [self._root]
        at_root = True
        for level in topic_filter.split("/"):
            if level == "#":
                # "#" matches the parent level and every level below [MQTT-4.7.1-1].
                for node in current:
                    if not at_root and node.topic is not None:
                        found.append(node.topic)
                    _collect_below(node, found, skip_dollar=at_root)
                current = []
                break
            following: list[_Node] = []
            for node in current:
                if level == "+":
                    # "+" matches any one level [MQTT-4.7.1-2]; at the first
                    # level, none starting with "$" [MQTT-4.7.2-1].
                    following.extend(
                        child
                        for name, child in node.children.items()
                        if not (at_root and is_dollar_topic(name))
                    )
                else:
                    child = node.children.get(level)
                    if child is not None:
                        following.append(child)
            current = following
            at_root = False
            if not current:
                break
        found.extend(node.topic for node in current if node.topic is not None)
        messages = self._messages
        return [(topic, messages[topic]) for topic in found]


def _collect_below(node: _Node, found: list[str], skip_dollar: bool) -> None:
    """Append every topic strictly below `node`; at the root skip "$..." levels
    [MQTT-4.7.2-1]."""
    stack = [
        child
        for name, child in node.children.items()
        if not (skip_dollar and is_dollar_topic(name))
    ]
    while stack:
        child = stack.pop()
        if child.topic is not None:
            found.append(child.topic)
        stack.extend(child.children.values())
