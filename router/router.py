"""The router's logic (sans-IO): subscriptions from every shard, matching, and
the retained store.

Envelopes in (`handle`), envelopes out (`to_workers[shard]`). Each publish is
matched once (the topic tree caches per topic), merged to one copy per
subscriber at the highest granted QoS [MQTT-3.3.5-1], and sent as one DELIVER
per destination shard carrying every target on that shard.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, NamedTuple

from flockmq import envelopes as env
from flockmq.envelopes import Envelope

from .retained import RetainedStore
from .topic_tree import TopicTree

log = logging.getLogger("flockmq.router")


class Route(NamedTuple):
    """What the tree holds per (subscriber, filter)."""

    shard: int
    qos: int
    no_local: bool
    retain_as_published: bool
    sub_id: int | None


class RetainedMessage(NamedTuple):
    payload: bytes
    qos: int
    props: dict[str, Any] | None


class Router:
    def __init__(self) -> None:
        self.tree: TopicTree[str, Route] = TopicTree()
        self.retained: RetainedStore[RetainedMessage] = RetainedStore()
        self.shard_clients: dict[int, set[str]] = {}
        self.to_workers: dict[int, list[Envelope]] = {}
        self.counters: Counter[str] = Counter()
        self._handlers = {
            env.ROUTE: self._on_route,
            env.SUB: self._on_sub,
            env.UNSUB: self._on_unsub,
            env.UNSUB_ALL: self._on_unsub_all,
            env.WORKER_UP: self._on_worker_up,
            env.ACCEPTOR_UP: self._on_acceptor_up,
        }

    def handle(self, envelope: Envelope) -> None:
        handler = self._handlers.get(envelope[0])
        if handler is None:
            self.counters["unknown_envelopes"] += 1
            log.warning("router: unknown envelope kind %r", envelope[0])
            return
        handler(envelope)

    def _out(self, shard: int) -> list[Envelope]:
        out = self.to_workers.get(shard)
        if out is None:
            out = self.to_workers[shard] = []
        return out

    # --- publishes ------------------------------------------------------------------
    def _on_route(self, e: Envelope) -> None:
        _, origin, topic, payload, qos, retain, props = e
        self.counters["messages_routed"] += 1
        if retain:
            self.store_retained(topic, payload, qos, props)
        matches = self.tree.match(topic)
        if not matches:
            self.counters["messages_without_subscribers"] += 1
            return
        # One copy per subscriber: highest QoS, every subscription identifier.
        merged: dict[str, list[Any]] = {}
        for client_id, _filter, route in matches:
            if route.no_local and client_id == origin:
                continue  # [MQTT-3.8.3-3]
            target = merged.get(client_id)
            if target is None:
                merged[client_id] = [
                    route.shard,
                    route.qos,
                    route.retain_as_published,
                    [route.sub_id] if route.sub_id else [],
                ]
            else:
                if route.qos > target[1]:
                    target[1] = route.qos
                target[2] = target[2] or route.retain_as_published
                if route.sub_id:
                    target[3].append(route.sub_id)
        per_shard: dict[int, list[list[Any]]] = {}
        for client_id, (shard, granted, rap, sub_ids) in merged.items():
            targets = per_shard.get(shard)
            if targets is None:
                targets = per_shard[shard] = []
            targets.append([client_id, granted, rap, sub_ids])
        for shard, targets in per_shard.items():
            self._out(shard).append([env.DELIVER, topic, payload, qos, retain, props, targets])

    def store_retained(
        self, topic: str, payload: bytes, qos: int, props: dict[str, Any] | None
    ) -> None:
        """The last retained message per topic; an empty payload deletes it
        [MQTT-3.3.1-10, -11]."""
        if payload:
            self.retained.set(topic, RetainedMessage(payload, qos, props))
        else:
            self.retained.set(topic, None)

    # --- subscriptions ------------------------------------------------------------------
    def _on_sub(self, e: Envelope) -> None:
        _, shard, client_id, conn, packet_id, entries, codes = e
        self.shard_clients.setdefault(shard, set()).add(client_id)
        for topic_filter, qos, no_local, rap, _send_retained, sub_id in entries:
            self.tree.subscribe(topic_filter, client_id, Route(shard, qos, no_local, rap, sub_id))
        out = self._out(shard)
        if conn:
            out.append([env.SUBSCRIBED, client_id, conn, packet_id, codes])
        # Retained messages follow the SUBACK, with RETAIN=1 [MQTT-3.3.1-8].
        for topic_filter, qos, _no_local, _rap, send_retained, sub_id in entries:
            if not send_retained:
                continue
            sub_ids = [sub_id] if sub_id else []
            for topic, msg in self.retained.match(topic_filter):
                self.counters["retained_sent"] += 1
                out.append(
                    [
                        env.DELIVER,
                        topic,
                        msg.payload,
                        msg.qos,
                        True,
                        msg.props,
                        [[client_id, qos, True, sub_ids]],
                    ]
                )

    def _on_unsub(self, e: Envelope) -> None:
        _, client_id, filters = e
        for topic_filter in filters:
            self.tree.unsubscribe(topic_filter, client_id)

    def _on_unsub_all(self, e: Envelope) -> None:
        _, client_id = e
        self.tree.unsubscribe_all(client_id)
        for clients in self.shard_clients.values():
            clients.discard(client_id)

    def _on_worker_up(self, e: Envelope) -> None:
        """A (re)started worker re-sends what it has; forget what it had."""
        _, shard, _incarnation = e
        stale = self.shard_clients.pop(shard, set())
        for client_id in stale:
            self.tree.unsubscribe_all(client_id)
        if stale:
            log.info("router: worker %d restarted: dropped %d stale subscribers", shard, len(stale))

    def _on_acceptor_up(self, e: Envelope) -> None:
        self.counters["acceptor_restarts"] += 1
