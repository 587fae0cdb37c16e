"""SUBSCRIBE and UNSUBSCRIBE from a client (sans-IO): each filter checked
(shared subscriptions by version, depth, the ACL), then sent to the
session's shard and kept until answered (frontend/session.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flockmq import envelopes as env
from flockmq.frontend.codec import ProtocolError, ReasonCode
from flockmq.frontend.codec.packets import Subscribe, Unsubscribe
from flockmq.hooks import SUBSCRIBE
from flockmq.mqtt.topics import SHARE_PREFIX, is_shared, split_topic_filter, topic_levels

from .hook_calls import authorize_topics

if TYPE_CHECKING:
    from .session import ClientSession

Kind = env.Kind


def handle_subscribe(session: ClientSession, packet: Subscribe) -> None:
    host = session.host
    decided = session.decided
    if decided is not None and decided[0] is packet:
        # The hook answered: the filters' own checks were made (and counted)
        # before it was asked.
        codes = list(decided[2])
    else:
        codes = _check_filters(session, packet)
    if host.hooks is not None and host.hooks.authorizes:
        _ask_hook(session, packet, codes)
    sub_id = packet.properties.get("subscription_identifier")
    entries = [
        env.SubEntry(
            sub.topic_filter,
            int(refused or sub.qos),
            sub.no_local,
            sub.retain_as_published,
            sub.retain_handling,
            sub_id,
        )
        for sub, refused in zip(packet.subscriptions, codes, strict=True)
    ]
    subscribe = env.Subscribe(
        Kind.SUBSCRIBE, session.conn_id, session.client_id, packet.packet_id, entries
    )
    session.forward_until_answered(packet.packet_id, subscribe)


def _check_filters(session: ClientSession, packet: Subscribe) -> list[int]:
    """Per filter: 0, or the code refusing it (this broker's limits, the ACL)."""
    host = session.host
    rules = session.acl_rules
    max_levels = host.config.max_topic_levels
    codes: list[int] = []
    for sub in packet.subscriptions:
        refused = refuse_filter(session, sub.topic_filter, max_levels)
        if not refused and rules is not None and not rules.can_subscribe(sub.topic_filter):
            # Only a filter no readable topic can match; what a granted one
            # matches is checked message by message on delivery.
            host.acl_denied(
                "acl_denied_subscriptions", session.client_id, "subscription to", sub.topic_filter
            )
            refused = ReasonCode.NOT_AUTHORIZED if session.level >= 5 else 0x80
        elif not refused and is_shared(sub.topic_filter) and sub.no_local:
            raise ProtocolError("[MQTT-3.8.3-4] no local on a shared subscription")
        codes.append(refused)
    return codes


def _ask_hook(session: ClientSession, packet: Subscribe, codes: list[int]) -> None:
    """The auth hook's authorize() for the filters not refused already
    (frontend/hook_calls.py): `codes` updated with its refusals (0x87, or
    0x80 when the hook failed; 0x80 before MQTT 5). WaitsForHook while the
    packet waits for the answer."""
    asked = [
        sub.topic_filter
        for sub, refused in zip(packet.subscriptions, codes, strict=True)
        if not refused
    ]
    if not asked:
        return
    decided = authorize_topics(session, packet, SUBSCRIBE, asked, codes)  # may raise WaitsForHook
    for i, sub in enumerate(packet.subscriptions):
        rc = 0 if codes[i] else decided.get(sub.topic_filter, 0)
        if rc:
            session.host.count("hook_denied_subscriptions")
            codes[i] = rc if session.level >= 5 else 0x80


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
