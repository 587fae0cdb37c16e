"""Topic aliases a client sets on its PUBLISHes (MQTT 5 section 3.3.2.3.4).

Owns one connection's alias -> topic map. Invariant: it holds at most
TOPIC_ALIAS_MAXIMUM entries (told in the CONNACK), so what a client can make
the broker keep per connection is bounded (by the maximum packet size each).
"""

from __future__ import annotations

from flockmq.frontend.codec import ProtocolError, ReasonCode

# Told in the CONNACK: what a client may make us keep per connection is at
# most this many topics of up to 64 KB (Mosquitto's default max_topic_alias).
TOPIC_ALIAS_MAXIMUM = 10


class TopicAliases:
    __slots__ = ("topics",)

    def __init__(self) -> None:
        self.topics: dict[int, str] = {}

    def resolve(self, alias: int, topic: str) -> str:
        """The topic of a PUBLISH carrying `alias`: a non-empty `topic` sets
        the alias, an empty one uses what it was set to."""
        if not 0 < alias <= TOPIC_ALIAS_MAXIMUM:
            raise ProtocolError(
                f"[MQTT-3.3.2-9] topic alias {alias} out of range", ReasonCode.TOPIC_ALIAS_INVALID
            )
        if topic:
            self.topics[alias] = topic
            return topic
        known = self.topics.get(alias)
        if known is None:
            # MQTT 5 section 3.3.2.3.4: an alias the receiver has no mapping
            # for, with an empty topic name, is a Protocol Error
            raise ProtocolError(f"unknown topic alias {alias} (MQTT 5 section 3.3.2.3.4)")
        return known
