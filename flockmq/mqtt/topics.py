"""What a topic name and a topic filter are (MQTT 5.0 section 4.7, shared
subscriptions 4.8.2; 3.1.1 section 4.7): the one definition every part of the
broker uses — the codec when it decodes SUBSCRIBE/UNSUBSCRIBE, the acceptor
when it applies its limits, the router's topic tree and retained store, the
ACL, and a worker loading stored subscriptions. Only what can be checked from
the string alone; what a topic means (matching, aliases) is decided elsewhere.

Shared subscriptions exist only in MQTT 5. Below it a `$share/...` filter is
syntactically an ordinary filter (the codec accepts it) and the acceptor
refuses it with SUBACK 0x80, so every `$share/` filter that reaches a worker or
the router is a valid MQTT 5 shared filter: `parse_topic_filter` is the rule
they all apply.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import ProtocolError
from .reason_codes import ReasonCode

SHARE_PREFIX = "$share/"


class TopicFilter(NamedTuple):
    """A parsed subscription filter: `share_name` is the group of a shared
    subscription (None for an ordinary one); `filter` is what is matched
    against topic names (the part after `$share/{group}/`)."""

    share_name: str | None
    filter: str


def validate_topic_name(topic: str) -> None:
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
    share_name: str | None = None
    real = topic_filter
    if protocol_level >= 5 and topic_filter.startswith(SHARE_PREFIX):
        share_name, sep, real = topic_filter[len(SHARE_PREFIX) :].partition("/")
        if not share_name:
            raise _invalid(f"[MQTT-4.8.2-1] shared subscription {topic_filter!r} has no ShareName")
        if "+" in share_name or "#" in share_name:
            raise _invalid(f"[MQTT-4.8.2-2] ShareName of {topic_filter!r} contains a wildcard")
        if not sep or not real:
            raise _invalid(f"[MQTT-4.8.2-2] shared subscription {topic_filter!r} has no filter")
    if not real:
        raise _invalid("[MQTT-4.7.3-1] topic filter is empty")
    if "\x00" in real:
        raise _invalid("[MQTT-4.7.3-2] topic filter contains U+0000")
    if "+" in real or "#" in real:
        levels = real.split("/")
        last = len(levels) - 1
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != last):
                raise _invalid(
                    f"[MQTT-4.7.1-1] '#' must be the last character and occupy a whole "
                    f"level: {topic_filter!r}"
                )
            if "+" in level and level != "+":
                raise _invalid(f"[MQTT-4.7.1-2] '+' must occupy an entire level: {topic_filter!r}")
    return TopicFilter(share_name, real)


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
