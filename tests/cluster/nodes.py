"""A flockmq cluster (issue 14) on namespace hosts, for the cluster tests:
one `flockmq serve --cluster FILE --node NAME` per host, as an operator
starts one per machine.

- `write_cluster_file` writes the cluster file of the hosts (node i is
  host i, on its address; port 1883 and bus ports from 15550 on every host:
  addresses differ, so nothing collides).
- `client_on_shard` makes a client id whose session lives on a given shard.
- `ClusterNode` is tests/e2e/broker.py's Broker started the cluster way
  (inside its host's namespace: `command_prefix`): ready when the node's own
  processes run (its router, its acceptors, the workers of its shards).
- `wait_serving` waits until every shard answers a CONNECT at every node:
  each shard's worker holds its lock, and every node's acceptors reach it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from flockmq.app.probe import mqtt_ready
from flockmq.app.proctitle import role_of
from flockmq.cluster import load_cluster
from flockmq.sharding import shard_of
from tests.e2e.broker import FLOCKMQ, Broker
from tests.e2e.clients import unique, wait_for

from .netns import Host

PORT = 1883
BUS_PORT = 15550


def write_cluster_file(
    path: Path, hosts: tuple[Host, ...], shards: int, dsn: str, acceptors: tuple[int, ...]
) -> Path:
    """`acceptors`: per host."""
    lines = [f"shards = {shards}", f'postgres_dsn = "{dsn}"']
    for host, count in zip(hosts, acceptors, strict=True):
        lines += [
            "[[nodes]]",
            f'name = "{host.name}"',
            f'address = "{host.address}"',
            f"port = {PORT}",
            f"bus_port = {BUS_PORT}",
            f"acceptors = {count}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ClusterNode(Broker):
    cluster_file: Path = Path()
    node: str = ""
    base_config: Path | None = None  # --config: what the cluster file leaves open
    roles: set[tuple[str, int]] = field(default_factory=set)  # the node's processes

    def __post_init__(self) -> None:
        cluster = load_cluster(str(self.cluster_file))
        placement = cluster.placement(self.node)
        me = cluster.node(self.node)
        self.host, self.port = me.address, me.port
        self.roles = (
            {("router", i) for i in placement.routers_here()}
            | {("worker", i) for i in placement.workers_here()}
            | {("acceptor", i) for i in placement.acceptors_here()}
        )

    def launch(self) -> ClusterNode:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"node-{self.node}.log"
        cmd = [
            *self.command_prefix,
            FLOCKMQ,
            "serve",
            "--cluster",
            str(self.cluster_file),
            "--node",
            self.node,
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "info",
            *(["--config", str(self.base_config)] if self.base_config else []),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        return self

    def _all_up(self) -> bool:
        found = set()
        for child in self.children():
            try:
                found.add(role_of(child.cmdline(), child.name()))
            except psutil.NoSuchProcess:
                continue
        return self.roles <= found

    def processes_up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"node {self.node} exited early:\n{self.log()}")
        return self._all_up()


def client_on_shard(prefix: str, shard: int, shards: int) -> str:
    """A client id whose session lives on `shard`."""
    while True:
        client_id = unique(prefix)
        if shard_of(client_id, shards) == shard:
            return client_id


def wait_serving(nodes: list[ClusterNode], shards: int, timeout: float = 60.0) -> None:
    """Every node's processes run, and a CONNECT of a client of every shard
    is accepted at every node (the readiness probe's CONNACK 0)."""
    for node in nodes:
        wait_for(node.processes_up, timeout, f"the processes of node {node.node}")
    for shard in range(shards):
        for node in nodes:
            client_id = client_on_shard("ready", shard, shards)
            wait_for(
                lambda: mqtt_ready(node.host, node.port, client_id=client_id),  # noqa: B023
                timeout,
                f"shard {shard} served through node {node.node}",
            )
