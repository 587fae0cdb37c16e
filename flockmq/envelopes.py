"""The inter-process protocol: every envelope kind, its fields in order, and the
frame codec. Nothing else in flockmq knows these layouts.

An envelope is a msgpack array whose first element is its kind; a ZeroMQ frame
carries a msgpack array of envelopes (one frame per destination per event-loop
pass: "batch every hop") behind a small header (FRAME_VERSION below). Every
process owns PULL sockets (its inboxes) and one PUSH socket per peer it talks
to; PUSH never drops, and flockmq/bus.py bounds each pipe in bytes, which is
the backpressure we want for QoS 1/2 traffic.

Connections are named by a 64-bit `conn` id that also says where they live:
`acceptor << 48 | incarnation << 32 | counter` (see `make_conn_id`), so a worker
can answer a connection without a lookup, and a restarted acceptor's new
connections never collide with its previous incarnation's.

Field conventions: `props` is a dict of MQTT 5 property names (or None when
empty); `will` is `[topic, payload, qos, retain, props, delay_interval]` or None;
`rc` is an MQTT 5 reason code (acceptors turn it into a 3.1.1 code).
"""

from __future__ import annotations

from typing import Any

Envelope = list[Any]

# --- acceptor -> worker (everything about one session goes to its shard) -----
CONNECT = 1  # [CONNECT, conn, client_id, clean_start, session_expiry, level, keepalive,
#               username, will, receive_maximum, assigned_id]
PUBLISH = 2  # [PUBLISH, conn, client_id, packet_id, topic, payload, qos, retain, props,
#               attempt, retry, uid]   (QoS 2 only; attempt: see reply below; retry True:
#               the acceptor got no confirmation in time, route it again)
PUBREL_IN = 3  # [PUBREL_IN, conn, client_id, packet_id]
PUBACK_IN = 4  # [PUBACK_IN, conn, client_id, packet_id, rc]
PUBREC_IN = 5  # [PUBREC_IN, conn, client_id, packet_id, rc]
PUBCOMP_IN = 6  # [PUBCOMP_IN, conn, client_id, packet_id]
SUBSCRIBE = 7  # [SUBSCRIBE, conn, client_id, packet_id, [sub_entry...]]
#   sub_entry = [topic_filter, qos_or_refusal_rc, no_local, retain_as_published,
#                retain_handling, subscription_id]   (qos >= 0x80: refused with that rc)
UNSUBSCRIBE = 8  # [UNSUBSCRIBE, conn, client_id, packet_id, [topic_filter...]]
CLOSED = 9  # [CLOSED, conn, client_id, publish_will, session_expiry_or_None]
#   publish_will: False after a DISCONNECT (unless v5 reason 0x04), True otherwise;
#   session_expiry: a v5 DISCONNECT may change it; None keeps the CONNECT's value
ACCEPTOR_UP = 10  # [ACCEPTOR_UP, acceptor, incarnation]  (also sent to the router)
QOS2_CONFIRMED = 11  # [QOS2_CONFIRMED, conn, client_id, packet_id]  PUBREC went out:
#   a resend of that packet id is a duplicate, not a message that may be lost
DISCARDED = 12  # [DISCARDED, conn, client_id, packet_id]  a QoS 1/2 PUBLISH over the
#   client's Maximum Packet Size [MQTT-3.1.2-25], or on a topic the ACL does not
#   let the connection read, was not sent: done with, as if acknowledged

# --- worker -> acceptor ------------------------------------------------------
CONNACK = 20  # [CONNACK, conn, session_present, rc, props]
SEND_PUBLISH = 21  # [SEND_PUBLISH, conn, packet_id, topic, payload, qos, retain, dup, props]
SEND_ACK = 22  # [SEND_ACK, conn, packet_type, packet_id, rc]  PUBACK/PUBREC/PUBREL/PUBCOMP
SEND_SUBACK = 23  # [SEND_SUBACK, conn, packet_id, [rc...]]
SEND_UNSUBACK = 24  # [SEND_UNSUBACK, conn, packet_id, [rc...]]
CLOSE = 25  # [CLOSE, conn, rc]  close that connection (takeover, session error)
ROUTED = 27  # [ROUTED, conn, packet_id, shards, attempt]  router -> publisher's acceptor:
#   how many STORED confirmations the publish waits for (0: none; -1 from a
#   worker: a QoS 2 retransmission of a packet id already routed)
STORED = 28  # [STORED, conn, packet_id, ok, attempt]  worker -> publisher's acceptor
#   ok False: the store could not write; the publish must not be acknowledged
SEND_PUBLISH_MANY = 26  # [SEND_PUBLISH_MANY, [conn...], topic, payload, retain, props]
#   one QoS 0 message to several connections of one acceptor: encoded once
#   (sent by workers, and by the router for online sessions)

# --- worker -> router --------------------------------------------------------
SUB = 40  # [SUB, shard, client_id, conn, packet_id, [route_entry...], [rc...]]
#   route_entry = [topic_filter, qos, no_local, retain_as_published, send_retained, sub_id,
#                  persistent]   (persistent: the session outlives its connection, so
#                  a QoS 1/2 publish waits for its shard to store the copy)
#   conn == 0: no reply wanted (re-registration after a router restart)
UNSUB = 41  # [UNSUB, client_id, [topic_filter...], shard, conn, packet_id, [rc...]]
#   conn == 0: no reply wanted; otherwise the router answers UNSUBSCRIBED, and
#   the UNSUBACK waits for it (a publish the client sends after UNSUBSCRIBE is
#   matched without the filters)
UNSUB_ALL = 42  # [UNSUB_ALL, client_id]
ROUTE = 43  # [ROUTE, origin_client_id, topic, payload, qos, retain, props, reply]
#   also acceptor -> router for QoS 0 and 1 publishes (they need no session state)
#   reply: [conn, packet_id, attempt, uid, key] of a QoS 1/2 publish whose
#   acknowledgement waits until it is durable everywhere it goes (see
#   ROUTED/STORED), or None. attempt counts the acceptor's retries:
#   confirmations of an older attempt (from before a process died) are
#   ignored. uid numbers the connection's publishes: (conn, uid) names one
#   message across its retries. key ([client_id, packet_id, token, durable], QoS 2,
#   set by the publisher's shard; token stored with the packet id) names it
#   across resends on new connections and restarts; shards drop a QoS 2 copy
#   whose key they already took, and with durable (a persistent publisher)
#   persistent destinations store the key with their copies
WORKER_UP = 44  # [WORKER_UP, shard, incarnation]  (also sent to every acceptor)
SYNCED = 46  # [SYNCED, shard]  after re-sending its subscriptions for ROUTER_UP: a
#   restarted router holds publishes until every shard is synced, so none is
#   matched against a half-rebuilt topic tree
ONLINE = 45  # [ONLINE, client_id, conn]  conn == 0: the session went offline
#   lets the router send QoS 0 deliveries for online sessions straight to the
#   acceptor (SEND_PUBLISH_MANY), skipping the worker hop

FENCE = 47  # [FENCE, acceptor, seq]  acceptor -> router, on the pipe its ROUTEs take:
#   the router answers FENCED once it has handled everything sent before it
#   (see frontend/ordering.py: what one connection sends takes effect in order)

# --- router -> acceptor ------------------------------------------------------
FENCED = 64  # [FENCED, seq]

# --- router -> worker --------------------------------------------------------
DELIVER = 60  # [DELIVER, topic, payload, qos, retain, props, [target...], reply]
#   target = [client_id, granted_qos, retain_as_published, [sub_id...], topic_filter]
#   (topic_filter: one filter that matched; a session that no longer holds it,
#   e.g. one recreated by a clean start, does not get the message)
#   reply: as in ROUTE plus a confirm flag: [conn, packet_id, attempt, uid, key, confirm];
#   with confirm the shard answers STORED to the publisher's acceptor once its
#   copies are committed
SUBSCRIBED = 61  # [SUBSCRIBED, client_id, conn, packet_id, [rc...]]
UNSUBSCRIBED = 63  # [UNSUBSCRIBED, client_id, conn, packet_id, [rc...]]
ROUTER_UP = 62  # [ROUTER_UP, incarnation]  workers re-send every subscription;
#   acceptors send again every publish still waiting for confirmation

KIND_NAMES = {
    value: name
    for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, int) and not name.startswith("_")
}

ACCEPTOR_SHIFT = 48
INCARNATION_SHIFT = 32


def make_conn_id(acceptor: int, incarnation: int, counter: int) -> int:
    return (
        (acceptor << ACCEPTOR_SHIFT)
        | ((incarnation & 0xFFFF) << INCARNATION_SHIFT)
        | (counter & 0xFFFFFFFF)
    )


def acceptor_of(conn: int) -> int:
    return conn >> ACCEPTOR_SHIFT


def incarnation_of(conn: int) -> int:
    return (conn >> INCARNATION_SHIFT) & 0xFFFF


# A frame: [FRAME_VERSION, sender, incarnation, credit, [envelope...]], packed
# and read by flockmq/bus.py. `sender` is the process's id on the bus (see
# Config.process_id), `incarnation` its restart count, `credit` the bytes of
# the receiver's frames it has handled (flow control, see bus.py); a frame
# that only returns credit carries no envelopes. A frame of another version is
# dropped and counted.
FRAME_VERSION = 2
