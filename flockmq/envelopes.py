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

Each kind is declared once below: its number in `Kind` (on the wire: never
renumber) and a NamedTuple of its fields in wire order, the kind first, with
who sends it and who receives it. Senders build the NamedTuple (msgpack packs
it as an array); a receiver gets a list and reads it with `X._make(e)`, or,
in the per-message handlers where the object costs more than the handler's
own work, with a tuple unpacking typed by the NamedTuple
(`_, origin, topic, ... = cast(Route, e)`: mypy checks the arity and the
types). Nested records (replies, QoS 2 keys, wills, subscription entries,
targets) arrive as lists too: unpack them, or `_make` them, never read their
attributes straight from the wire.

Field conventions: `props` is a dict of MQTT 5 property names (or None when
empty); `rc` is an MQTT 5 reason code (acceptors turn it into a 3.1.1 code).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any, Literal, NamedTuple

Props = dict[str, Any] | None
# A received envelope: a list as msgpack unpacks it (or a NamedTuple handed
# over inside the process); read it with its NamedTuple.
Wire = Sequence[Any]


class Kind(IntEnum):
    """Every envelope kind, by its number on the wire."""

    # acceptor -> worker (everything about one session goes to its shard)
    CONNECT = 1
    PUBLISH = 2
    PUBREL_IN = 3
    PUBACK_IN = 4
    PUBREC_IN = 5
    PUBCOMP_IN = 6
    SUBSCRIBE = 7
    UNSUBSCRIBE = 8
    CLOSED = 9
    ACCEPTOR_UP = 10
    QOS2_CONFIRMED = 11
    DISCARDED = 12
    PUBACKS_IN = 13
    # worker (or router) -> acceptor
    CONNACK = 20
    SEND_PUBLISH = 21
    SEND_ACK = 22
    SEND_SUBACK = 23
    SEND_UNSUBACK = 24
    CLOSE = 25
    SEND_PUBLISH_MANY = 26
    ROUTED = 27
    STORED = 28
    ROUTED_MANY = 29
    SEND_PUBLISHES = 30
    # worker (or acceptor) -> router
    SUB = 40
    UNSUB = 41
    UNSUB_ALL = 42
    ROUTE = 43
    WORKER_UP = 44
    ONLINE = 45
    SYNCED = 46
    FENCE = 47
    RESYNC = 48
    # router -> worker
    DELIVER = 60
    SUBSCRIBED = 61
    ROUTER_UP = 62
    UNSUBSCRIBED = 63
    # router -> acceptor
    FENCED = 64
    # router -> every other router (several routers, router/replication.py)
    RETAINED = 70
    # acceptor -> auth process (flockmq/auth/), and its answer
    AUTHENTICATE = 80
    AUTHORIZE = 81
    AUTH_REPLY = 82
    # between the nodes of a cluster (issue 14)
    HEARTBEAT = 90
    SHARD_AT = 91
    # a cluster node's supervisor -> its workers and routers
    ROUTERS_LIVE = 92


# --- nested records -----------------------------------------------------------------


class Will(NamedTuple):
    """A CONNECT's will; the worker keeps it with the session (and stores it)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Props
    delay_interval: int


class SubEntry(NamedTuple):
    """One filter of a SUBSCRIBE. qos >= 0x80: refused by the acceptor with that rc."""

    topic_filter: str
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int
    sub_id: int | None


class RouteEntry(NamedTuple):
    """One subscription of a SUB. persistent: the session outlives its
    connection, so a QoS 1/2 publish waits for its shard to store the copy."""

    topic_filter: str
    qos: int
    no_local: bool
    retain_as_published: bool
    send_retained: bool
    sub_id: int | None
    persistent: bool


class Qos2Key(NamedTuple):
    """Names one QoS 2 message across resends on new connections and restarts
    (set by the publisher's shard; the token is stored with the packet id).
    Shards drop a QoS 2 copy whose key they already took; with durable (a
    persistent publisher) persistent destinations store the key with their copies."""

    client_id: str
    packet_id: int
    token: int
    durable: bool


class Reply(NamedTuple):
    """Where a QoS 1/2 publish's confirmations go (ROUTE): its acknowledgement
    waits until it is durable everywhere it goes (see ROUTED/STORED).
    attempt counts the acceptor's retries: confirmations of an older attempt
    (from before a process died) are ignored. uid numbers the connection's
    publishes: (conn, uid) names one message across its retries."""

    conn: int
    packet_id: int
    attempt: int
    uid: int
    key: Qos2Key | None


class DeliverReply(NamedTuple):
    """A ROUTE's Reply plus confirm (DELIVER): with confirm the shard answers
    STORED to the publisher's acceptor once its copies are committed."""

    conn: int
    packet_id: int
    attempt: int
    uid: int
    key: Qos2Key | None
    confirm: bool


class Target(NamedTuple):
    """One subscriber of a DELIVER. topic_filter: one filter that matched; a
    session that no longer holds it (e.g. one recreated by a clean start)
    does not get the message."""

    client_id: str
    granted_qos: int
    retain_as_published: bool
    sub_ids: list[int]
    topic_filter: str


# --- acceptor -> worker -------------------------------------------------------------


class Connect(NamedTuple):
    """Acceptor -> the session's worker: a CONNECT (sent again, with
    clean_start False, when the worker restarts)."""

    kind: Literal[Kind.CONNECT]
    conn: int
    client_id: str
    clean_start: bool
    session_expiry: int
    level: int
    keepalive: int
    username: str | None
    will: Will | None
    receive_maximum: int
    assigned_id: bool


class Publish(NamedTuple):
    """Acceptor -> the session's worker: a QoS 2 PUBLISH (QoS 0/1 go to the
    router as ROUTE). attempt: see Reply; retry True: the acceptor got no
    confirmation in time, route it again."""

    kind: Literal[Kind.PUBLISH]
    conn: int
    client_id: str
    packet_id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Props
    attempt: int
    retry: bool
    uid: int


class PubrelIn(NamedTuple):
    """Acceptor -> worker: the client's PUBREL."""

    kind: Literal[Kind.PUBREL_IN]
    conn: int
    client_id: str
    packet_id: int


class PubackIn(NamedTuple):
    """Acceptor -> worker: the client's PUBACK."""

    kind: Literal[Kind.PUBACK_IN]
    conn: int
    client_id: str
    packet_id: int
    rc: int


class PubacksIn(NamedTuple):
    """Acceptor -> worker: the PUBACKs of one read of the client's, in
    order (one envelope instead of a PUBACK_IN each: a subscriber
    acknowledges in bursts). A PUBACK's reason code is not carried: the
    message is done with either way (5.0 section 4.3.2)."""

    kind: Literal[Kind.PUBACKS_IN]
    conn: int
    client_id: str
    packet_ids: list[int]


class PubrecIn(NamedTuple):
    """Acceptor -> worker: the client's PUBREC."""

    kind: Literal[Kind.PUBREC_IN]
    conn: int
    client_id: str
    packet_id: int
    rc: int


class PubcompIn(NamedTuple):
    """Acceptor -> worker: the client's PUBCOMP."""

    kind: Literal[Kind.PUBCOMP_IN]
    conn: int
    client_id: str
    packet_id: int


class Subscribe(NamedTuple):
    """Acceptor -> worker: a SUBSCRIBE."""

    kind: Literal[Kind.SUBSCRIBE]
    conn: int
    client_id: str
    packet_id: int
    entries: list[SubEntry]


class Unsubscribe(NamedTuple):
    """Acceptor -> worker: an UNSUBSCRIBE."""

    kind: Literal[Kind.UNSUBSCRIBE]
    conn: int
    client_id: str
    packet_id: int
    filters: list[str]


class Closed(NamedTuple):
    """Acceptor -> worker: the connection closed. publish_will: False after a
    DISCONNECT (unless v5 reason 0x04), True otherwise; session_expiry: a v5
    DISCONNECT may change it; None keeps the CONNECT's value."""

    kind: Literal[Kind.CLOSED]
    conn: int
    client_id: str
    publish_will: bool
    session_expiry: int | None


class AcceptorUp(NamedTuple):
    """Acceptor -> every worker and the router: a (re)started acceptor; its
    previous incarnation's connections are gone."""

    kind: Literal[Kind.ACCEPTOR_UP]
    acceptor: int
    incarnation: int


class Qos2Confirmed(NamedTuple):
    """Acceptor -> worker: PUBREC went out; a resend of that packet id is a
    duplicate, not a message that may be lost."""

    kind: Literal[Kind.QOS2_CONFIRMED]
    conn: int
    client_id: str
    packet_id: int


class Discarded(NamedTuple):
    """Acceptor -> worker: a QoS 1/2 PUBLISH over the client's Maximum Packet
    Size [MQTT-3.1.2-25], or on a topic the ACL does not let the connection
    read, was not sent: done with, as if acknowledged."""

    kind: Literal[Kind.DISCARDED]
    conn: int
    client_id: str
    packet_id: int


# --- worker (or router) -> acceptor -------------------------------------------------


class Connack(NamedTuple):
    """Worker -> acceptor."""

    kind: Literal[Kind.CONNACK]
    conn: int
    session_present: bool
    rc: int
    props: Props


class SendPublish(NamedTuple):
    """Worker -> acceptor: one PUBLISH to write (packet_id None at QoS 0)."""

    kind: Literal[Kind.SEND_PUBLISH]
    conn: int
    packet_id: int | None
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    props: Props


class SendPublishes(NamedTuple):
    """Worker -> acceptor: PUBLISHes to write to one connection, in order,
    SEND_PUBLISH's fields from packet_id on, seven per message (packet_id,
    topic, payload, qos, retain, dup, props), in one flat list: what one
    refill of a session's window sends (one envelope, not one per message)."""

    kind: Literal[Kind.SEND_PUBLISHES]
    conn: int
    publishes: list[Any]


class SendAck(NamedTuple):
    """Worker -> acceptor: a PUBACK/PUBREC/PUBREL/PUBCOMP to write."""

    kind: Literal[Kind.SEND_ACK]
    conn: int
    packet_type: int
    packet_id: int
    rc: int


class SendSuback(NamedTuple):
    """Worker -> acceptor."""

    kind: Literal[Kind.SEND_SUBACK]
    conn: int
    packet_id: int
    codes: list[int]


class SendUnsuback(NamedTuple):
    """Worker -> acceptor."""

    kind: Literal[Kind.SEND_UNSUBACK]
    conn: int
    packet_id: int
    codes: list[int]


class Close(NamedTuple):
    """Worker -> acceptor: close that connection (takeover, session error)."""

    kind: Literal[Kind.CLOSE]
    conn: int
    rc: int


class SendPublishMany(NamedTuple):
    """Router (QoS 0 copies for online sessions) and workers -> acceptor: one
    QoS 0 message to several connections of that acceptor, encoded once."""

    kind: Literal[Kind.SEND_PUBLISH_MANY]
    conns: list[int]
    topic: str
    payload: bytes
    retain: bool
    props: Props


class Routed(NamedTuple):
    """Router -> the publisher's acceptor: how many STORED confirmations the
    publish waits for (0: none). Also worker -> acceptor with shards -1: a
    QoS 2 retransmission of a packet id already routed."""

    kind: Literal[Kind.ROUTED]
    conn: int
    packet_id: int
    shards: int
    attempt: int


class RoutedMany(NamedTuple):
    """Router -> the publishers' acceptor: ROUTED for several publishes, in
    the order they were routed, four ints each (conn, packet_id, shards,
    attempt: Routed's fields) in one flat list. The router appends to the
    last one while it is the last envelope for that acceptor in the pass,
    so order with the other envelopes is kept; one envelope instead of one
    per publish (fan-in: every QoS 1 publish has a reply)."""

    kind: Literal[Kind.ROUTED_MANY]
    routed: list[int]


class Stored(NamedTuple):
    """Worker -> the publisher's acceptor: its copies are committed. ok False
    (also from the router, when a retained write failed): the store could not
    write; the publish must not be acknowledged."""

    kind: Literal[Kind.STORED]
    conn: int
    packet_id: int
    ok: bool
    attempt: int


# --- worker (or acceptor) -> router -------------------------------------------------


class Sub(NamedTuple):
    """Worker -> router: a session's subscriptions. conn == 0: no reply wanted
    (re-registration after a router restart); otherwise the router answers
    SUBSCRIBED."""

    kind: Literal[Kind.SUB]
    shard: int
    client_id: str
    conn: int
    packet_id: int
    entries: list[RouteEntry]
    codes: list[int]


class Unsub(NamedTuple):
    """Worker -> router. conn == 0: no reply wanted; otherwise the router
    answers UNSUBSCRIBED, and the UNSUBACK waits for it (a publish the client
    sends after UNSUBSCRIBE is matched without the filters)."""

    kind: Literal[Kind.UNSUB]
    client_id: str
    filters: list[str]
    shard: int
    conn: int
    packet_id: int
    codes: list[int]


class UnsubAll(NamedTuple):
    """Worker -> router: the session ended."""

    kind: Literal[Kind.UNSUB_ALL]
    client_id: str


class Route(NamedTuple):
    """Acceptor -> router (QoS 0 and 1 publishes need no session state), and
    worker -> router (QoS 2 publishes, wills); also each process's $SYS
    counters. reply: see Reply, or None."""

    kind: Literal[Kind.ROUTE]
    origin: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Props
    reply: Reply | None


class WorkerUp(NamedTuple):
    """Worker -> router and every acceptor: a (re)started worker.
    `after_standby`: it serves its shard after a standby spell (PostgreSQL
    store: another broker may have served meanwhile), so the router reloads
    the retained messages (router/retained_reload.py)."""

    kind: Literal[Kind.WORKER_UP]
    shard: int
    incarnation: int
    after_standby: bool = False


class Online(NamedTuple):
    """Worker -> router: the session's connection (0: it went offline); lets
    the router send QoS 0 copies for online sessions straight to the acceptor
    (SEND_PUBLISH_MANY), skipping the worker hop."""

    kind: Literal[Kind.ONLINE]
    client_id: str
    conn: int


class Synced(NamedTuple):
    """Worker -> router, after re-sending its subscriptions for ROUTER_UP: a
    restarted router holds publishes until every shard is synced, so none is
    matched against a half-rebuilt topic tree."""

    kind: Literal[Kind.SYNCED]
    shard: int


class Resync(NamedTuple):
    """Worker -> every router, around the subscriptions it re-sends for
    ROUTER_UP or a router live again (`end` False before them, True after):
    they are the shard's whole set, and a router drops what it holds of
    that shard and was not re-sent (router/resync.py). `epoch`: the write
    epoch the shard was claimed with (workers/ownership.py; 0 without
    one): a router ignores a resync older than the shard's newest it knows
    (an old owner cut off, not told yet). Checked on receipt
    (`check_resync`)."""

    kind: Literal[Kind.RESYNC]
    shard: int
    epoch: int
    end: bool


class Fence(NamedTuple):
    """Acceptor -> router, on the pipe its ROUTEs take: the router answers
    FENCED once it has handled everything sent before it (see
    frontend/ordering.py: what one connection sends takes effect in order)."""

    kind: Literal[Kind.FENCE]
    acceptor: int
    seq: int


# --- router -> worker / acceptor ----------------------------------------------------


class Deliver(NamedTuple):
    """Router -> worker: one publish for the shard's targets (also a retained
    message after a SUB, reply None). reply: only when the shard confirms
    (DeliverReply.confirm) or the message is QoS 2 (taken once by its key);
    None otherwise."""

    kind: Literal[Kind.DELIVER]
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Props
    targets: list[Target]
    reply: DeliverReply | None


class Subscribed(NamedTuple):
    """Router -> worker: the SUB is in that router's tree; the SUBACK may go
    once every router has answered (router: the answering router's index)."""

    kind: Literal[Kind.SUBSCRIBED]
    client_id: str
    conn: int
    packet_id: int
    codes: list[int]
    router: int = 0


class Unsubscribed(NamedTuple):
    """Router -> worker: the UNSUB is done in that router; the UNSUBACK may go
    once every router has answered (router: the answering router's index)."""

    kind: Literal[Kind.UNSUBSCRIBED]
    client_id: str
    conn: int
    packet_id: int
    codes: list[int]
    router: int = 0


class RouterUp(NamedTuple):
    """Router -> every worker (they re-send every subscription), every
    acceptor (they send again every publish still waiting for confirmation)
    and every auth process. Each of them, hearing from a new incarnation of
    the router, sends it all its $SYS counters again. With several routers
    (Config.routers) each says which it is (router), and also tells the
    other routers, which send it their recent retained updates
    (router/replication.py)."""

    kind: Literal[Kind.ROUTER_UP]
    incarnation: int
    router: int = 0


class Fenced(NamedTuple):
    """Router -> acceptor: the answer to FENCE."""

    kind: Literal[Kind.FENCED]
    seq: int


# --- router -> router ---------------------------------------------------------------


class Retained(NamedTuple):
    """Router -> every other router: one retained update (router/replication.py)
    made at router `origin` (a retained PUBLISH or delete that arrived there,
    or an expiry), sent once the origin committed it; also, to a restarted
    router, the recent updates a router holds. Applied by a router only when
    (stamp, origin) is above what it holds for the topic: last writer wins by
    that pair, the same everywhere. payload b"": the topic was deleted.
    deadline: the message's expiry (wall-clock seconds, 0.0: none).
    Checked on receipt (`check_retained`): a malformed one costs only itself."""

    kind: Literal[Kind.RETAINED]
    origin: int
    stamp: int
    topic: str
    payload: bytes
    qos: int
    props: Props
    deadline: float


MAX_TOPIC_BYTES = 65535  # a topic name's UTF-8 bytes at most (MQTT's two-byte length)
MAX_RETAINED_PAYLOAD = 256 * 1024 * 1024  # MQTT's largest packet


def check_retained(e: Wire, routers: int) -> Retained:
    """A received RETAINED as its NamedTuple, or ValueError/TypeError: wrong
    arity, a field of the wrong type, or out of its bounds."""
    r = Retained._make(e)
    if not (isinstance(r.origin, int) and 0 <= r.origin < routers):
        raise ValueError(f"RETAINED: origin {r.origin!r} is not a router of {routers}")
    if not (isinstance(r.stamp, int) and 0 <= r.stamp < 1 << 63):
        raise ValueError(f"RETAINED: stamp {r.stamp!r} is not a 63-bit count")
    if not isinstance(r.topic, str) or not 0 < len(r.topic.encode()) <= MAX_TOPIC_BYTES:
        raise ValueError("RETAINED: topic is not a topic name")
    if not isinstance(r.payload, bytes) or len(r.payload) > MAX_RETAINED_PAYLOAD:
        raise ValueError("RETAINED: payload is not bytes within bounds")
    if r.qos not in (0, 1, 2) or not (r.props is None or isinstance(r.props, dict)):
        raise ValueError("RETAINED: qos or props malformed")
    if not isinstance(r.deadline, (int, float)) or not r.deadline >= 0:  # NaN too
        raise ValueError("RETAINED: deadline is not a time")
    return r


# --- acceptor <-> auth process (authentication hooks, flockmq/auth/) ----------------


class Authenticate(NamedTuple):
    """Acceptor -> an auth process: run the hook's authenticate() for a
    CONNECT the password file let through. call: the acceptor's number for
    the call, given back in AUTH_REPLY; cert: the verified client
    certificate's identity (CN), or None; certificate: that certificate's
    fields, bounded in bytes (frontend/tls.py `certificate_fields`), or
    None."""

    kind: Literal[Kind.AUTHENTICATE]
    acceptor: int
    call: int
    client_id: str
    username: str | None
    password: bytes | None
    peer: str
    cert: str | None
    certificate: dict[str, Any] | None


class Authorize(NamedTuple):
    """Acceptor -> an auth process: run the hook's authorize() for each of
    `topics` (one topic of a PUBLISH, the filters of a SUBSCRIBE) that the
    ACL allowed; action: "publish" or "subscribe"."""

    kind: Literal[Kind.AUTHORIZE]
    acceptor: int
    call: int
    client_id: str
    username: str | None
    action: str
    topics: list[str]


class AuthReply(NamedTuple):
    """Auth process -> the calling acceptor. results: for AUTHENTICATE one
    CONNACK reason code (0: allowed); for AUTHORIZE one 1/0 per topic.
    error: the hook raised, timed out or could not run (results empty); the
    acceptor denies with "server unavailable" / "not authorized"."""

    kind: Literal[Kind.AUTH_REPLY]
    call: int
    results: list[int]
    error: str | None


# --- between the nodes of a cluster (issue 14) ---------------------------------------


class Heartbeat(NamedTuple):
    """Supervisor of a node -> every other node, every heartbeat_interval, on
    the node's heartbeat socket (flockmq/app/heartbeats.py), not on the bus.
    incarnation: grows with each start of the node's supervisor; broker: the
    id naming its shard lock connections (workers/serving_broker.py), so a
    survivor can evict them when the node is declared dead
    (flockmq/membership.py, store/shard_evict.py). Checked on receipt
    (`check_heartbeat`)."""

    kind: Literal[Kind.HEARTBEAT]
    node: str
    incarnation: int
    broker: str


class ShardAt(NamedTuple):
    """Worker -> every router and acceptor of the cluster: shard `shard` is
    served by node `node` (its index in the cluster file) under write epoch
    `epoch` (store/shard_fence.py: it grows with every claim of the shard,
    whichever node makes it, so the newest epoch names the owner and an
    older announcement is stale). Sent when the worker claims the shard and
    again periodically, so a process started later learns it
    (flockmq/shard_directory.py). Checked on receipt (`check_shard_at`)."""

    kind: Literal[Kind.SHARD_AT]
    shard: int
    node: int
    epoch: int


class RoutersLive(NamedTuple):
    """A cluster node's supervisor -> its workers and routers: the routers
    whose node is live (router r runs on node r; flockmq/membership.py). A
    worker waits for SUBACK answers from these only, and the bus drops what
    it would send to the others (flockmq/app/routers_live.py). Sent on each
    change of the live set and again every second. Checked on receipt
    (`check_routers_live`)."""

    kind: Literal[Kind.ROUTERS_LIVE]
    live: list[int]


MAX_NODE_NAME_BYTES = 255  # as flockmq/shard_plan.py bounds it
MAX_BROKER_ID_BYTES = 63  # PostgreSQL's application_name


def check_heartbeat(e: Wire) -> Heartbeat:
    """A received HEARTBEAT as its NamedTuple, or ValueError/TypeError."""
    h = Heartbeat._make(e)
    if h.kind != Kind.HEARTBEAT:
        raise ValueError(f"HEARTBEAT: kind {h.kind!r}")
    if not isinstance(h.node, str) or not 0 < len(h.node.encode()) <= MAX_NODE_NAME_BYTES:
        raise ValueError("HEARTBEAT: node is not a node name")
    if not isinstance(h.incarnation, int) or not 0 <= h.incarnation < 1 << 63:
        raise ValueError(f"HEARTBEAT: incarnation {h.incarnation!r} is not a 63-bit count")
    if not isinstance(h.broker, str) or len(h.broker.encode()) > MAX_BROKER_ID_BYTES:
        raise ValueError("HEARTBEAT: broker is not a broker id")
    return h


def check_shard_at(e: Wire, nodes: int, shards: int) -> ShardAt:
    """A received SHARD_AT as its NamedTuple, or ValueError/TypeError: a
    shard or node the cluster does not have, an epoch that is not one."""
    a = ShardAt._make(e)
    if a.kind != Kind.SHARD_AT:
        raise ValueError(f"SHARD_AT: kind {a.kind!r}")
    if not isinstance(a.shard, int) or not 0 <= a.shard < shards:
        raise ValueError(f"SHARD_AT: shard {a.shard!r} is not one of {shards}")
    if not isinstance(a.node, int) or not 0 <= a.node < nodes:
        raise ValueError(f"SHARD_AT: node {a.node!r} is not one of {nodes}")
    if not isinstance(a.epoch, int) or not 0 < a.epoch < 1 << 63:
        raise ValueError(f"SHARD_AT: epoch {a.epoch!r} is not a write epoch")
    return a


def check_resync(e: Wire, shards: int) -> Resync:
    """A received RESYNC as its NamedTuple, or ValueError/TypeError: a shard
    the broker does not have, an epoch that is not one."""
    r = Resync._make(e)
    if r.kind != Kind.RESYNC:
        raise ValueError(f"RESYNC: kind {r.kind!r}")
    if not isinstance(r.shard, int) or not 0 <= r.shard < shards:
        raise ValueError(f"RESYNC: shard {r.shard!r} is not one of {shards}")
    if not isinstance(r.epoch, int) or not 0 <= r.epoch < 1 << 63:
        raise ValueError(f"RESYNC: epoch {r.epoch!r} is not a write epoch")
    if not isinstance(r.end, bool):
        raise TypeError(f"RESYNC: end {r.end!r} is not a bool")
    return r


def check_routers_live(e: Wire, routers: int) -> frozenset[int]:
    """The live routers of a received ROUTERS_LIVE, or ValueError/TypeError."""
    r = RoutersLive._make(e)
    if r.kind != Kind.ROUTERS_LIVE:
        raise ValueError(f"ROUTERS_LIVE: kind {r.kind!r}")
    if not isinstance(r.live, list) or len(r.live) > routers:
        raise ValueError("ROUTERS_LIVE: live is not a list of routers")
    for router in r.live:
        if not isinstance(router, int) or not 0 <= router < routers:
            raise ValueError(f"ROUTERS_LIVE: router {router!r} is not one of {routers}")
    return frozenset(r.live)


# --- the per-message kinds as plain tuples ------------------------------------------
# Building a NamedTuple costs ~150 ns more than a tuple (its __new__ is Python)
# and packing one ~40 ns more: on the per-message path of the router (ROUTED,
# DELIVER, SEND_PUBLISH_MANY), of a shard's fan-out (SEND_PUBLISH,
# SEND_PUBLISH_MANY) and of an acceptor's QoS 0 publishes (ROUTE) that made
# the router's ROUTE handler ~70% slower (scripts/bench_handlers.py). There
# these kinds are built as plain tuples, typed field by field below: mypy
# checks their arity and types just the same (not their field names: the
# variables at those few sites are named as the fields).
# A shard builds its per-message kinds (STORED, SEND_ACK, a QoS 2 publish's
# ROUTE with its reply and key, ROUTED) this way on every path, and reads
# what it holds back by kind (workers/outbox.py: failed_envelope).
# tests/unit/flockmq/test_envelopes.py checks each matches its NamedTuple.
ReplyTuple = tuple[int, int, int, int, Qos2Key | None]
Qos2KeyTuple = tuple[str, int, int, bool]
# A QoS 2 publish's reply, from its shard: with its key, as a plain tuple too.
Qos2ReplyTuple = tuple[int, int, int, int, Qos2KeyTuple]
# A QoS 1 publish's ROUTE carries its reply as a plain tuple too.
RouteTuple = tuple[
    Literal[Kind.ROUTE],
    str,
    str,
    bytes,
    int,
    bool,
    Props,
    Reply | ReplyTuple | Qos2ReplyTuple | None,
]
RoutedTuple = tuple[Literal[Kind.ROUTED], int, int, int, int]
RoutedManyTuple = tuple[Literal[Kind.ROUTED_MANY], list[int]]
DeliverReplyTuple = tuple[int, int, int, int, Qos2Key | None, bool]
DeliverTuple = tuple[
    Literal[Kind.DELIVER], str, bytes, int, bool, Props, list[Target], DeliverReplyTuple | None
]
SendPublishTuple = tuple[
    Literal[Kind.SEND_PUBLISH], int, int | None, str, bytes, int, bool, bool, Props
]
SendPublishesTuple = tuple[Literal[Kind.SEND_PUBLISHES], int, list[Any]]
SendPublishManyTuple = tuple[Literal[Kind.SEND_PUBLISH_MANY], list[int], str, bytes, bool, Props]
StoredTuple = tuple[Literal[Kind.STORED], int, int, bool, int]
SendAckTuple = tuple[Literal[Kind.SEND_ACK], int, int, int, int]
# An acceptor's per-acknowledgement sends, and a QoS 1 publish's reply.
PubackInTuple = tuple[Literal[Kind.PUBACK_IN], int, str, int, int]
PubacksInTuple = tuple[Literal[Kind.PUBACKS_IN], int, str, list[int]]
PubrecInTuple = tuple[Literal[Kind.PUBREC_IN], int, str, int, int]
PubrelInTuple = tuple[Literal[Kind.PUBREL_IN], int, str, int]
PubcompInTuple = tuple[Literal[Kind.PUBCOMP_IN], int, str, int]
Qos2ConfirmedTuple = tuple[Literal[Kind.QOS2_CONFIRMED], int, str, int]
PLAIN_TUPLES: dict[type[Any], Any] = {
    PubackIn: PubackInTuple,
    PubacksIn: PubacksInTuple,
    PubrecIn: PubrecInTuple,
    PubrelIn: PubrelInTuple,
    PubcompIn: PubcompInTuple,
    Qos2Confirmed: Qos2ConfirmedTuple,
    Reply: ReplyTuple,
    Route: RouteTuple,
    Routed: RoutedTuple,
    RoutedMany: RoutedManyTuple,
    DeliverReply: DeliverReplyTuple,
    Deliver: DeliverTuple,
    SendPublish: SendPublishTuple,
    SendPublishes: SendPublishesTuple,
    SendPublishMany: SendPublishManyTuple,
    Qos2Key: Qos2KeyTuple,
    Stored: StoredTuple,
    SendAck: SendAckTuple,
}

Envelope = (
    Connect
    | Publish
    | PubrelIn
    | PubackIn
    | PubacksIn
    | PubrecIn
    | PubcompIn
    | Subscribe
    | Unsubscribe
    | Closed
    | AcceptorUp
    | Qos2Confirmed
    | Discarded
    | Connack
    | SendPublish
    | SendPublishes
    | SendAck
    | SendSuback
    | SendUnsuback
    | Close
    | SendPublishMany
    | Routed
    | RoutedMany
    | Stored
    | Sub
    | Unsub
    | UnsubAll
    | Route
    | WorkerUp
    | Online
    | Synced
    | Resync
    | Fence
    | Deliver
    | Subscribed
    | Unsubscribed
    | RouterUp
    | Fenced
    | Retained
    | Authenticate
    | Authorize
    | AuthReply
    | Heartbeat
    | ShardAt
    | RoutersLive
    | RouteTuple
    | RoutedTuple
    | RoutedManyTuple
    | DeliverTuple
    | SendPublishTuple
    | SendPublishesTuple
    | SendPublishManyTuple
    | StoredTuple
    | SendAckTuple
    | PubackInTuple
    | PubacksInTuple
    | PubrecInTuple
    | PubrelInTuple
    | PubcompInTuple
    | Qos2ConfirmedTuple
)
"""Any envelope as built by its sender."""

SCHEMA: dict[Kind, type[Any]] = {
    Kind.CONNECT: Connect,
    Kind.PUBLISH: Publish,
    Kind.PUBREL_IN: PubrelIn,
    Kind.PUBACK_IN: PubackIn,
    Kind.PUBACKS_IN: PubacksIn,
    Kind.PUBREC_IN: PubrecIn,
    Kind.PUBCOMP_IN: PubcompIn,
    Kind.SUBSCRIBE: Subscribe,
    Kind.UNSUBSCRIBE: Unsubscribe,
    Kind.CLOSED: Closed,
    Kind.ACCEPTOR_UP: AcceptorUp,
    Kind.QOS2_CONFIRMED: Qos2Confirmed,
    Kind.DISCARDED: Discarded,
    Kind.CONNACK: Connack,
    Kind.SEND_PUBLISH: SendPublish,
    Kind.SEND_PUBLISHES: SendPublishes,
    Kind.SEND_ACK: SendAck,
    Kind.SEND_SUBACK: SendSuback,
    Kind.SEND_UNSUBACK: SendUnsuback,
    Kind.CLOSE: Close,
    Kind.SEND_PUBLISH_MANY: SendPublishMany,
    Kind.ROUTED: Routed,
    Kind.ROUTED_MANY: RoutedMany,
    Kind.STORED: Stored,
    Kind.SUB: Sub,
    Kind.UNSUB: Unsub,
    Kind.UNSUB_ALL: UnsubAll,
    Kind.ROUTE: Route,
    Kind.WORKER_UP: WorkerUp,
    Kind.ONLINE: Online,
    Kind.SYNCED: Synced,
    Kind.RESYNC: Resync,
    Kind.FENCE: Fence,
    Kind.DELIVER: Deliver,
    Kind.SUBSCRIBED: Subscribed,
    Kind.UNSUBSCRIBED: Unsubscribed,
    Kind.ROUTER_UP: RouterUp,
    Kind.FENCED: Fenced,
    Kind.RETAINED: Retained,
    Kind.AUTHENTICATE: Authenticate,
    Kind.AUTHORIZE: Authorize,
    Kind.AUTH_REPLY: AuthReply,
    Kind.HEARTBEAT: Heartbeat,
    Kind.SHARD_AT: ShardAt,
    Kind.ROUTERS_LIVE: RoutersLive,
}
"""Each kind's NamedTuple (tests/unit/flockmq/test_envelopes.py checks it is
one per kind)."""


def read(e: Wire) -> Envelope:
    """A received envelope as its NamedTuple (KeyError: unknown kind;
    TypeError: wrong arity). Not for the per-message handlers (see above)."""
    return SCHEMA[e[0]]._make(e)  # type: ignore[no-any-return]


def kind_name(kind: object) -> str:
    try:
        return Kind(kind).name  # type: ignore[arg-type]
    except ValueError:
        return repr(kind)


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
