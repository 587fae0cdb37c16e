"""What a topic name and a topic filter are, and which names a filter matches
(MQTT 5.0 sections 4.7 and 4.8.2): the one definition of these rules that
every part of the broker uses. Rules are cited by their MQTT 5.0 numbers
(3.1.1 numbers section 4.7 differently: its 4.7.1-2 is our 4.7.1-1).

The rules, and where each one is:
- [MQTT-4.7.1-1] `#` stands alone as the last level of a filter; it matches
  its parent level and every level below (section 4.7.1.2).
  `check_wildcards`, `topic_matches`.
- [MQTT-4.7.1-2] `+` occupies a whole level; it matches exactly one level,
  the empty one included (section 4.7.1.3). `check_wildcards`, `topic_matches`.
- [MQTT-4.7.2-1] a filter whose first level is a wildcard matches no topic
  name that starts with `$`. `is_dollar_topic`, `topic_matches`.
- [MQTT-4.7.3-1] names and filters are not empty; [MQTT-4.7.3-2] filters do
  not hold U+0000 (the codec's UTF-8 check refuses it in names, [MQTT-1.5.4-2]).
  `validate_topic_name`, `parse_topic_filter`.
- [MQTT-3.3.2-2] a topic name holds no wildcard. `validate_topic_name`.
- [MQTT-4.8.2-1], [MQTT-4.8.2-2] `$share/{ShareName}/{filter}`: a ShareName
  of at least one character without `+`, `#` or `/`, then `/` and a filter.
  Only MQTT 5 has shared subscriptions: below it `$share/...` is an ordinary
  filter (the codec accepts it, the acceptor refuses it with SUBACK 0x80).
  `parse_topic_filter`, `split_topic_filter`, `is_shared`.

Two kinds of callers, two kinds of functions:
- At the edge, where input comes from outside (the codec decoding a packet,
  the ACL file, a worker loading stored subscriptions), the `validate_*`,
  `parse_topic_filter` and `check_wildcards` functions check and raise
  ProtocolError citing the rule.
- Past the edge (the router's topic tree and retained store, the ACL's
  compiled rules) filters are already valid: `split_topic_filter`,
  `is_shared`, `is_dollar_topic` and `topic_matches` only read them, never
  check them again. Given an invalid filter they return something wrong but
  never raise, so a bad envelope cannot crash a role.

The router's trie (router/topic_tree.py) and the retained store's
(router/retained.py) walk their own structures for speed; they apply these
rules through `split_topic_filter`, `is_shared` and `is_dollar_topic`, and
`topic_matches` here is the definition their tests compare them with.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import ProtocolError
from .reason_codes import ReasonCode

SHARE_PREFIX = "$share/"
# The broker's own topics: a convention the spec mentions (MQTT 5.0 section
# 4.7.2), not a rule; [MQTT-4.7.2-1] keeps them out of `#` and `+/...`.
SYS_PREFIX = "$SYS/"


class TopicFilter(NamedTuple):
    """A parsed subscription filter: `share_name` is the group of a shared
    subscription (None for an ordinary one); `filter` is what is matched
    against topic names (the part after `$share/{group}/`)."""

    share_name: str | None
    filter: str


# -- at the edge: checks of input from outside ------------------------------


def validate_topic_name(topic: str) -> None:
    """A PUBLISH's (or a will's, a Response Topic's) topic name."""
    if not topic:
        raise ProtocolError("[MQTT-4.7.3-1] topic name is empty")
    if "+" in topic or "#" in topic:
        raise ProtocolError("[MQTT-3.3.2-2] topic name contains a wildcard")


def topic_levels(topic: str) -> int:
    """Levels of a topic name or filter (`a/b` has 2, `/` has 2, `a` has 1)."""
    return topic.count("/") + 1


def parse_topic_filter(topic_filter: str, protocol_level: int = 5) -> TopicFilter:
    """Check a topic filter and split a shared one; raise
    ProtocolError(TOPIC_FILTER_INVALID) citing the rule it breaks.

    `$share/` starts a shared subscription only at protocol level 5; below
    it the filter is ordinary."""
    parsed = TopicFilter(None, topic_filter)
    if protocol_level >= 5 and topic_filter.startswith(SHARE_PREFIX):
        parsed = _parse_shared(topic_filter)
    real = parsed.filter
    if not real:
        raise _invalid("[MQTT-4.7.3-1] topic filter is empty")
    if "\x00" in real:
        raise _invalid("[MQTT-4.7.3-2] topic filter contains U+0000")
    check_wildcards(real, topic_filter)
    return parsed


def _parse_shared(topic_filter: str) -> TopicFilter:
    share_name, sep, real = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not share_name:
        raise _invalid(f"[MQTT-4.8.2-1] shared subscription {topic_filter!r} has no ShareName")
    if "+" in share_name or "#" in share_name:
        raise _invalid(f"[MQTT-4.8.2-2] ShareName of {topic_filter!r} contains a wildcard")
    if not sep or not real:
        raise _invalid(f"[MQTT-4.8.2-2] shared subscription {topic_filter!r} has no filter")
    return TopicFilter(share_name, real)


def check_wildcards(topic_filter: str, quoted: str | None = None) -> None:
    """Raise ProtocolError(TOPIC_FILTER_INVALID) unless every `#` and `+` of
    `topic_filter` stands where [MQTT-4.7.1-1] and [MQTT-4.7.1-2] allow.
    `quoted` is the filter the message names (the whole `$share/...` one)."""
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    shown = topic_filter if quoted is None else quoted
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise _invalid(
                f"[MQTT-4.7.1-1] '#' must be the last character and occupy a whole level: {shown!r}"
            )
        if "+" in level and level != "+":
            raise _invalid(f"[MQTT-4.7.1-2] '+' must occupy an entire level: {shown!r}")


def validate_topic_filter(topic_filter: str, protocol_level: int) -> bool:
    """The codec's check of a SUBSCRIBE/UNSUBSCRIBE filter: True when it is a
    shared subscription. A filter that breaks the syntax makes the packet a
    protocol error (DISCONNECT 0x82), not a refused subscription."""
    try:
        return parse_topic_filter(topic_filter, protocol_level).share_name is not None
    except ProtocolError as exc:
        raise ProtocolError(str(exc)) from None


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(message, ReasonCode.TOPIC_FILTER_INVALID)


# -- past the edge: reading filters that are already valid ------------------


def is_shared(topic_filter: str) -> bool:
    """A shared subscription's filter (one that reached the router or the
    ACL is MQTT 5's: a 3.1.1 `$share/...` is refused at the edge)."""
    return topic_filter.startswith(SHARE_PREFIX)


def split_topic_filter(topic_filter: str) -> TopicFilter:
    """`$share/{group}/{filter}` -> TopicFilter(group, filter), any other
    filter -> TopicFilter(None, filter). No check: for filters validated at
    the edge (an invalid one gives a wrong split, never an exception)."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return TopicFilter(None, topic_filter)
    share_name, _, real = topic_filter[len(SHARE_PREFIX) :].partition("/")
    return TopicFilter(share_name, real)


def is_sys_topic(topic: str) -> bool:
    """The broker's own statistics tree, `$SYS` and below (clients may read
    it, not publish to it)."""
    return topic == SYS_PREFIX[:-1] or topic.startswith(SYS_PREFIX)


def is_dollar_topic(topic: str) -> bool:
    """A topic name (or first level) starting with `$`: a filter whose first
    level is a wildcard does not match it [MQTT-4.7.2-1]."""
    return topic[:1] == "$"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if the topic name `topic` matches the valid filter `topic_filter`
    (a `$share/{group}/{f}` filter matches as `f`): the definition of
    matching, for one-off checks. The trie walks of router/ agree with it."""
    flevels = split_topic_filter(topic_filter).filter.split("/")
    tlevels = topic.split("/")
    if is_dollar_topic(topic) and flevels[0] in ("#", "+"):
        return False  # [MQTT-4.7.2-1]
    ntopic = len(tlevels)
    for i, flevel in enumerate(flevels):
        if flevel == "#":
            return True  # its parent level and every level below [MQTT-4.7.1-1]
        if i >= ntopic:
            return False
        if flevel != "+" and flevel != tlevels[i]:  # "+": any one level [MQTT-4.7.1-2]
            return False
    return len(flevels) == ntopic
