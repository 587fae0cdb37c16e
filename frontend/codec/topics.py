"""Packet-level syntax of topic names and topic filters (MQTT 5.0 section 4.7,
shared subscriptions 4.8.2). Only what can be checked from the string alone;
what a topic means (matching, $-topics, aliases) belongs to the router and the
connection. Every violation raises ProtocolError citing the rule.
"""

from __future__ import annotations

from .errors import ProtocolError

SHARE_PREFIX = "$share/"


def validate_topic_name(topic: str) -> None:
    if not topic:
        raise ProtocolError("[MQTT-4.7.3-1] topic name is empty")
    if "+" in topic or "#" in topic:
        raise ProtocolError("[MQTT-3.3.2-2] topic name contains a wildcard")


def validate_topic_filter(topic_filter: str, protocol_level: int) -> bool:
    """Check a SUBSCRIBE/UNSUBSCRIBE topic filter; return True when it is a
    shared subscription (only recognised at level 5: below it `$share/...` is
    an ordinary filter)."""
    shared = protocol_level == 5 and topic_filter.startswith(SHARE_PREFIX)
    if shared:
        share_name, sep, topic_filter = topic_filter[len(SHARE_PREFIX) :].partition("/")
        if not share_name:
            raise ProtocolError("[MQTT-4.8.2-1] shared subscription has an empty ShareName")
        if "+" in share_name or "#" in share_name:
            raise ProtocolError("[MQTT-4.8.2-2] ShareName contains a wildcard")
        if not sep or not topic_filter:
            raise ProtocolError("[MQTT-4.8.2-2] shared subscription has no topic filter")
    if not topic_filter:
        raise ProtocolError("[MQTT-4.7.3-1] topic filter is empty")
    if "+" in topic_filter or "#" in topic_filter:
        _validate_wildcards(topic_filter)
    return shared


def _validate_wildcards(topic_filter: str) -> None:
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise ProtocolError(
                "[MQTT-4.7.1-1] '#' must be the last character and occupy a whole level"
            )
        if "+" in level and level != "+":
            raise ProtocolError("[MQTT-4.7.1-2] '+' must occupy an entire level")
