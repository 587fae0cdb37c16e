"""Where each process of a cluster runs (issue 14): the one mapping from a
process (router r, worker s, acceptor a) to the node that runs it, and so to
the address and port of its bus inboxes. Sans-IO.

A cluster is ONE broker laid out over its nodes (flockmq/cluster.py): its
Config has `routers` = the nodes, `workers` = the cluster's shards and
`acceptors` = every node's acceptors, numbered globally (node 0's first,
then node 1's, ...). With a `Placement` in the Config
(`Config.placement`), every endpoint method of the Config gives the address
of the node that runs the process and a port from that node's bus ports, so
every process connects across hosts by computing its endpoints as on one
host:

- router r runs on node r (nodes in file order);
- acceptor a runs on the node whose acceptors it is numbered among, and
  publishes through that node's router (`router_of`);
- worker s (the session shard s) runs where `assign_shards` (with every
  node of the file taken as live) puts it at start; when nodes die or come
  back, shards move (flockmq/app/shard_workers.py gives the children a
  placement with the node's current `worker_nodes`; SHARD_AT tells every
  process later moves, flockmq/shard_routes.py).

Ports: a process has the same port offset as in a single-host tcp layout
(Config's endpoint methods), added to its node's first bus port. Every node
therefore keeps the whole layout's range free (`bus_port_count`), which is
also what lets a shard run on another node later without renumbering: a
Placement with `worker_nodes[s]` changed (dataclasses.replace) gives worker
s's new endpoints, on its new node at the same offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def bus_port_count(routers: int, workers: int, acceptors: int, auth: int = 0) -> int:
    """How many bus ports one host's layout uses (Config's endpoint methods:
    routers' and workers' core and work inboxes, acceptors' and auth
    processes' inboxes)."""
    return 2 * routers + 2 * workers + acceptors + auth


def router_of(acceptor: int, routers: int, table: tuple[int, ...]) -> int:
    """The router acceptor `acceptor` publishes through: its entry in
    `table` in a cluster (Placement.acceptor_routers, its node's router),
    else acceptor % routers. One rule for Config, the router and workers."""
    if table and 0 <= acceptor < len(table):
        return table[acceptor]
    return acceptor % routers


@dataclass(frozen=True, slots=True)
class Placement:
    """The cluster's nodes (by index, in file order) and which runs what.

    `node`: the node of the supervisor holding this Config (the processes it
    spawns: `routers_here`, `workers_here`, `acceptors_here`)."""

    names: tuple[str, ...]
    addresses: tuple[str, ...]  # per node: its IPv4 address
    bus_ports: tuple[int, ...]  # per node: its first bus port
    acceptor_nodes: tuple[int, ...]  # per global acceptor: its node
    worker_nodes: tuple[int, ...]  # per shard: its node
    node: int  # this supervisor's node

    def __post_init__(self) -> None:
        nodes = len(self.names)
        if not nodes or len(self.addresses) != nodes or len(self.bus_ports) != nodes:
            raise ValueError("placement: one name, address and bus port per node")
        for what, table in (("acceptor", self.acceptor_nodes), ("worker", self.worker_nodes)):
            if not table or any(not 0 <= n < nodes for n in table):
                raise ValueError(f"placement: every {what} on one of the {nodes} nodes")
        if not 0 <= self.node < nodes:
            raise ValueError(f"placement: node {self.node} is not one of the {nodes} nodes")

    @property
    def routers(self) -> int:
        return len(self.names)

    def router_node(self, index: int) -> int:
        return index

    def endpoint(self, node: int, offset: int) -> str:
        """`tcp://` of the inbox at `offset` of the layout, on `node`."""
        return f"tcp://{self.addresses[node]}:{self.bus_ports[node] + offset}"

    def acceptor_routers(self) -> tuple[int, ...]:
        """Each acceptor's router, as a table (`router_of`): its own node's."""
        return self.acceptor_nodes

    def routers_here(self) -> list[int]:
        return [self.node]

    def workers_here(self) -> list[int]:
        return [s for s, n in enumerate(self.worker_nodes) if n == self.node]

    def acceptors_here(self) -> list[int]:
        return [a for a, n in enumerate(self.acceptor_nodes) if n == self.node]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Placement:
        """The placement a child reads back from the supervisor's JSON."""
        return cls(
            names=tuple(data["names"]),
            addresses=tuple(data["addresses"]),
            bus_ports=tuple(data["bus_ports"]),
            acceptor_nodes=tuple(data["acceptor_nodes"]),
            worker_nodes=tuple(data["worker_nodes"]),
            node=int(data["node"]),
        )
