"""A PUBLISH from a client (sans-IO): topic alias, topic depth, ACL, and
where it goes. QoS 0 and 1 need no session state on the way in: straight to
the router (ROUTE). QoS 2 goes to the session's shard, which holds packet
ids until PUBREL for exactly-once. QoS 1/2 are acknowledged once confirmed
durable (frontend/confirmations.py).

This is the hottest inbound path: envelopes are typed plain tuples (see
flockmq/envelopes.py) and the kinds are bound once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from flockmq import envelopes as env
from flockmq.frontend.acl import WRITE
from flockmq.frontend.codec import ProtocolError, Publish, ReasonCode, encode_ack
from flockmq.hooks import PUBLISH
from flockmq.mqtt.topics import is_sys_topic, topic_levels
from flockmq.sizes import message_size

from .confirmations import PUBACK, PUBREC
from .hook_calls import authorize_topics
from .states import CONNECTED, CONNECTING
from .topic_aliases import TopicAliases

if TYPE_CHECKING:
    from .session import ClientSession

_ROUTE: Final = env.Kind.ROUTE
_PUBLISH: Final = env.Kind.PUBLISH


def handle_publish(session: ClientSession, packet: Publish) -> None:
    if session.state not in (CONNECTED, CONNECTING):
        raise ProtocolError("[MQTT-3.1.0-1] the first packet must be CONNECT")
    topic = packet.topic
    props: dict[str, Any] | None = None  # None when empty, as on the wire
    if packet.properties:
        if "subscription_identifier" in packet.properties:
            raise ProtocolError(
                "[MQTT-3.3.4-6] a PUBLISH from a client carries a Subscription Identifier"
            )
        props = dict(packet.properties)
        alias = props.pop("topic_alias", None)
        if alias is not None:
            aliases = session.topic_aliases
            if aliases is None:
                aliases = session.topic_aliases = TopicAliases()
            topic = aliases.resolve(alias, topic)
    host = session.host
    # The checks' common outcome tested inline (this runs per publish):
    # check_topic_depth raises only past max_topic_levels, and may_publish
    # refuses only with an ACL or for a `$` topic.
    if topic.count("/") >= host.config.max_topic_levels:
        check_topic_depth(session, topic)
    qos = packet.qos
    if (host.acl_decisions is not None or topic.startswith("$")) and not may_publish(
        session, topic
    ):
        host.acl_denied("acl_denied_publishes", session.client_id, "publish to", topic)
        refuse_publish(session, packet, ReasonCode.NOT_AUTHORIZED)
        return
    if host.hooks is not None and not _hook_allows(session, packet, topic):
        return  # refused
    if qos < 2:
        # The PUBACK of a QoS 1 goes once the message is on its way and
        # confirmed durable (the PUSH socket does not drop it).
        payload, retain = packet.payload, packet.retain
        if not qos:  # the hottest send: a plain tuple (see flockmq/envelopes.py)
            session.route((_ROUTE, session.client_id, topic, payload, 0, retain, props, None))
            return
        session.publishes += 1
        packet_id = packet.packet_id or 0
        reply: env.ReplyTuple = (session.conn_id, packet_id, 0, session.publishes, None)
        route: env.RouteTuple = (
            _ROUTE,
            session.client_id,
            topic,
            payload,
            qos,
            retain,
            props,
            reply,
        )
        size = message_size(topic, payload, props)
        if not session.await_confirmation(packet_id, PUBACK, route, size):
            return  # the first transmission is still being confirmed
        session.route(route)
    else:
        _publish_qos2(session, packet, topic, props)


def refuse_publish(session: ClientSession, packet: Publish, rc: int) -> None:
    """Acknowledged and dropped, as 3.1.1 requires [MQTT-3.3.5-2]; v5 says why."""
    if packet.qos:
        kind = 4 if packet.qos == 1 else 5
        session.write(
            encode_ack(kind, packet.packet_id or 0, session.level, rc if session.level >= 5 else 0)
        )


def _hook_allows(session: ClientSession, packet: Publish, topic: str) -> bool:
    """The auth hook's authorize() (frontend/hook_calls.py), after the ACL:
    False when refused (as the ACL refuses: 0x87, or 0x80 when the hook
    failed). WaitsForHook while the packet waits for the answer."""
    hooks = session.host.hooks
    if hooks is None or not hooks.authorizes:
        return True
    rc = authorize_topics(session, packet, PUBLISH, [topic])[topic]  # may raise WaitsForHook
    if rc:
        session.host.count("hook_denied_publishes")
        refuse_publish(session, packet, rc)
        return False
    return True


def _publish_qos2(
    session: ClientSession, packet: Publish, topic: str, props: dict[str, Any] | None
) -> None:
    publish = env.Publish(
        _PUBLISH,
        session.conn_id,
        session.client_id,
        packet.packet_id or 0,
        topic,
        packet.payload,
        packet.qos,
        packet.retain,
        props or None,
        0,
        False,
        session.publishes + 1,
    )
    size = message_size(topic, packet.payload, props)
    if session.await_confirmation(packet.packet_id or 0, PUBREC, publish, size):
        session.publishes += 1
    session.forward(publish)


def may_publish(session: ClientSession, topic: str) -> bool:
    """Whether the ACL lets this client publish to `topic`. `$SYS` belongs
    to the broker: a client may publish there only when an ACL line grants
    that topic by name (`#` and `+` never match a `$` topic at the first
    level, so no ordinary grant does)."""
    host = session.host
    decisions = host.acl_decisions
    if decisions is not None and session.acl_rules is not None:
        return bool(decisions.access(session.acl_rules, topic) & WRITE)
    if is_sys_topic(topic):
        host.count("sys_publishes_refused")
        return False
    return True


def check_topic_depth(session: ClientSession, topic: str) -> None:
    """A topic name over `max_topic_levels` levels: TOPIC_NAME_INVALID
    (DISCONNECT 0x90, or CONNACK 0x90 for a will; 3.1.1: closed)."""
    limit = session.host.config.max_topic_levels
    if topic_levels(topic) > limit:
        session.host.count("topics_too_deep")
        exc = ProtocolError(
            f"topic name has {topic_levels(topic)} levels, more than max_topic_levels ({limit})",
            ReasonCode.TOPIC_NAME_INVALID,
        )
        exc.protocol_level = session.level  # a will's: answered with CONNACK in v5
        raise exc
