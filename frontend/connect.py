"""CONNECT, CONNACK and DISCONNECT of one client session (sans-IO).

CONNECT is mapped to the CONNECT envelope for the session's shard (client id
assigned or refused, will checked against the topic depth and the ACL,
session expiry from the version's rules); with an auth hook, the CONNECT is
asked of its authenticate(), then its will topic of its authorize() (as a
"publish": the worker publishes the will later, unchecked), before it goes
to the shard; DISCONNECT's rules decide whether
the will is published and which expiry the session ends with. The CONNACK
(the worker's, or a refusal made here) is the first packet written, and
lets what the client sent after its CONNECT be read. All act on
the session passed in (frontend/session.py), which owns the state.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from flockmq import envelopes as env
from flockmq.frontend.codec import Connack, Connect, Disconnect, ProtocolError, ReasonCode, encode
from flockmq.frontend.codec.allowed_reason_codes import V5 as V5_REASON_CODES
from flockmq.frontend.codec.packets import PacketType, Will
from flockmq.hooks import CONNECT as CONNECT_CALL
from flockmq.hooks import PUBLISH
from flockmq.hooks import WILL as WILL_CALL
from flockmq.mqtt.reason_codes import V5_TO_V3_CONNACK, ConnackReturnCode
from flockmq.sharding import shard_of

from .authentication import PendingRefusal, Refusal
from .inbound_publish import check_topic_depth, may_publish
from .states import CLOSED, CONNECTED, CONNECTING
from .tls import certificate_fields
from .topic_aliases import TOPIC_ALIAS_MAXIMUM

if TYPE_CHECKING:
    from .session import ClientSession

Kind = env.Kind
NEVER_EXPIRES = 0xFFFFFFFF

# Every 3.1/3.1.1 CONNACK there is (4 bytes each), encoded once: one is
# written per connect, and encoding it each time (a Connack, its IntEnum code
# made bytes) cost more than looking it up.
_CONNACKS_V3: dict[tuple[int, bool, int], bytes] = {
    (level, present, code): encode(Connack(present and code == 0, code), level)
    for level in (3, 4)
    for present in (False, True)
    for code in ConnackReturnCode
}


def handle_connect(session: ClientSession, packet: Connect) -> None:
    session.level = level = packet.protocol_level
    session.keepalive = packet.keepalive
    session.username = packet.username
    props = packet.properties
    client_id = _client_id(session, packet)
    if client_id is None:
        return  # refused
    assigned = not packet.client_id and level >= 5
    session.client_id = client_id
    if level >= 5 and "authentication_method" in props:
        # Enhanced authentication is not supported: refuse it rather than
        # accept a client that believes it authenticated [MQTT-4.12.0-1].
        refuse_connect(
            session,
            ReasonCode.BAD_AUTHENTICATION_METHOD,
            f"authentication method {props['authentication_method']!r} not supported",
        )
        return
    if not authenticate(session, packet):
        return  # refused, at once or after the throttle's delay
    host = session.host
    if host.acl is not None:
        session.acl_rules = host.acl.rules_for(client_id, session.username)
    will_env = None
    if packet.will is not None:
        will_env = _will(session, packet.will)
        if will_env is None:
            return  # refused
    if level >= 5:
        expiry = props.get("session_expiry_interval", 0)
        session.max_outgoing_packet = props.get("maximum_packet_size", 0)
    else:
        expiry = 0 if packet.clean_start else NEVER_EXPIRES
    session.shard = shard_of(client_id, host.config.workers)
    session.state = CONNECTING
    host.count("connects")
    session.connect_envelope = env.Connect(
        Kind.CONNECT,
        session.conn_id,
        client_id,
        packet.clean_start,
        expiry,
        level,
        packet.keepalive,
        session.username,
        will_env,
        props.get("receive_maximum", 0),
        assigned,
    )
    hooks = host.hooks
    if hooks is not None:
        if hooks.authenticates:
            _ask_hook(session, packet.password)
        elif will_decided(session):
            session.forward(session.connect_envelope)
        return
    session.forward(session.connect_envelope)


def _ask_hook(session: ClientSession, password: bytes | None) -> None:
    """The password file and the ACL let this CONNECT through: the auth
    hook is asked (frontend/hook_calls.py), with the client certificate's CN
    and its fields within `auth_hook_cert_bytes` (frontend/tls.py; one cut
    to that budget is counted). Until it answers the CONNECT is not sent on
    and nothing after it is read (CONNECTING)."""
    host = session.host
    hooks = host.hooks
    assert hooks is not None
    certificate = None
    if host.config.auth_hook_cert_bytes:  # (0: none given to the hook)
        certificate = certificate_fields(
            session.link.peer_certificate(), host.config.auth_hook_cert_bytes
        )
        if certificate.dropped:
            host.count("hook_certificates_cut")
    call = hooks.authenticate(session, session, password, session.link.identity, certificate)
    if call is None:  # too many calls waiting
        session.connect_envelope = None
        refuse_connect(
            session, ReasonCode.SERVER_UNAVAILABLE, f"client {session.client_id!r}: hook busy"
        )
        return
    session.awaiting = call


def waits_for_connect(session: ClientSession) -> bool:
    """Its CONNECT waits for the auth hook (not sent to the worker yet)."""
    call = session.awaiting
    return call is not None and call.action in (CONNECT_CALL, WILL_CALL)


def hook_answered_connect(session: ClientSession, rc: int) -> None:
    """The auth hook's answer to the CONNECT: its will asked about next
    (`will_decided`), then sent on to the worker; or refused with the
    hook's reason code (0x88 Server unavailable when the hook failed or did
    not answer in time)."""
    connect = session.connect_envelope
    if rc == 0 and connect is not None:
        if will_decided(session):
            session.forward(connect)
        return
    try:
        code = ReasonCode(rc)
    except ValueError:
        code = ReasonCode.NOT_AUTHORIZED
    host = session.host
    if code != ReasonCode.SERVER_UNAVAILABLE:
        host.count("connects_hook_denied")
    session.connect_envelope = None
    why = f"client {session.client_id!r}, user {session.username!r}: auth hook"
    refuse_connect(session, code, why)


def will_decided(session: ClientSession) -> bool:
    """The auth hook's authorize("publish") of the CONNECT's will topic,
    after authenticate() allowed it (the ACL allowed it already; the worker
    publishes the will later, unchecked, so this is its one check). True:
    nothing to ask, or allowed from the cache: the CONNECT goes on now.
    False: asked (the CONNECT waits, CONNECTING, for `hook_answered_will`),
    or refused."""
    hooks = session.host.hooks
    connect = session.connect_envelope
    if hooks is None or not hooks.authorizes or connect is None or connect.will is None:
        return True
    topic = connect.will.topic
    known, _missing = hooks.cached(session, PUBLISH, [topic], session.host.now)
    if topic in known:
        return _will_answer(session, known[topic])
    call = hooks.authorize(session, session, WILL_CALL, [topic])
    if call is None:  # too many calls waiting
        _refuse_will(session, ReasonCode.SERVER_UNAVAILABLE, "hook busy")
        return False
    session.awaiting = call
    return False


def hook_answered_will(session: ClientSession, code: int) -> None:
    """The auth hook's answer about the will topic (frontend/hook_calls.py:
    0, NOT_AUTHORIZED, or FAILED when it failed or did not answer in time)."""
    connect = session.connect_envelope
    if _will_answer(session, code) and connect is not None:
        session.forward(connect)


def _will_answer(session: ClientSession, code: int) -> bool:
    """True: the will may be published; else the CONNECT is refused: 0x87
    Not authorized (3.1.1: 5) when the hook said no, 0x88 Server unavailable
    (3.1.1: 3) when it failed."""
    if code == 0:
        return True
    if code == ReasonCode.NOT_AUTHORIZED:
        session.host.count("hook_denied_wills")
        _refuse_will(session, ReasonCode.NOT_AUTHORIZED, "denied by the auth hook")
    else:
        _refuse_will(session, ReasonCode.SERVER_UNAVAILABLE, "the auth hook failed")
    return False


def _refuse_will(session: ClientSession, code: ReasonCode, why: str) -> None:
    connect = session.connect_envelope
    topic = connect.will.topic if connect is not None and connect.will is not None else ""
    session.connect_envelope = None
    refuse_connect(session, code, f"client {session.client_id!r}: will topic {topic!r} {why}")


def _client_id(session: ClientSession, packet: Connect) -> str | None:
    """The client id, assigned when empty; None: refused (CONNACK written)."""
    if packet.client_id:
        return packet.client_id
    level = packet.protocol_level
    if level == 3 or (level == 4 and not packet.clean_start):
        # 3.1.1: a zero-length id needs clean session 1 [MQTT-3.1.3-8];
        # 3.1 requires 1-23 characters (longer ones are accepted, as
        # Mosquitto does): CONNACK 0x02 Identifier Rejected.
        refuse_connect(session, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id")
        return None
    return "auto-" + uuid.uuid4().hex


def _will(session: ClientSession, will: Will) -> env.Will | None:
    """The will for the shard; None: refused (CONNACK written)."""
    check_topic_depth(session, will.topic)
    if not may_publish(session, will.topic):
        session.host.count("acl_denied_wills")
        refuse_connect(session, ReasonCode.NOT_AUTHORIZED, f"will topic {will.topic!r} denied")
        return None
    will_props = dict(will.properties)
    delay = will_props.pop("will_delay_interval", 0)
    return env.Will(will.topic, will.payload, will.qos, will.retain, will_props or None, delay)


def handle_disconnect(session: ClientSession, packet: Disconnect) -> None:
    expiry = packet.properties.get("session_expiry_interval")
    connect = session.connect_envelope
    if expiry and connect is not None and connect.session_expiry == 0:
        # Not a valid DISCONNECT: the will stays, the session ends as agreed.
        raise ProtocolError(
            "MQTT 5 section 3.14.2.2.2: DISCONNECT sets a Session Expiry Interval "
            "after CONNECT set none"
        )
    # A DISCONNECT discards the will [MQTT-3.14.4-3], unless v5 asks for it (0x04).
    session.will_on_close = packet.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
    if expiry is not None and session.state in (CONNECTING, CONNECTED):
        session.report_closed(
            env.Closed(
                Kind.CLOSED, session.conn_id, session.client_id, session.will_on_close, expiry
            )
        )
        session.state = CLOSED  # connection_lost must not report it again
        session.link.unregister()
    session.close()


def _write_connack(session: ClientSession, data: bytes) -> None:
    """The CONNACK, and what waited for it: written as they are."""
    if not session.closing:
        session.link.send_bytes(data)


def disconnect_for_refusal(rc: int) -> ReasonCode:
    """The DISCONNECT (MQTT 5; 3.1.1 closes the socket) that closes a
    CONNECTED session whose re-attach a worker refused with CONNACK `rc`:
    the session is established, so a CONNACK cannot be sent, and a CONNACK
    code is not always a DISCONNECT one [MQTT-3.14.2.1]. 0x88 Server
    unavailable (a standby, the only refusal workers send today) becomes
    0x9C Use another server: the client reconnects, to the broker that
    serves the shard. A code valid in both (0x87 Not authorized, 0x89
    Server busy, 0x97 Quota exceeded, 0x9C, 0x9D...) is kept; the other
    CONNACK-only codes (0x84-0x86, 0x8A, 0x8C) become 0x80 Unspecified error."""
    if rc == ReasonCode.SERVER_UNAVAILABLE:
        return ReasonCode.USE_ANOTHER_SERVER
    if rc in V5_REASON_CODES[PacketType.DISCONNECT]:
        return ReasonCode(rc)
    return ReasonCode.UNSPECIFIED_ERROR


def handle_connack(
    session: ClientSession, session_present: bool, rc: int, props: dict[str, Any] | None
) -> None:
    if session.state != CONNECTING:
        if session.state == CONNECTED and rc != 0:
            # The worker refused to re-attach this connection after its
            # restart (a standby: the shard is served by another broker,
            # workers/standby.py): the client reconnects.
            session.host.count("closed_refused_reattach")
            session.close(disconnect_for_refusal(rc))
        return
    if rc == 0:
        session.state = CONNECTED
        session.worker_incarnation = session.host.worker_incarnation(session.shard)
    if session.level >= 5:
        data = _connack_v5(session, session_present, rc, props)
        if session.too_large(data):
            # Not even the CONNACK fits the client's Maximum Packet Size
            # [MQTT-3.1.2-24]: the connection cannot work, close it.
            session.host.count("connack_over_client_maximum_packet_size")
            session.close()
            return
        _write_connack(session, data)
    else:
        code = V5_TO_V3_CONNACK.get(rc, ConnackReturnCode.SERVER_UNAVAILABLE)
        _write_connack(session, _CONNACKS_V3[session.level, session_present, code])
    early, session.before_connack_writes = session.before_connack_writes, b""
    if rc != 0:
        session.close()
        return
    if early:  # each checked against the client's Maximum Packet Size already
        _write_connack(session, early)
    if session.before_connack:
        held, session.before_connack = session.before_connack, None
        for e in held:
            session.host.handle_envelope(e)
    session.connack_wait = False
    if session.read_packets():  # what the client sent after its CONNECT
        session.link.check_backpressure()
    session.resume_reading()


def _connack_v5(
    session: ClientSession, session_present: bool, rc: int, props: dict[str, Any] | None
) -> bytes:
    """The v5 CONNACK, with what this broker tells every client."""
    config = session.host.config
    props = dict(props or {})
    props.setdefault("topic_alias_maximum", TOPIC_ALIAS_MAXIMUM)
    props.setdefault("maximum_packet_size", config.max_packet_size)
    props.setdefault("shared_subscription_available", 1)
    if session.keepalive > config.max_keepalive:
        session.keepalive = config.max_keepalive
        props["server_keep_alive"] = session.keepalive
    return encode(Connack(session_present, rc, props), 5)


def authenticate(session: ClientSession, packet: Connect) -> bool:
    """Who the client is (flockmq/frontend/authentication.py): its username
    from the password file, the certificate or the CONNECT; False when it is
    refused. A bad password is answered after the address's throttle delay
    (nothing after the CONNECT is read meanwhile); an address with too many
    refusals waiting is closed before any password is checked."""
    host = session.host
    throttle = host.throttle
    # The address (a system call on the socket) only matters once some
    # address has failed: an empty throttle admits every one.
    address = session.link.address() if len(throttle) else ""
    if packet.username is not None and not throttle.admits(address):
        host.count("connects_throttled")
        host.client_log.log(
            logging.INFO,
            "closing CONNECT from %s unchecked: too many refusals waiting",
            session.link.peer(),
        )
        session.close()
        return False
    verdict = session.link.authenticate(packet.username, packet.password, host.now)
    if verdict.refusal is None:
        session.username = verdict.username
        return True
    refusal = verdict.refusal
    reason = refusal.value.name.lower().replace("_", " ")  # "bad user name or password"
    why = f"client {session.client_id!r}, user {packet.username!r}: {reason}"
    if refusal is Refusal.BAD_CREDENTIALS:
        host.count("connects_bad_credentials")
        address = address or session.link.address()
        delay = throttle.failed(address, host.now)
        if delay > 0:
            session.refusal = PendingRefusal(host.now + delay, refusal.value, why, address)
            session.state = CONNECTING  # nothing after the CONNECT is read (read_packets)
            return False
        throttle.released(address)
    else:
        host.count("connects_not_authorized")
    refuse_connect(session, refusal.value, why)
    return False


def refuse_pending(session: ClientSession, now: float) -> bool:
    """Send a held refusal once it is due; True while one is held."""
    pending = session.refusal
    if pending is None:
        return False
    if now >= pending.due:
        session.refusal = None
        session.host.throttle.released(pending.address)
        refuse_connect(session, pending.reason_code, pending.why)
    return True


def drop_pending_refusal(session: ClientSession) -> None:
    """The connection is gone before its refusal was due."""
    if session.refusal is not None:
        session.host.throttle.released(session.refusal.address)
        session.refusal = None


def refuse_connect(session: ClientSession, rc: ReasonCode, why: str) -> None:
    session.host.count("connects_refused")
    session.host.client_log.log(
        logging.INFO, "refusing CONNECT from %s: %s (%s)", session.link.peer(), why, rc.name
    )
    session.state = CONNECTING  # so on_connack writes the answer, then close
    handle_connack(session, False, rc, None)
    session.state = CLOSED
    session.link.unregister()
