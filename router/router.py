"""The router's logic (sans-IO): subscriptions from every shard, matching, and
the retained store.

Envelopes in (`handle`), envelopes out (`to_workers[shard]`, `to_acceptors[i]`).
Each publish is matched once, merged to one copy per subscriber at the highest
granted QoS [MQTT-3.3.5-1], and sent as one DELIVER per destination shard that
carries every target on that shard. A copy that goes out at QoS 0 to a session
that is online needs no session state, so it goes straight to the acceptor that
holds the connection (one SEND_PUBLISH_MANY per acceptor), skipping a hop.

The routing plan of a topic (who gets it, through which shard or acceptor) is
cached per (topic, QoS 0 or not) and dropped whenever a subscription or a
session's online state changes. Plans that depend on the publisher (no_local)
or rotate (shared subscriptions) are computed per message.

Durability: retained messages are written to the store (`ops`); a QoS 1/2
publish that carries a reply address gets ROUTED (how many shards will confirm
it) sent to its acceptor, after the retained write is committed when it set one
(`after_commit`).

Several routers (Config.routers > 1, router `index` of `routers`): each holds
every subscription (every worker sends each change to every router, and each
router answers SUBSCRIBED/UNSUBSCRIBED with its index), and matches the
publishes that arrive at it, each exactly once: its acceptors' and the
workers' it is the router of. The retained messages a SUBSCRIBE asks for are
sent by one router only, the subscriber's acceptor's (Config.router_of).
Retained updates are shared between routers as RETAINED envelopes; which one
wins and who writes the store: router/replication.py.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, NamedTuple, cast

from flockmq import __version__
from flockmq import envelopes as env
from flockmq.envelopes import ACCEPTOR_SHIFT, Envelope, Kind, Wire, acceptor_of, incarnation_of
from flockmq.isolation import EnvelopeGuard
from flockmq.message_expiry import (
    NEVER,
    deadline_of,
    has_expired,
    pack_stored_props,
    props_to_send,
    unpack_stored_props,
)
from flockmq.mqtt.topics import SYS_PREFIX, is_shared
from flockmq.placement import router_of
from flockmq.shard_plan import MAX_SHARDS
from flockmq.sizes import message_size
from flockmq.store import DeleteRetained, ExpireRetained, Op, PutRetained, RetainedRecord

from .replication import Versions
from .resync import Resyncs
from .retained import RetainedStore
from .sys_topics import SysTopics
from .topic_tree import TopicTree

log = logging.getLogger("flockmq.router")

MAX_PLANS = 50_000
MAX_PLANS_BYTES = 16 * 1024 * 1024
PLAN_BYTES = 300  # a plan's own objects, estimated
TARGET_BYTES = 100  # one target (or connection) in a plan, estimated


class Subscription(NamedTuple):
    """What the tree holds per (subscriber, filter)."""

    shard: int
    qos: int
    no_local: bool
    retain_as_published: bool
    sub_id: int | None
    persistent: bool = False  # the session's copies must be stored before a PUBACK


class RetainedMessage(NamedTuple):
    payload: bytes
    qos: int
    props: dict[str, Any] | None
    deadline: float = NEVER  # MQTT 5 message expiry (flockmq/message_expiry.py)


class Plan(NamedTuple):
    """Where one topic's messages go. `direct`: (acceptor, retain_as_published,
    [conn...]) for QoS 0 copies to online sessions; `shards`: (shard, [target...])
    for everything that needs session state."""

    direct: list[tuple[int, bool, list[int]]]
    shards: list[tuple[int, list[env.Target], bool]]  # (shard, targets, must confirm)
    cacheable: bool
    confirming: int  # shards that must confirm (those of `shards` with must confirm)


EMPTY_PLAN = Plan([], [], True, 0)

# Publishes held while shards re-send their subscriptions after a router
# restart: past this, routing starts without waiting for the rest.
MAX_HELD_BYTES = 64 * 1024 * 1024


# The per-message kinds, bound once: an IntEnum member costs ~50 ns to look up.
# ROUTED, DELIVER and SEND_PUBLISH_MANY are built as plain tuples on the
# per-message path (typed by env.RoutedTuple etc.: see flockmq/envelopes.py).
_ROUTE: Final = Kind.ROUTE
_FENCE: Final = Kind.FENCE
_ROUTED: Final = Kind.ROUTED
_ROUTED_MANY: Final = Kind.ROUTED_MANY
_DELIVER: Final = Kind.DELIVER
_SEND_PUBLISH_MANY: Final = Kind.SEND_PUBLISH_MANY

# Where a held-back envelope (a ROUTED) goes: an acceptor's index.
Destination = int


class Router:
    def __init__(
        self,
        max_retained_messages: int = 1_000_000,
        max_retained_bytes: int = 1024 * 1024 * 1024,
        index: int = 0,
        routers: int = 1,
        acceptor_routers: tuple[int, ...] = (),
    ) -> None:
        """`index` of `routers` (Config.routers): see the module docstring.
        `acceptor_routers`: each acceptor's router in a cluster (its node's:
        Config.acceptor_routers); () for acceptor % routers."""
        self.index = index
        self.routers = routers
        self.acceptor_routers = acceptor_routers
        self.peers = [i for i in range(routers) if i != index]
        # the version of every retained topic: only with several routers
        self.versions: Versions | None = Versions(index, routers) if routers > 1 else None
        self.to_routers: dict[int, list[Envelope]] = {}
        self.tree: TopicTree[str, Subscription] = TopicTree()
        self.retained: RetainedStore[RetainedMessage] = RetainedStore(sizeof=_retained_size)
        self._sys_topics: set[str] = set()  # retained $SYS topics (the broker's)
        # Mosquitto's broker-wide $SYS topics, from every process's counters
        self.mosquitto_sys = SysTopics(__version__)
        # Past either, a retained publish to a new topic (or one that makes
        # its topic's message larger) is delivered but not retained.
        self.max_retained_messages = max_retained_messages
        self.max_retained_bytes = max_retained_bytes
        self.shard_clients: dict[int, set[str]] = {}
        self.online: dict[str, int] = {}  # client id -> conn, for online sessions
        self.plans: dict[tuple[str, bool], Plan] = {}
        self.plans_bytes = 0  # estimated bytes held by `plans`
        self.to_workers: dict[int, list[Envelope]] = {}
        self.to_acceptors: dict[int, list[Envelope]] = {}
        self.ops: list[Op] = []
        self.now = 0.0  # wall-clock time of what is being handled, set by the process
        self.expiring: list[tuple[float, str]] = []  # heap of (deadline, retained topic)
        # PostgreSQL store: a worker serves after a standby spell, another
        # broker may have changed the retained messages (router/retained_reload.py)
        self.retained_reload_wanted = False
        self.retained_touched: set[str] | None = None  # topics written while reloading
        self.after_commit: list[tuple[Destination, Envelope]] = []  # (acceptor, ROUTED)
        self.counters: Counter[str] = Counter()
        self.guard = EnvelopeGuard("router", self.counters, log)
        self._handlers: dict[int, Callable[[Wire], None]] = {
            env.Kind.ROUTE: self._on_route,
            env.Kind.SUB: self._on_sub,
            env.Kind.UNSUB: self._on_unsub,
            env.Kind.UNSUB_ALL: self._on_unsub_all,
            env.Kind.WORKER_UP: self._on_worker_up,
            env.Kind.ACCEPTOR_UP: self._on_acceptor_up,
            env.Kind.ONLINE: self._on_online,
            env.Kind.SYNCED: self._on_synced,
            env.Kind.RESYNC: self._on_resync,
            env.Kind.FENCE: self._on_fence,
            env.Kind.RETAINED: self._on_retained,
            env.Kind.ROUTER_UP: self._on_router_up,
        }
        # Shards that have not re-sent their subscriptions since this router
        # started; publishes wait (in order) until none is left.
        self.unsynced: set[int] = set()
        self.held: list[Wire] = []
        self.held_bytes = 0
        self.shards = MAX_SHARDS  # the broker's (expect_sync): RESYNC is checked against it
        self.resyncs = Resyncs()  # shards re-sending their whole set (router/resync.py)

    def router_of(self, acceptor: int) -> int:
        """The router of `acceptor` (Config.router_of)."""
        return router_of(acceptor, self.routers, self.acceptor_routers)

    def load_retained(self, records: list[RetainedRecord]) -> None:
        for rec in records:
            try:
                props, deadline = unpack_stored_props(rec.props)
                message = RetainedMessage(rec.payload, rec.qos, props, deadline)
                self._set_retained(rec.topic, message)
                if self.versions is not None:
                    self.versions.loaded(rec.topic)
            except Exception:
                # A damaged row costs only itself.
                self.counters["retained_not_loaded"] += 1
                log.exception("router: retained message %r cannot be loaded: skipped", rec.topic)

    def _set_retained(self, topic: str, msg: RetainedMessage) -> None:
        self.retained.set(topic, msg)
        if msg.deadline != NEVER:
            expiring = self.expiring
            heapq.heappush(expiring, (msg.deadline, topic))
            if len(expiring) > 1024 + 4 * len(self.retained):
                # Mostly deadlines of messages replaced since: keep the live ones.
                self.expiring = [
                    (m.deadline, t) for t, m in self.retained.items() if m.deadline != NEVER
                ]
                heapq.heapify(self.expiring)

    def expire_retained(self, now: float) -> None:
        """Retained messages past their deadline are deleted [MQTT-3.3.2-5]
        (from the store too), whether or not anyone subscribes again."""
        expiring = self.expiring
        while expiring and expiring[0][0] <= now:
            deadline, topic = heapq.heappop(expiring)
            msg = self.retained.get(topic)
            if msg is not None and msg.deadline == deadline:  # not replaced since
                self.counters["retained_expired"] += 1
                self.retained.set(topic, None)
                versions = self.versions
                writes = versions is None or versions.expired(topic, deadline, now)
                if _durable(topic) and writes:
                    if self.retained_touched is not None:
                        self.retained_touched.add(topic)
                    # only the message that expired: another broker's router
                    # may have stored a newer one since (PostgreSQL store)
                    blob = pack_stored_props(msg.props, msg.deadline)
                    self.ops.append(ExpireRetained(topic, msg.payload, msg.qos, blob))

    def take_durable(self) -> tuple[list[Op], list[tuple[Destination, Envelope]]]:
        ops, later = self.ops, self.after_commit
        self.ops, self.after_commit = [], []
        return ops, later

    def expect_sync(self, shards: int) -> None:
        self.shards = shards
        self.unsynced = set(range(shards))

    def stop_waiting_for_sync(self, why: str = "in time") -> None:
        """A shard that never answered (it is dead; it re-sends its
        subscriptions when it restarts), or publishes held past MAX_HELD_BYTES:
        route what was held."""
        if self.unsynced:
            log.warning(
                "router: shards %s did not re-send subscriptions %s", sorted(self.unsynced), why
            )
            self.unsynced.clear()
            self._release_held()

    def _on_synced(self, e: Wire) -> None:
        self.unsynced.discard(env.Synced._make(e).shard)
        if not self.unsynced:
            self._release_held()

    def _on_resync(self, e: Wire) -> None:
        _, shard, epoch, end = env.check_resync(e, self.shards)
        if end:
            self._end_resync(shard, epoch)
        elif not self.resyncs.begin(shard, epoch):
            self.counters["stale_resyncs"] += 1

    def _end_resync(self, shard: int, epoch: int) -> None:
        """The shard re-sent its whole set: drop what it did not re-send
        (router/resync.py)."""
        clients = self.shard_clients.get(shard, set())
        tree = self.tree
        gone, stale = self.resyncs.end(shard, epoch, list(clients), tree.subscriptions_of)
        for client_id in gone:
            self.counters["resync_dropped_subscriptions"] += tree.unsubscribe_all(client_id)
            clients.discard(client_id)
            self.online.pop(client_id, None)
        for client_id, filters in stale:
            for topic_filter in filters:
                tree.unsubscribe(topic_filter, client_id)
            self.counters["resync_dropped_subscriptions"] += len(filters)
        if gone or stale:
            self._invalidate()
            log.info(
                "router: shard %d resynced: dropped %d sessions and %d stale subscribers' filters",
                shard,
                len(gone),
                len(stale),
            )

    def _release_held(self) -> None:
        held, self.held = self.held, []
        self.held_bytes = 0
        self.guard.handle_each(self.handle, held, self.now)

    def add_handler(self, kind: int, handler: Callable[[Wire], None]) -> None:
        """Envelopes of `kind` go to `handler` (a process's own: a cluster's
        SHARD_AT, flockmq/shard_routes.py)."""
        self._handlers[kind] = handler

    def handle(self, envelope: Wire, now: float | None = None) -> None:
        """One envelope (at wall-clock time `now`, or `self.now`). It may
        raise: the runtime isolates each envelope (flockmq/isolation.py)."""
        if now is not None:
            self.now = now
        kind = envelope[0]
        if self.unsynced and kind == _ROUTE:
            self._hold(envelope)
            return
        if self.unsynced and kind == _FENCE:
            self.held.append(envelope)  # answered after the ROUTEs held before it
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self.counters["unknown_envelopes"] += 1
            self.guard.limited.warning("router: unknown envelope kind %r", kind)
            return
        handler(envelope)

    def _hold(self, route: Wire) -> None:
        """Acceptors' publishes wait in their pipes while shards resync (the
        process does not read them meanwhile); what workers send (wills, QoS 2
        publishes of persistent sessions) waits here, up to MAX_HELD_BYTES."""
        _, _, topic, payload, _, _, props, _ = cast(env.Route, route)
        self.held_bytes += message_size(topic, payload, props)
        self.held.append(route)
        if self.held_bytes > MAX_HELD_BYTES:
            self.counters["sync_cut_short"] += 1
            self.stop_waiting_for_sync(f"before {MAX_HELD_BYTES} bytes of publishes waited")

    def _out(self, shard: int) -> list[Envelope]:
        out = self.to_workers.get(shard)
        if out is None:
            out = self.to_workers[shard] = []
        return out

    def gauges(self) -> dict[str, int]:
        """Published with the counters (flockmq/sysstats.py)."""
        return {"retained_messages": len(self.retained) - len(self._sys_topics)}

    def _invalidate(self) -> None:
        if self.plans:
            self.plans.clear()
            self.plans_bytes = 0

    def _cache_plan(self, key: tuple[str, bool], plan: Plan) -> None:
        """Plans are cached per topic, bounded in entries and in bytes (a topic
        may be 64 KB long); a topic nobody subscribes to is never cached."""
        targets = sum(len(conns) for _, _, conns in plan.direct) + sum(
            len(targets) for _, targets, _ in plan.shards
        )
        cost = PLAN_BYTES + len(key[0]) + TARGET_BYTES * targets
        if len(self.plans) >= MAX_PLANS or self.plans_bytes + cost > MAX_PLANS_BYTES:
            self._invalidate()
        if cost <= MAX_PLANS_BYTES:
            self.plans[key] = plan
            self.plans_bytes += cost

    # --- publishes ------------------------------------------------------------------
    def _on_route(self, e: Wire) -> None:  # noqa: C901, PLR0912
        """One publish. One function, over the complexity bound, on purpose:
        it is the per-message path (scripts/bench_handlers.py), where a call
        per step costs more than the step."""
        # Unpacked, not built: see flockmq/envelopes.py (the hot path).
        _, origin, topic, payload, qos, retain, props, reply = cast(env.Route, e)
        self.counters["messages_routed"] += 1
        if retain:
            self.store_retained(topic, payload, qos, props)
        key = (topic, qos == 0)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plan(topic, qos, origin)
            if plan.cacheable and plan is not EMPTY_PLAN:
                self._cache_plan(key, plan)
        if reply is not None:
            conn, packet_id, attempt, uid, qos2_key = reply
            if retain:
                routed: env.RoutedTuple = (_ROUTED, conn, packet_id, plan.confirming, attempt)
                self.after_commit.append((conn >> ACCEPTOR_SHIFT, routed))
            else:
                # One ROUTED_MANY per run of them (see env.RoutedMany)
                acceptor = conn >> ACCEPTOR_SHIFT  # acceptor_of, inline
                out = self.to_acceptors.get(acceptor)
                if out is None:
                    out = self.to_acceptors[acceptor] = []
                last = out[-1] if out else None
                if last is not None and last[0] == _ROUTED_MANY:
                    last[1].extend((conn, packet_id, plan.confirming, attempt))
                else:
                    many: env.RoutedManyTuple = (
                        _ROUTED_MANY,
                        [conn, packet_id, plan.confirming, attempt],
                    )
                    out.append(many)
        if plan is EMPTY_PLAN:
            self.counters["messages_without_subscribers"] += 1
            return
        to_acceptors = self.to_acceptors
        for acceptor, rap, conns in plan.direct:
            out = to_acceptors.get(acceptor)
            if out is None:
                out = to_acceptors[acceptor] = []
            out.append((_SEND_PUBLISH_MANY, conns, topic, payload, retain and rap, props))
        to_workers = self.to_workers
        for shard, targets, confirm in plan.shards:
            out = to_workers.get(shard)
            if out is None:
                out = to_workers[shard] = []
            # A shard needs the reply to confirm its copies or to take a QoS 2
            # message once: else none is sent (one record less per message).
            deliver_reply: env.DeliverReplyTuple | None = (
                None
                if reply is None or not (confirm or qos == 2)
                else (conn, packet_id, attempt, uid, qos2_key, confirm)
            )
            out.append((_DELIVER, topic, payload, qos, retain, props, targets, deliver_reply))

    def plan(self, topic: str, qos: int, origin: str) -> Plan:
        matches = self.tree.match(topic)
        if not matches:
            return EMPTY_PLAN
        merged, cacheable = _merge_matches(matches, origin)
        direct: dict[tuple[int, bool], list[int]] = {}
        per_shard: dict[int, list[env.Target]] = {}
        confirming: set[int] = set()
        online = self.online
        for client_id, (shard, granted, rap, sub_ids, topic_filter, persistent) in merged.items():
            conn = online.get(client_id)
            if conn and (qos == 0 or granted == 0) and not sub_ids:
                direct.setdefault((acceptor_of(conn), rap), []).append(conn)
                continue
            targets = per_shard.get(shard)
            if targets is None:
                targets = per_shard[shard] = []
            targets.append(env.Target(client_id, granted, rap, sub_ids, topic_filter))
            if persistent:
                confirming.add(shard)
        return Plan(
            [(acceptor, rap, conns) for (acceptor, rap), conns in direct.items()],
            [(shard, targets, shard in confirming) for shard, targets in per_shard.items()],
            cacheable,
            len(confirming),
        )

    def store_retained(
        self, topic: str, payload: bytes, qos: int, props: dict[str, Any] | None
    ) -> None:
        """The last retained message per topic; an empty payload deletes it
        [MQTT-3.3.1-10, -11]. With several routers the update goes to the
        others too (`_share_retained`)."""
        durable = _durable(topic)
        if self.retained_touched is not None and durable:
            self.retained_touched.add(topic)
        if payload:
            if durable and self._over_retained_quota(topic, payload, props):
                return
            deadline = deadline_of(props, self.now)
            msg = RetainedMessage(payload, qos, props, deadline)
        else:
            msg = None
        self._apply_retained(topic, msg, write=durable)
        if self.versions is not None:
            stamp = self.versions.local(topic, self.now, deleted=msg is None)
            self._share_retained(topic, msg, stamp)

    def _apply_retained(self, topic: str, msg: RetainedMessage | None, write: bool) -> None:
        """Hold `msg` as the retained message of `topic` (None: delete it),
        and write that to the store if `write`."""
        if msg is not None:
            if not _durable(topic):
                # $SYS is the broker's own (a fixed set of counters): never
                # refused, and not counted against the clients' bounds.
                self._sys_topics.add(topic)
                self.mosquitto_sys.observe(topic, msg.payload)
            self._set_retained(topic, msg)
            if write:
                self.ops.append(
                    PutRetained(
                        topic, msg.payload, msg.qos, pack_stored_props(msg.props, msg.deadline)
                    )
                )
        else:
            self.retained.set(topic, None)
            self._sys_topics.discard(topic)
            if write:
                self.ops.append(DeleteRetained(topic))

    def _retained_envelope(
        self, topic: str, msg: RetainedMessage | None, stamp: int, origin: int
    ) -> env.Retained:
        if msg is None:
            return env.Retained(Kind.RETAINED, origin, stamp, topic, b"", 0, None, NEVER)
        return env.Retained(
            Kind.RETAINED, origin, stamp, topic, msg.payload, msg.qos, msg.props, msg.deadline
        )

    def _share_retained(self, topic: str, msg: RetainedMessage | None, stamp: int) -> None:
        """This router's retained update, to every other router, in this pass:
        at once, as it is delivered to subscribers at once, so that a
        subscriber who saw it and subscribes again through another router
        finds it there (it was in memory here before its write was
        committed too, as with one router). One that this router dies
        before committing is written by it when the others send it back
        (router/replication.py)."""
        shared = self._retained_envelope(topic, msg, stamp, self.index)
        for peer in self.peers:
            self._to_router(peer).append(shared)

    def _to_router(self, peer: int) -> list[Envelope]:
        out = self.to_routers.get(peer)
        if out is None:
            out = self.to_routers[peer] = []
        return out

    def _on_retained(self, e: Wire) -> None:
        """Another router's retained update (router/replication.py): applied
        if it is newer than what is held for its topic, without the retained
        bounds (the origin checked them: every router holds the same set),
        and written to the store if this router wrote the topic before."""
        update = env.check_retained(e, self.routers)
        versions = self.versions
        if versions is None:
            self.counters["retained_updates_refused"] += 1
            return
        # An update of this router's own (origin == index) comes back only
        # from another router after this one restarted: what its previous
        # incarnation committed and shared. Taken like any other, so that
        # this router holds the same version as the others.
        topic, payload = update.topic, update.payload
        outcome = versions.accept(topic, update.stamp, update.origin, not payload, self.now)
        if not outcome:
            self.counters["retained_updates_superseded"] += 1
            return
        self.counters["retained_updates_applied"] += 1
        msg = (
            RetainedMessage(payload, update.qos, update.props, update.deadline) if payload else None
        )
        self._apply_retained(topic, msg, write=outcome == 2 and _durable(topic))

    def _on_router_up(self, e: Wire) -> None:
        """Another router (re)started: it loaded the retained set from the
        store; send it this router's recent updates, which may not have been
        committed when it did (router/replication.py)."""
        up = env.RouterUp._make(e)
        versions = self.versions
        if versions is None or up.router == self.index or not 0 <= up.router < self.routers:
            return
        out = self._to_router(up.router)
        for topic, version, deleted in versions.recent(self.now):
            msg = None if deleted else self.retained.get(topic)
            out.append(self._retained_envelope(topic, msg, version.stamp, version.origin))

    def _over_retained_quota(
        self, topic: str, payload: bytes, props: dict[str, Any] | None
    ) -> bool:
        retained = self.retained
        old = retained.get(topic)
        size = message_size(topic, payload, props)
        if old is None:
            fits = (
                len(retained) - len(self._sys_topics) < self.max_retained_messages
                and retained.total_bytes + size <= self.max_retained_bytes
            )
        else:
            growth = size - message_size(topic, old.payload, old.props)
            fits = growth <= 0 or retained.total_bytes + growth <= self.max_retained_bytes
        if fits:
            return False
        self.counters["retained_quota_refusals"] += 1
        self.guard.limited.warning(
            "router: retained store full (%d messages, %d bytes): %r delivered, not retained",
            len(retained),
            retained.total_bytes,
            topic[:200],
        )
        return True

    # --- subscriptions ------------------------------------------------------------------
    def _on_sub(self, e: Wire) -> None:
        sub = env.Sub._make(e)
        shard, client_id = sub.shard, sub.client_id
        self._invalidate()
        self.shard_clients.setdefault(shard, set()).add(client_id)
        # Entries are lists from the wire: unpacked, not read by name.
        for topic_filter, qos, no_local, rap, _send_retained, sub_id, persistent in sub.entries:
            # Checked at the edge (the acceptor's codec, or the worker loading
            # stored subscriptions): taken as it comes, never parsed again.
            self.tree.subscribe_valid(
                topic_filter,
                client_id,
                Subscription(shard, qos, no_local, rap, sub_id, persistent),
            )
        if self.resyncs.noted:
            self.resyncs.note(shard, client_id, [entry[0] for entry in sub.entries])
        out = self._out(shard)
        if sub.conn:
            out.append(
                env.Subscribed(
                    Kind.SUBSCRIBED, client_id, sub.conn, sub.packet_id, sub.codes, self.index
                )
            )
        if self.routers > 1 and (
            not sub.conn or self.router_of(acceptor_of(sub.conn)) != self.index
        ):
            return  # the subscriber's router sends the retained messages
        # Retained messages follow the SUBACK, with RETAIN=1 [MQTT-3.3.1-8].
        for topic_filter, qos, _no_local, _rap, send_retained, sub_id, _persistent in sub.entries:
            if not send_retained:
                continue
            sub_ids = [sub_id] if sub_id else []
            for topic, msg in self.retained.match(topic_filter):
                if has_expired(msg.deadline, self.now):
                    continue  # deleted by the next expire_retained
                props = props_to_send(msg.props, msg.deadline, self.now)
                self.counters["retained_sent"] += 1
                out.append(
                    env.Deliver(
                        Kind.DELIVER,
                        topic,
                        msg.payload,
                        msg.qos,
                        True,
                        props,
                        [env.Target(client_id, qos, True, sub_ids, topic_filter)],
                        None,
                    )
                )

    def _on_unsub(self, e: Wire) -> None:
        unsub = env.Unsub._make(e)
        self._invalidate()
        for topic_filter in unsub.filters:
            self.tree.unsubscribe(topic_filter, unsub.client_id)
        if unsub.conn:
            self._out(unsub.shard).append(
                env.Unsubscribed(
                    Kind.UNSUBSCRIBED,
                    unsub.client_id,
                    unsub.conn,
                    unsub.packet_id,
                    unsub.codes,
                    self.index,
                )
            )

    def _on_fence(self, e: Wire) -> None:
        """Everything the acceptor sent before this FENCE, on the same pipe,
        has been handled (envelopes are handled in the order they come)."""
        fence = env.Fence._make(e)
        out = self.to_acceptors.get(fence.acceptor)
        if out is None:
            out = self.to_acceptors[fence.acceptor] = []
        out.append(env.Fenced(Kind.FENCED, fence.seq))

    def _on_unsub_all(self, e: Wire) -> None:
        client_id = env.UnsubAll._make(e).client_id
        self._invalidate()
        self.tree.unsubscribe_all(client_id)
        for clients in self.shard_clients.values():
            clients.discard(client_id)

    def _on_online(self, e: Wire) -> None:
        online = env.Online._make(e)
        # Plans name online subscribers' connections; a client with no
        # subscription is in none (its first SUBSCRIBE invalidates them), so
        # publishers coming and going keep every plan.
        if self.tree.has_subscriptions(online.client_id):
            self._invalidate()
        if online.conn:
            self.online[online.client_id] = online.conn
        else:
            self.online.pop(online.client_id, None)

    def _on_worker_up(self, e: Wire) -> None:
        """A (re)started worker re-sends what it has; forget what it had."""
        _, shard, _incarnation, after_standby = env.WorkerUp._make(e)
        if after_standby:
            self.retained_reload_wanted = True
        self._invalidate()
        self.resyncs.cancel(shard)
        stale = self.shard_clients.pop(shard, set())
        for client_id in stale:
            self.tree.unsubscribe_all(client_id)
            self.online.pop(client_id, None)
        if stale:
            log.info("router: worker %d restarted: dropped %d stale subscribers", shard, len(stale))

    def _on_acceptor_up(self, e: Wire) -> None:
        """Connections of the acceptor's previous incarnation are gone."""
        _, acceptor, incarnation = env.AcceptorUp._make(e)
        self.counters["acceptor_restarts"] += 1
        gone = [
            cid
            for cid, conn in self.online.items()
            if acceptor_of(conn) == acceptor and incarnation_of(conn) != incarnation & 0xFFFF
        ]
        for client_id in gone:
            del self.online[client_id]
        if gone:
            self._invalidate()


def _merge_matches(
    matches: list[tuple[str, str, Subscription]], origin: str
) -> tuple[dict[str, list[Any]], bool]:
    """One copy per subscriber, at the highest QoS of its matching filters and
    with every subscription identifier: client id -> [shard, qos,
    retain_as_published, sub_ids, filter, persistent]. And whether the plan
    may be cached: not when it depends on the publisher (no_local) or rotates
    (a shared subscription)."""
    cacheable = True
    merged: dict[str, list[Any]] = {}
    for client_id, topic_filter, route in matches:
        if route.no_local:
            cacheable = False
            if client_id == origin:
                continue  # [MQTT-3.8.3-3]
        if is_shared(topic_filter):
            cacheable = False
        target = merged.get(client_id)
        if target is None:
            merged[client_id] = [
                route.shard,
                route.qos,
                route.retain_as_published,
                [route.sub_id] if route.sub_id else [],
                topic_filter,
                route.persistent,
            ]
        else:
            target[1] = max(target[1], route.qos)
            target[2] = target[2] or route.retain_as_published
            if route.sub_id:
                target[3].append(route.sub_id)
    return merged, cacheable


def _retained_size(topic: str, message: RetainedMessage) -> int:
    """What the retained bounds count: clients' messages, not the broker's $SYS."""
    return message_size(topic, message.payload, message.props) if _durable(topic) else 0


def _durable(topic: str) -> bool:
    """$SYS counters are regenerated by every process: not worth a disk write."""
    return not topic.startswith(SYS_PREFIX)
