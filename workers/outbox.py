"""What a shard's pass produces, and the order it may leave in (sans-IO).

`Outbox` owns the outputs of a pass: envelopes for the router (`to_router`)
and for each acceptor (`to_acceptors`), store `ops`, and `after_commit`:
envelopes that promise durability, sent by the process only once this pass's
ops are committed. It also keeps what must wait behind those: envelopes for
the router made after one that waits (one connection's order), and envelopes
for a connection whose envelope waits for a commit (`behind_commit`: a
persistent session's SUBACK, or a QoS 2 PUBLISH whose packet id is not stored
yet, `send_held`): what is sent to that connection meanwhile waits behind it.
`failed_envelope` says what is sent instead of a held-back envelope whose
commit failed (None: nothing).

Invariants: `ops` holds store ops in the order they were made, and
`UnsavedMessage` placeholders for messages queued in this pass (`take_durable`
resolves them to their PutMessage); `unsaved` counts the placeholders.
`to_router`, `to_acceptors` and `behind_commit` are never replaced, only
changed (the process and `Shard` keep references to them); `ops` and
`after_commit` are replaced by `take_durable`: never keep a reference to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, cast

from flockmq import envelopes as env
from flockmq.envelopes import Envelope, Kind, acceptor_of
from flockmq.message_expiry import pack_stored_props
from flockmq.persistence import pack_blob
from flockmq.placement import router_of
from flockmq.store import Op, PutMessage, PutSession
from flockmq.workers.session import OutMessage, Session

_STORED: Final = Kind.STORED
_ROUTE: Final = Kind.ROUTE
_SEND_SUBACK: Final = Kind.SEND_SUBACK
_SEND_PUBLISH: Final = Kind.SEND_PUBLISH
_SEND_PUBLISHES: Final = Kind.SEND_PUBLISHES
_PUBLISH_FIELDS: Final = 7  # one message's fields in a SEND_PUBLISHES batch

# Where a held-back envelope goes: "router" (made so; `take_durable` turns it
# into ("router", i) for the router(s) it goes to) or an acceptor index.
Destination = str | int | tuple[str, int]


@dataclass(slots=True)
class UnsavedMessage:
    """Stands in `Outbox.ops` for the PutMessage of a message queued in this
    pass, made only when the pass ends (see `Outbox.take_durable`)."""

    client_id: str
    msg: OutMessage


@dataclass(slots=True, eq=False)
class Outbox:
    # Config.routers, and this shard's index (where a ROUTE with no reply goes)
    routers: int = 1
    shard: int = 0
    # each acceptor's router in a cluster (Config.acceptor_routers); (): acceptor % routers
    acceptor_routers: tuple[int, ...] = ()
    to_router: list[Envelope] = field(default_factory=list)
    to_acceptors: dict[int, list[Envelope]] = field(default_factory=dict)
    ops: list[Op | UnsavedMessage] = field(default_factory=list)
    unsaved: int = 0  # UnsavedMessage placeholders in ops
    after_commit: list[tuple[Destination, Envelope]] = field(default_factory=list)
    # What goes to the router leaves in the order it was made: once one
    # envelope for it waits for a commit (this pass: router_waits, or
    # earlier passes not yet committed: router_commits_pending, set by
    # hold_for_commit), the ones after it wait too (see send_router).
    router_commits_pending: int = 0
    router_waits: bool = False
    # Connections with envelopes that wait for a commit (send_held), with
    # how many: a persistent session's SUBACK (it promises the subscriptions
    # are kept), or a QoS 2 PUBLISH whose packet id is not stored yet (it
    # must never reach the client under an id a successor would not know:
    # the successor would deliver the publisher's resend again under
    # another id). What is sent to them meanwhile (the retained messages
    # after a SUBACK, the next messages) waits too, in order.
    behind_commit: dict[int, int] = field(default_factory=dict)
    # The connection of each envelope held by send_held in this pass
    # (hold_for_commit takes them: commit_done releases their connections).
    held_conns: list[int] = field(default_factory=list)
    # Several routers: connections with a SUBACK/UNSUBACK waiting for the
    # routers' answers, with how many, and what was made for them meanwhile
    # (the retained messages one router sends after its SUBSCRIBED, while
    # another has not answered yet): sent after that answer
    # (release_answers). Bounded by what the routers send for the
    # subscriptions of one SUBSCRIBE.
    behind_answers: dict[int, tuple[int, list[tuple[bool, Envelope]]]] = field(default_factory=dict)
    # Several routers: envelopes for the router sent to one router of the
    # shard's choosing (a will: its connection's router, see
    # send_router_via), by id(envelope); consumed as they leave (router_of)
    pinned: dict[int, int] = field(default_factory=dict)

    def send(self, conn: int, envelope: Envelope) -> None:
        """To the acceptor of `conn`, after its SUBACK if that waits."""
        if self.behind_answers and conn in self.behind_answers:
            self.behind_answers[conn][1].append((False, envelope))
            return
        acceptor = acceptor_of(conn)
        if self.behind_commit and conn in self.behind_commit:
            self.after_commit.append((acceptor, envelope))  # after what waits
            return
        out = self.to_acceptors.get(acceptor)
        if out is None:
            out = self.to_acceptors[acceptor] = []
        out.append(envelope)

    def hold_for_answers(self, conn: int) -> None:
        """What is sent to `conn` waits until its answer (`answered`)."""
        count, held = self.behind_answers.get(conn, (0, []))
        self.behind_answers[conn] = (count + 1, held)

    def answered(self, conn: int, ack: Envelope | None, durable: bool) -> None:
        """A SUBACK/UNSUBACK every router answered for (None: its connection
        is gone), after its commit if `durable`. With one router it goes now.
        With several it waits behind the answers awaited before it; the last
        awaited one goes with everything held behind it, in order."""
        entry = self.behind_answers.get(conn)
        if entry is None:
            if ack is not None:
                self._send_ack(conn, ack, durable)
            return
        count, held = entry
        if count > 1:
            if ack is not None:
                held.append((durable, ack))
            self.behind_answers[conn] = (count - 1, held)
            return
        del self.behind_answers[conn]
        if ack is not None:
            self._send_ack(conn, ack, durable)
        for was_durable, envelope in held:
            self._send_ack(conn, envelope, was_durable)

    def _send_ack(self, conn: int, envelope: Envelope, durable: bool) -> None:
        if durable:
            self.send_held(conn, envelope)
        else:
            self.send(conn, envelope)

    def send_after_commit(self, conn: int, envelope: Envelope) -> None:
        """To the acceptor of `conn` once this pass's ops are committed."""
        self.after_commit.append((acceptor_of(conn), envelope))

    def send_held(self, conn: int, envelope: Envelope) -> None:
        """To `conn` once this pass's ops are committed, and what is sent to
        `conn` after it waits behind it: a SUBACK that promises its
        subscriptions are kept, or QoS 2 PUBLISHes whose packet ids this
        pass stores. Behind a SUBACK still waiting for the routers' answers
        (several routers), it waits there, and then for the commit of the
        pass that releases it (later than its own: commits are in order)."""
        if self.behind_answers and conn in self.behind_answers:
            self.behind_answers[conn][1].append((True, envelope))
            return
        self.after_commit.append((acceptor_of(conn), envelope))
        self.behind_commit[conn] = self.behind_commit.get(conn, 0) + 1
        self.held_conns.append(conn)

    def send_router(self, envelope: Envelope) -> None:
        """To the router, after everything sent there before: a QoS 2 publish
        waiting for its commit must not be overtaken by a SUB, UNSUB, will or
        session end made after it (one connection's order, item 22)."""
        if self.router_waits or self.router_commits_pending:
            self.after_commit.append(("router", envelope))
        else:
            self.to_router.append(envelope)

    def send_router_via(self, envelope: env.RouteTuple, conn: int | None) -> None:
        """A ROUTE with no reply (a will) that goes through the router of
        `conn`'s acceptor (None: this shard's), like the publishes that came
        on that connection: so it comes after them at every subscriber."""
        if conn is not None and self.routers > 1:
            self.pinned[id(envelope)] = self.router_of_acceptor(acceptor_of(conn))
        self.send_router(envelope)

    def send_router_after_commit(self, envelope: env.RouteTuple) -> None:
        self.after_commit.append(("router", envelope))
        self.router_waits = True

    def put_session(self, session: Session) -> None:
        """Record a persistent session (its will as the store keeps it:
        `Will.stored`)."""
        if session.persistent:
            session.persisted = True
            will = session.will
            self.ops.append(
                PutSession(
                    session.client_id,
                    session.session_expiry,
                    session.protocol_level,
                    None if will is None else pack_blob(will.stored()),
                    session.disconnected_at,
                )
            )

    def put_message_later(self, client_id: str, msg: OutMessage) -> None:
        """A message queued in this pass: its PutMessage is made when the pass
        ends, with the packet id and state it has then."""
        msg.unsaved = True
        self.unsaved += 1
        self.ops.append(UnsavedMessage(client_id, msg))

    def take_durable(self) -> tuple[list[Op], list[tuple[Destination, Envelope]]]:
        """This pass's store ops and the envelopes that must wait for them. A
        message queued in this pass becomes its PutMessage only now, in its
        place, with the packet id and state it has now (most go in flight in
        the pass that queued them: one row written instead of a put and an
        update); one acknowledged in the same pass is not written at all."""
        ops, later = self.ops, self.after_commit
        self.ops, self.after_commit = [], []
        self.router_waits = False
        if later and self.routers > 1:
            later = self.per_router(later)
        if self.unsaved:
            self.unsaved = 0
            ops = [op for op in map(_resolve, ops) if op is not None]
        return cast(list[Op], ops), later

    def router_of(self, envelope: Envelope) -> int | None:
        """The one router a ROUTE goes to, or None: every router. A publish
        goes to its publisher's router (its acceptor's: Config.router_of), so
        that one publisher's messages are matched in order by one router; a
        will to its connection's router (send_router_via); this process's
        $SYS counters (no reply) to this shard's."""
        if envelope[0] != _ROUTE:
            return None  # a subscription change, ONLINE, SYNCED: every router's
        reply = envelope[7]
        if reply is None:
            if self.pinned:
                pinned = self.pinned.pop(id(envelope), None)
                if pinned is not None:
                    return pinned
            return self.shard % self.routers
        return self.router_of_acceptor(acceptor_of(reply[0]))

    def router_of_acceptor(self, acceptor: int) -> int:
        """The router of `acceptor` (Config.router_of)."""
        return router_of(acceptor, self.routers, self.acceptor_routers)

    def per_router(
        self, later: list[tuple[Destination, Envelope]]
    ) -> list[tuple[Destination, Envelope]]:
        """`later` with "router" as the router(s) each envelope goes to, in order."""
        out: list[tuple[Destination, Envelope]] = []
        for dest, e in later:
            if dest != "router":
                out.append((dest, e))
                continue
            one = self.router_of(e)
            if one is not None:
                out.append((("router", one), e))
            else:
                out.extend((("router", i), e) for i in range(self.routers))
        return out

    def split_to_router(self) -> list[list[Envelope]]:
        """`to_router` per router, each in its order (and emptied)."""
        per: list[list[Envelope]] = [[] for _ in range(self.routers)]
        for e in self.to_router:
            one = self.router_of(e)
            if one is not None:
                per[one].append(e)
            else:
                for out in per:
                    out.append(e)
        self.to_router.clear()
        return per

    def hold_for_commit(self, later: list[tuple[Destination, Envelope]]) -> tuple[bool, list[int]]:
        """The process commits a pass's ops; `later` waits for it: until
        `commit_done`, what follows it to the router or to a connection with
        an envelope held in it (send_held) waits too."""
        to_router = any(dest == "router" or isinstance(dest, tuple) for dest, _ in later)
        if to_router:
            self.router_commits_pending += 1
        held, self.held_conns = self.held_conns, []
        return to_router, held

    def commit_done(self, hold: tuple[bool, list[int]]) -> None:
        to_router, held = hold
        if to_router:
            self.router_commits_pending -= 1
        behind = self.behind_commit
        for conn in held:
            left = behind.get(conn, 0) - 1
            if left > 0:
                behind[conn] = left
            else:
                behind.pop(conn, None)


def _resolve(op: Op | UnsavedMessage) -> Op | None:
    """A placeholder of `Outbox.ops` as its PutMessage (None: acknowledged
    before it was written); any other op as it is."""
    if type(op) is not UnsavedMessage:
        return op  # type: ignore[return-value]
    msg = op.msg
    if not msg.unsaved:
        return None
    msg.unsaved = False
    return PutMessage(
        op.client_id,
        msg.seq,
        msg.topic,
        msg.payload,
        msg.qos,
        msg.retain,
        pack_stored_props(msg.props, msg.deadline),
        msg.packet_id,
        msg.state,
    )


def failed_envelope(dest: Destination, e: Envelope) -> tuple[Destination, Envelope] | None:
    """What to send instead of a durability promise whose commit failed.

    Every kind a shard holds back for a commit (`after_commit`), told apart
    by its kind (built as a plain tuple or a NamedTuple: see
    flockmq/envelopes.py):

    - STORED (a copy for this shard's persistent sessions): ok becomes False,
      so the publisher's acceptor does not acknowledge the publish.
    - ROUTE of a QoS 2 publish from a persistent session (its packet id and
      token were not kept): not routed; the publisher's acceptor gets STORED
      False instead (no PUBREC; it closes the connection and the client
      resends).
    - SEND_SUBACK for a persistent session: every subscription refused (0x80).
    - SEND_ACK (a PUBREL whose AWAIT_COMP state was not kept): sent as it is.
    - SEND_PUBLISH(ES) of QoS 2 messages whose packet ids were not kept
      (`send_held`): not sent (None, or the batch without them). A client
      must never hold a QoS 2 packet id that a successor of this shard
      would not know: it would deliver the publisher's resend again under
      another id. The message stays in flight here and goes, with DUP, when
      the session resumes (the client reconnects, or a successor loads
      what was stored). A QoS 2 PUBLISH held back for any other reason (a
      resend, DUP, of a stored one) is sent as it is.
    - Anything else for the router made after a held-back ROUTE (SUB, UNSUB,
      ONLINE, a will: see Outbox.send_router): sent as it is, in its order.
    - Anything for a connection made after its held-back SUBACK (the retained
      messages: see Outbox.behind_commit): sent as it is, in its order.
    """
    kind = e[0]
    if kind == _STORED:
        _, conn, packet_id, _ok, attempt = cast(env.StoredTuple, e)
        failed: env.StoredTuple = (_STORED, conn, packet_id, False, attempt)
        return dest, failed
    if kind == _ROUTE:
        _, _origin, _topic, _payload, _qos, _retain, _props, reply = cast(env.RouteTuple, e)
        if reply is not None:  # a QoS 2 publish whose id was not kept
            conn, packet_id, attempt, _uid, _key = reply
            refused: env.StoredTuple = (_STORED, conn, packet_id, False, attempt)
            return acceptor_of(conn), refused
    elif kind == _SEND_SUBACK:
        suback = env.SendSuback._make(e)
        return dest, suback._replace(codes=[0x80 for _ in suback.codes])
    elif kind in (_SEND_PUBLISH, _SEND_PUBLISHES):
        return _without_new_qos2(dest, e)
    return dest, e


def _without_new_qos2(dest: Destination, e: Envelope) -> tuple[Destination, Envelope] | None:
    """A SEND_PUBLISH(ES) without its QoS 2 messages that are not resends
    (their packet ids were not stored), or None when nothing is left."""
    if e[0] == _SEND_PUBLISH:
        # (kind, conn, packet id, topic, payload, qos, retain, dup, props)
        return None if e[5] == 2 and not e[7] else (dest, e)
    _, conn, fields = cast(env.SendPublishesTuple, e)
    kept: list[Any] = []
    for i in range(0, len(fields), _PUBLISH_FIELDS):
        one = fields[i : i + _PUBLISH_FIELDS]
        # (packet id, topic, payload, qos, retain, dup, props)
        if not (one[3] == 2 and not one[5]):
            kept += one
    if len(kept) == len(fields):
        return dest, e
    if not kept:
        return None
    batch: env.SendPublishesTuple = (_SEND_PUBLISHES, conn, kept)
    return dest, batch
