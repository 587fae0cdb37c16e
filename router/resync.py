"""A shard's resync is authoritative (issue 14): what a router holds of a
shard is replaced by what the shard re-sends (sans-IO).

A worker re-sends every subscription of its shard, between RESYNC and
RESYNC end (flockmq/envelopes.py), to a router that restarted and to one
declared live again after a cut link (workers/subscriptions.py
`on_router_up`). A restarted router holds nothing of the shard; one cut off
holds what it had, minus nothing it missed: the UNSUBSCRIBEs and the
session ends sent while it was cut off were dropped by the bus. So the
router notes what is re-sent and, at the end, drops the shard's
subscriptions that were not: its table is the shard's again.

Nothing is dropped before the end: a publish the router matches during the
resync still reaches every subscriber it reached before it (the routers
that were never cut off get the same resync, and their tables must have no
window without a live subscription).

Only the shard's owner's resync counts. After a cut link the old owner of a
shard that moved (a worker on the node that was cut off, which has not
found out yet: workers/ownership.py) resyncs too, with what it held before
the move. Each resync carries the write epoch its worker claimed the shard
with; one older than the newest this router knows for the shard (from a
resync, or from the owners' SHARD_AT: `known`) is ignored (its
subscriptions are still added, as any SUB: what the owner delivers by is
its own subscriptions of record), and a resync's end counts only for the
epoch that began it.

Bounds: one record per shard in a resync (RESYNC is checked against the
shard count: `check_resync`), holding the (client id, filter) pairs
re-sent, which the router holds in its topic tree anyway. A RESYNC of a
shard already in one starts it over; a WORKER_UP ends it (the router drops
all of that shard's subscriptions then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

# client id -> its filters the router holds (TopicTree.subscriptions_of)
FiltersOf = Callable[[str], Iterable[str]]


class Resyncs:
    __slots__ = ("known", "newest", "noted")

    def __init__(self) -> None:
        # shard -> (the epoch of its resync, client id -> the filters re-sent)
        self.noted: dict[int, tuple[int, dict[str, set[str]]]] = {}
        self.newest: dict[int, int] = {}  # shard -> the newest epoch of its resyncs
        # shard -> its newest epoch from the owners' SHARD_AT (a cluster's
        # router process sets it: flockmq/shard_directory.py `epoch`)
        self.known: Mapping[int, int] = {}

    def begin(self, shard: int, epoch: int) -> bool:
        """A RESYNC of `shard`; False (ignored) if an older owner's."""
        if epoch < max(self.newest.get(shard, 0), self.known.get(shard, 0)):
            return False
        self.newest[shard] = epoch
        self.noted[shard] = (epoch, {})
        return True

    def cancel(self, shard: int) -> None:
        self.noted.pop(shard, None)

    def note(self, shard: int, client_id: str, filters: Iterable[str]) -> None:
        """A SUB of `shard`: kept if the shard is in a resync."""
        record = self.noted.get(shard)
        if record is not None:
            record[1].setdefault(client_id, set()).update(filters)

    def end(
        self, shard: int, epoch: int, clients: Iterable[str], filters_of: FiltersOf
    ) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """The resync of `shard` at `epoch` ended; the router holds
        subscriptions of `clients`: the clients none of whose subscriptions
        was re-sent (the sessions that ended), and (client, filters) not
        re-sent of the others (the UNSUBSCRIBEs missed). Nothing if no
        resync of that epoch is open (an older owner's end)."""
        record = self.noted.get(shard)
        if record is None or record[0] != epoch:
            return [], []
        del self.noted[shard]
        noted = record[1]
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
