"""SUBSCRIBE and UNSUBSCRIBE from a client (sans-IO): each filter checked
(shared subscriptions by version, depth, the ACL), then sent to the
session's shard and kept until answered (frontend/session.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flockmq import envelopes as env
from flockmq.frontend.codec import ProtocolError, ReasonCode
from flockmq.frontend.codec.packets import Subscribe, Unsubscribe
from flockmq.mqtt.topics import SHARE_PREFIX, is_shared, split_topic_filter, topic_levels

if TYPE_CHECKING:
    from .session import ClientSession

Kind = env.Kind


def handle_subscribe(session: ClientSession, packet: Subscribe) -> None:
    host = session.host
    rules = session.acl_rules
    sub_id = packet.properties.get("subscription_identifier")
    entries: list[env.SubEntry] = []
    max_levels = host.config.max_topic_levels
    for sub in packet.subscriptions:
        qos = sub.qos
        refused = refuse_filter(session, sub.topic_filter, max_levels)
        if refused:
            qos = refused
        elif rules is not None and not rules.can_subscribe(sub.topic_filter):
            # Only a filter no readable topic can match; what a granted one
            # matches is checked message by message on delivery.
            host.acl_denied(
                "acl_denied_subscriptions", session.client_id, "subscription to", sub.topic_filter
            )
            qos = ReasonCode.NOT_AUTHORIZED if session.level >= 5 else 0x80
        elif is_shared(sub.topic_filter) and sub.no_local:
            raise ProtocolError("[MQTT-3.8.3-4] no local on a shared subscription")
        entries.append(
            env.SubEntry(
                sub.topic_filter,
                int(qos),
                sub.no_local,
                sub.retain_as_published,
                sub.retain_handling,
                sub_id,
            )
        )
    subscribe = env.Subscribe(
        Kind.SUBSCRIBE, session.conn_id, session.client_id, packet.packet_id, entries
    )
    session.forward_until_answered(packet.packet_id, subscribe)


def handle_unsubscribe(session: ClientSession, packet: Unsubscribe) -> None:
    session.forward_until_answered(
        packet.packet_id,
        env.Unsubscribe(
            Kind.UNSUBSCRIBE,
            session.conn_id,
            session.client_id,
            packet.packet_id,
            list(packet.topic_filters),
        ),
    )


def refuse_filter(session: ClientSession, topic_filter: str, max_levels: int) -> int:
    """The SUBACK code refusing a filter this broker does not take, or 0.
    MQTT 3.1/3.1.1 have no shared subscriptions: `$share/...` is refused
    (0x80) rather than taken as an ordinary filter nothing can publish
    to. A filter deeper than `max_topic_levels` is refused (v5: 0x8F)."""
    level = session.level
    if level < 5 and topic_filter.startswith(SHARE_PREFIX):
        session.host.count("shared_subscriptions_refused")
        return 0x80
    if topic_levels(topic_filter) > max_levels + (2 if level >= 5 else 0):
        # (+2: `$share/{group}/` before a v5 shared filter's own levels)
        real = split_topic_filter(topic_filter).filter  # validated by the codec
        if topic_levels(real) > max_levels:
            session.host.count("topics_too_deep")
            return ReasonCode.TOPIC_FILTER_INVALID if level >= 5 else 0x80
    return 0
