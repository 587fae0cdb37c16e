"""A shard's resync is authoritative (issue 14): what a router holds of a
shard is replaced by what the shard re-sends (sans-IO).

A worker re-sends every subscription of its shard, between RESYNC and
SYNCED (flockmq/envelopes.py), to a router that restarted and to one
declared live again after a cut link (workers/subscriptions.py
`on_router_up`). A restarted router holds nothing of the shard; one cut off
holds what it had, minus nothing it missed: the UNSUBSCRIBEs and the
session ends sent while it was cut off were dropped by the bus. So the
router notes what is re-sent and, at SYNCED, drops the shard's
subscriptions that were not: its table is the shard's again.

Nothing is dropped before SYNCED: a publish the router matches during the
resync still reaches every subscriber it reached before it (the routers
that were never cut off get the same resync, and their tables must have no
window without a live subscription).

Bounds: one record per shard in a resync (RESYNC is checked against the
shard count: `check_resync`), holding the (client id, filter) pairs
re-sent, which the router holds in its topic tree anyway. A RESYNC of a
shard already in one starts it over; a WORKER_UP ends it (the router drops
all of that shard's subscriptions then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# client id -> its filters the router holds (TopicTree.subscriptions_of)
FiltersOf = Callable[[str], Iterable[str]]


class Resyncs:
    __slots__ = ("noted",)

    def __init__(self) -> None:
        # shard -> client id -> the filters re-sent for it since its RESYNC
        self.noted: dict[int, dict[str, set[str]]] = {}

    def begin(self, shard: int) -> None:
        self.noted[shard] = {}

    def cancel(self, shard: int) -> None:
        self.noted.pop(shard, None)

    def note(self, shard: int, client_id: str, filters: Iterable[str]) -> None:
        """A SUB of `shard`: kept if the shard is in a resync."""
        noted = self.noted.get(shard)
        if noted is not None:
            noted.setdefault(client_id, set()).update(filters)

    def end(
        self, shard: int, clients: Iterable[str], filters_of: FiltersOf
    ) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """The SYNCED of `shard`, whose router holds subscriptions of
        `clients`: the clients none of whose subscriptions was re-sent (the
        sessions that ended), and (client, filters) not re-sent of the
        others (the UNSUBSCRIBEs missed). Nothing if the shard was not in a
        resync (a standby's SYNCED: it re-sends nothing, it serves nothing)."""
        noted = self.noted.pop(shard, None)
        if noted is None:
            return [], []
        gone: list[str] = []
        stale: list[tuple[str, list[str]]] = []
        for client_id in clients:
            kept = noted.get(client_id)
            if kept is None:
                gone.append(client_id)
                continue
            dropped = [f for f in filters_of(client_id) if f not in kept]
            if dropped:
                stale.append((client_id, dropped))
        return gone, stale
