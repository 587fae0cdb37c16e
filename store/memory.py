"""In-memory store for `--persistence none`: the Store interface over dicts.

Behaves like the SQLite store for every op and load (the tests run both), but
its state dies with the process. Invariants: one lock guards all tables, so a
batch from a committer thread is applied atomically with respect to loads; ops
are validated before any is applied, so a failing batch changes nothing; loads
return fresh records, never the dicts themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from .base import (
    DeleteInboundQos2,
    DeleteMessage,
    DeleteRetained,
    DeleteSession,
    DeleteSubscription,
    ExpireRetained,
    InboundQos2Record,
    MessageRecord,
    Op,
    PruneSeenQos2,
    PutInboundQos2,
    PutMessage,
    PutRetained,
    PutSeenQos2,
    PutSession,
    PutSubscription,
    RetainedRecord,
    SeenQos2Record,
    SessionRecord,
    Store,
    StoreError,
    SubscriptionRecord,
    UpdateMessage,
    Writer,
)

MEMORY_PATH = ":memory:"

_OP_TYPES = (
    PutSession,
    DeleteSession,
    PutSubscription,
    DeleteSubscription,
    PutMessage,
    UpdateMessage,
    DeleteMessage,
    PutInboundQos2,
    DeleteInboundQos2,
    PutSeenQos2,
    PruneSeenQos2,
    PutRetained,
    DeleteRetained,
    ExpireRetained,
)


class _MemoryWriter(Writer):
    """A committer's handle: the same tables, serialised by the store's lock."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def apply(self, ops: Iterable[Op]) -> None:
        self._store._apply_batch(list(ops))

    def close(self) -> None:
        pass


class MemoryStore(Store):
    def __init__(self) -> None:
        self.path = MEMORY_PATH
        self._lock = threading.Lock()
        self._closed = False
        self._sessions: dict[str, PutSession] = {}
        self._subs: dict[str, dict[str, SubscriptionRecord]] = {}
        self._messages: dict[str, dict[int, MessageRecord]] = {}
        self._qos2: dict[str, dict[int, int]] = {}  # client id -> packet id -> token
        # destination client id -> (origin, packet id) -> token, and the reverse
        # index origin -> packet id -> destinations
        self._seen: dict[str, dict[tuple[str, int], int]] = {}
        self._seen_at: dict[str, dict[int, set[str]]] = {}
        self._retained: dict[str, RetainedRecord] = {}

    def writer(self) -> Writer:
        return _MemoryWriter(self)

    def apply(self, ops: Iterable[Op]) -> None:
        self._check_open()
        self._apply_batch(list(ops))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    def _apply_batch(self, batch: list[Op]) -> None:
        for op in batch:
            if not isinstance(op, _OP_TYPES):
                raise StoreError(f"{self.path}: not a store op: {op!r}")
        with self._lock:
            for op in batch:
                self._apply_one(op)

    def _apply_one(self, op: Op) -> None:
        match op:
            case PutSession() | DeleteSession() | PutSubscription() | DeleteSubscription():
                self._apply_session_op(op)
            case PutMessage() | UpdateMessage() | DeleteMessage():
                self._apply_message_op(op)
            case PutInboundQos2() | DeleteInboundQos2() | PutSeenQos2() | PruneSeenQos2():
                self._apply_qos2_op(op)
            case PutRetained() | DeleteRetained() | ExpireRetained():
                self._apply_retained_op(op)

    def _apply_session_op(self, op: Op) -> None:
        """Sessions and their subscriptions."""
        match op:
            case PutSession():
                self._sessions[op.client_id] = op
            case DeleteSession(client_id=cid):
                self._sessions.pop(cid, None)
                self._subs.pop(cid, None)
                self._messages.pop(cid, None)
                self._qos2.pop(cid, None)
                for origin, packet_id in self._seen.pop(cid, {}):
                    self._seen_at[origin][packet_id].discard(cid)
                for packet_id in list(self._seen_at.get(cid, ())):
                    self._forget_seen(cid, packet_id)
            case PutSubscription():
                self._subs.setdefault(op.client_id, {})[op.topic_filter] = SubscriptionRecord(
                    op.topic_filter,
                    op.qos,
                    bool(op.no_local),
                    bool(op.retain_as_published),
                    op.retain_handling,
                    op.sub_id,
                )
            case DeleteSubscription():
                self._subs.get(op.client_id, {}).pop(op.topic_filter, None)

    def _apply_message_op(self, op: Op) -> None:
        """Queued and in-flight messages."""
        match op:
            case PutMessage():
                self._messages.setdefault(op.client_id, {})[op.seq] = MessageRecord(
                    op.seq,
                    op.topic,
                    bytes(op.payload),
                    op.qos,
                    bool(op.retain),
                    op.props,
                    op.packet_id,
                    op.state,
                )
            case UpdateMessage():
                rows = self._messages.get(op.client_id, {})
                old = rows.get(op.seq)
                if old is not None:
                    rows[op.seq] = MessageRecord(
                        old.seq,
                        old.topic,
                        old.payload,
                        old.qos,
                        old.retain,
                        old.props,
                        op.packet_id,
                        op.state,
                    )
            case DeleteMessage():
                self._messages.get(op.client_id, {}).pop(op.seq, None)

    def _apply_qos2_op(self, op: Op) -> None:
        """Inbound QoS 2 packet ids and the seen rows that deduplicate them."""
        match op:
            case PutInboundQos2():
                self._qos2.setdefault(op.client_id, {}).setdefault(op.packet_id, op.token)
            case DeleteInboundQos2():
                self._qos2.get(op.client_id, {}).pop(op.packet_id, None)
                self._forget_seen(op.client_id, op.packet_id)
            case PutSeenQos2():
                self._seen.setdefault(op.client_id, {})[(op.origin, op.packet_id)] = op.token
                at = self._seen_at.setdefault(op.origin, {})
                at.setdefault(op.packet_id, set()).add(op.client_id)
            case PruneSeenQos2():
                for dest, seen in self._seen.items():
                    for origin, packet_id in list(seen):
                        if self._qos2.get(origin, {}).get(packet_id) != seen[(origin, packet_id)]:
                            del seen[(origin, packet_id)]
                            self._seen_at[origin][packet_id].discard(dest)

    def _apply_retained_op(self, op: Op) -> None:
        """Retained messages."""
        match op:
            case PutRetained():
                self._retained[op.topic] = RetainedRecord(
                    op.topic, bytes(op.payload), op.qos, op.props
                )
            case DeleteRetained():
                self._retained.pop(op.topic, None)
            case ExpireRetained():
                if self._retained.get(op.topic) == RetainedRecord(
                    op.topic, op.payload, op.qos, op.props
                ):
                    del self._retained[op.topic]

    def _forget_seen(self, origin: str, packet_id: int) -> None:
        """Every destination's seen row of (origin, packet id)."""
        dests = self._seen_at.get(origin, {}).pop(packet_id, ())
        for dest in dests:
            self._seen.get(dest, {}).pop((origin, packet_id), None)

    def load_sessions(self, accept: Callable[[str], bool]) -> list[SessionRecord]:
        self._check_open()
        with self._lock:
            out = []
            for cid in sorted(self._sessions):
                if not accept(cid):
                    continue
                s = self._sessions[cid]
                subs = self._subs.get(cid, {})
                msgs = self._messages.get(cid, {})
                qos2 = self._qos2.get(cid, {})
                seen = self._seen.get(cid, {})
                out.append(
                    SessionRecord(
                        cid,
                        s.expiry,
                        s.protocol_level,
                        s.will,
                        s.disconnected_at,
                        tuple(subs[f] for f in sorted(subs)),
                        tuple(msgs[q] for q in sorted(msgs)),
                        tuple(InboundQos2Record(p, qos2[p]) for p in sorted(qos2)),
                        tuple(SeenQos2Record(o, p, seen[(o, p)]) for o, p in sorted(seen)),
                    )
                )
            return out

    def load_retained(self) -> list[RetainedRecord]:
        self._check_open()
        with self._lock:
            return [self._retained[t] for t in sorted(self._retained)]

    def close(self) -> None:
        # Like a SQLite connection: this handle stops working, writers do not.
        self._closed = True
