"""A cluster's processes on a dead node are sent nothing (issue 14): the
receiving side of ROUTERS_LIVE (flockmq/envelopes.py), which a cluster
node's supervisor sends to its workers and routers (flockmq/app/routers_live.py).

Router r runs on node r (flockmq/placement.py), so the live routers are the
live nodes. When a node is declared dead, this process's bus drops what it
holds for that node's router and acceptors and sends them nothing more
(flockmq/bus.py `Bus.peer_down`): a dead peer's pipe, once full, would
otherwise make this process congested and stall the survivors. A frame from
such a peer (its new incarnation's ROUTER_UP or ACCEPTOR_UP, or anything
after a healed link), or the node declared live again (`Bus.peer_up`), ends
that. What the peer missed comes back with the resync a (re)started peer
gets: a worker re-sends every subscription (workers/subscriptions.py), a
router its recent retained updates (router/replication.py).

`LiveNodes` is the sans-IO part: which nodes went down and came up with
each ROUTERS_LIVE (the supervisor repeats it every second: only changes
count).
"""

from __future__ import annotations

from collections.abc import Hashable

from flockmq import runtime
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import Wire, check_routers_live


class LiveNodes:
    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.down: frozenset[int] = frozenset()

    def update(self, e: Wire) -> tuple[frozenset[int], frozenset[int]]:
        """A ROUTERS_LIVE (ValueError/TypeError if malformed): the nodes
        that went down and those that came up since the last one."""
        down = frozenset(range(self.nodes)) - check_routers_live(e, self.nodes)
        went_down, came_up = down - self.down, self.down - down
        self.down = down
        return went_down, came_up


def peers_on(config: Config, nodes: frozenset[int]) -> list[Hashable]:
    """The bus keys of the routers and acceptors that run on `nodes`."""
    placement = config.placement
    if placement is None or not nodes:
        return []
    keys: list[Hashable] = [runtime.router(node) for node in sorted(nodes)]
    keys += [runtime.acceptor(a) for a, n in enumerate(placement.acceptor_nodes) if n in nodes]
    return keys


def mark(bus: Bus, config: Config, went_down: frozenset[int], came_up: frozenset[int]) -> None:
    """Tell `bus` about the routers and acceptors of nodes that went down
    or came up."""
    for key in peers_on(config, went_down):
        bus.peer_down(key)
    for key in peers_on(config, came_up):
        bus.peer_up(key)
