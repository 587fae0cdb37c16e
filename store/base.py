"""The durable-state interface: records, write ops, the Store ABC, StoreError.

A store holds six tables of rows:

- sessions (client id, expiry, protocol level, will, when disconnected), and per
  session its subscriptions, its messages, its inbound QoS 2 packet ids (each
  with the token that names the message across resends) and the QoS 2 messages
  it took from other clients that their publishers may still resend (origin,
  packet id, token: `seen_qos2`): written by the worker whose shard owns the
  client id, except that the publisher's PUBREL (`DeleteInboundQos2`) and the
  end of the publisher's session (`DeleteSession`) also delete the `seen_qos2`
  rows of that publish / publisher at every destination (once released, it is
  never resent);
- retained messages: written by the router.

Invariants:

- Writes are ops (a small closed set of frozen, slotted dataclasses, below)
  applied by `Store.apply` in order, all of one call in ONE transaction: either
  every op of the call is durable or none is.
- Messages form one ordered table per session: `seq` (chosen by the caller,
  increasing) orders the offline queue and the outbound in-flight window alike;
  `packet_id` is 0 while a message is queued, `state` is AWAIT_ACK (0) or
  AWAIT_COMP (1) as in `workers.session`.
- `DeleteSession` also deletes the session's subscriptions, messages, inbound
  QoS 2 ids and seen rows, and every seen row whose origin it is. Deleting or
  updating a row that is not there is a no-op.
- Wills and properties are opaque bytes (the caller msgpacks them) or None.
- Loads return plain records, sorted (sessions by client id, subscriptions by
  filter, messages by seq, qos2 ids ascending, seen rows by (origin, packet id),
  retained messages by topic), and never alias the store's own state.
- Every backend failure surfaces as `StoreError`, whose message names the file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

FORMAT_VERSION = 2
"""The store format this code writes, and the newest it reads. Older formats
are migrated in place when opened (1 -> 2: inbound QoS 2 tokens, seen_qos2, the
unused inbound table dropped)."""

DURABILITIES = ("process", "power")
# SQLite's busy timeout (store.sqlite); here so that open_store's default needs no sqlite3.
DEFAULT_BUSY_TIMEOUT_MS = 10_000
"""process: a commit survives any process being killed (WAL, synchronous=NORMAL).
power: a commit also survives power loss (synchronous=FULL, fsync each commit)."""


class StoreError(Exception):
    """The store cannot be opened, read or written. The message names the file."""


# --------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    sub_id: int | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: bytes | None
    packet_id: int = 0  # 0 while queued
    state: int = 0  # 0: awaiting PUBACK/PUBREC, 1: awaiting PUBCOMP


@dataclass(frozen=True, slots=True)
class InboundQos2Record:
    packet_id: int
    token: int  # names the message across resends; 0 for rows from format 1


@dataclass(frozen=True, slots=True)
class SeenQos2Record:
    origin: str  # the publisher's client id
    packet_id: int
    token: int


@dataclass(frozen=True, slots=True)
class SessionRecord:
    client_id: str
    expiry: int
    protocol_level: int
    will: bytes | None
    disconnected_at: float | None
    subscriptions: tuple[SubscriptionRecord, ...] = ()
    messages: tuple[MessageRecord, ...] = ()  # in seq order
    inbound_qos2: tuple[InboundQos2Record, ...] = ()  # by packet id
    seen_qos2: tuple[SeenQos2Record, ...] = ()  # by (origin, packet id)


@dataclass(frozen=True, slots=True)
class RetainedRecord:
    topic: str
    payload: bytes
    qos: int
    props: bytes | None


# ------------------------------------------------------------------------- ops


@dataclass(frozen=True, slots=True)
class PutSession:
    """Insert or replace the session row (its subscriptions etc. are untouched)."""

    client_id: str
    expiry: int
    protocol_level: int
    will: bytes | None
    disconnected_at: float | None


@dataclass(frozen=True, slots=True)
class DeleteSession:
    """Delete the session and its subscriptions, messages and inbound QoS 2 ids."""

    client_id: str


@dataclass(frozen=True, slots=True)
class PutSubscription:
    client_id: str
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    sub_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteSubscription:
    client_id: str
    topic_filter: str


@dataclass(frozen=True, slots=True)
class PutMessage:
    """Insert or replace the message (client_id, seq)."""

    client_id: str
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: bytes | None
    packet_id: int = 0
    state: int = 0


@dataclass(frozen=True, slots=True)
class UpdateMessage:
    """A queued message went in flight, or a QoS 2 one moved to awaiting PUBCOMP."""

    client_id: str
    seq: int
    packet_id: int
    state: int


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    client_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class PutInboundQos2:
    """A QoS 2 publish received and not yet released (PUBREL). Putting a packet
    id that is already there keeps the existing row (and its token)."""

    client_id: str
    packet_id: int
    token: int = 0


@dataclass(frozen=True, slots=True)
class DeleteInboundQos2:
    """PUBREL: the packet id is free, and the publish is never resent, so every
    destination's seen row for it goes too."""

    client_id: str
    packet_id: int


@dataclass(frozen=True, slots=True)
class PutSeenQos2:
    """Session `client_id` took the QoS 2 message (origin, packet_id, token):
    a resend of it must not be delivered again. Replaces the row of an older
    message with the same (origin, packet_id)."""

    client_id: str
    origin: str
    packet_id: int
    token: int


@dataclass(frozen=True, slots=True)
class PruneSeenQos2:
    """Delete every seen row whose publish is no longer held by its publisher's
    session (no inbound QoS 2 row with that packet id and token): released or
    ended while the row was being written by another process."""


@dataclass(frozen=True, slots=True)
class PutRetained:
    topic: str
    payload: bytes
    qos: int
    props: bytes | None


@dataclass(frozen=True, slots=True)
class DeleteRetained:
    topic: str


@dataclass(frozen=True, slots=True)
class ExpireRetained:
    """Delete the topic's retained message only if it is still this one (the
    same payload, QoS and stored props, whose blob holds its expiry
    deadline): a router's expiry never deletes a message stored since by
    another router (another broker on the same PostgreSQL database, whose
    writes this router never saw)."""

    topic: str
    payload: bytes
    qos: int
    props: bytes | None


Op = (
    PutSession
    | DeleteSession
    | PutSubscription
    | DeleteSubscription
    | PutMessage
    | UpdateMessage
    | DeleteMessage
    | PutInboundQos2
    | DeleteInboundQos2
    | PutSeenQos2
    | PruneSeenQos2
    | PutRetained
    | DeleteRetained
    | ExpireRetained
)


# ----------------------------------------------------------------------- store


class Writer(ABC):
    """A handle that applies ops, owned by one thread (the committer's)."""

    @abstractmethod
    def apply(self, ops: Iterable[Op]) -> None:
        """Apply `ops` in order in one transaction and commit; StoreError on failure
        (then nothing of `ops` is applied)."""

    @abstractmethod
    def close(self) -> None: ...


class Store(ABC):
    """Durable state of one broker host. Methods are for the thread that opened
    the store; a committer thread gets its own handle from `writer()`."""

    path: str  # the database file, or ":memory:"

    @abstractmethod
    def writer(self) -> Writer:
        """A new write handle for the calling thread (its own connection)."""

    @abstractmethod
    def apply(self, ops: Iterable[Op]) -> None:
        """Apply `ops` in order in one transaction, synchronously (tests, tools,
        shutdown); the event loop uses a `Committer` instead."""

    @abstractmethod
    def load_sessions(self, accept: Callable[[str], bool]) -> list[SessionRecord]:
        """Every session whose client id `accept`s, with its subscriptions,
        messages (seq order), inbound QoS 2 ids and seen QoS 2 messages; sorted
        by client id."""

    @abstractmethod
    def load_retained(self) -> list[RetainedRecord]:
        """Every retained message, sorted by topic."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
