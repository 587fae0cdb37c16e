"""A flockmq cluster (issue 14) on namespace hosts, for the cluster tests:
one `flockmq serve --cluster FILE --node NAME` per host, as an operator
starts one per machine.

- `write_cluster_file` writes the cluster file of the hosts (node i is
  host i, on its address; port 1883 and bus ports from 15550 on every host:
  addresses differ, so nothing collides), with a CURVE keypair per host in
  `keys/` next to it (so every cluster test runs with CURVE on).
- `running_cluster` makes the hosts, a database and the cluster file, starts
  one node per host, waits until every shard is served, and removes it all
  afterwards (the tests' fixtures; skips without namespaces).
- `client_on_shard` makes a client id whose session lives on a given shard.
- `ClusterNode` is tests/e2e/broker.py's Broker started the cluster way
  (inside its host's namespace: `command_prefix`): ready when the node's own
  processes run (its router, its acceptors, the workers of its shards).
- `wait_serving` waits until every shard answers a CONNECT at every node:
  each shard's worker holds its lock, and every node's acceptors reach it.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from flockmq.app.probe import mqtt_ready
from flockmq.app.proctitle import role_of
from flockmq.cluster import load_cluster
from flockmq.curve import write_keypair
from flockmq.sharding import shard_of
from tests.e2e.broker import FLOCKMQ, Broker
from tests.e2e.clients import unique, wait_for
from tests.postgres import PostgresServer

from .netns import Host, NetnsUnavailable, Network

PORT = 1883
BUS_PORT = 15550
KEYS = "keys"  # the cluster's keys, next to its file


def write_cluster_file(
    path: Path,
    hosts: tuple[Host, ...],
    shards: int,
    dsn: str,
    acceptors: tuple[int, ...],
    settings: tuple[str, ...] = (),
    curve: bool = True,
) -> Path:
    """`acceptors`: per host; `settings`: more top-level lines (heartbeats);
    `curve`: a keypair per host in KEYS next to the file, and the bus and
    heartbeats CURVE (flockmq/curve.py), or `insecure = true`."""
    lines = [f"shards = {shards}", f'postgres_dsn = "{dsn}"', *settings, "[security]"]
    if curve:
        keys = path.parent / KEYS
        for host in hosts:
            if not (keys / f"{host.name}.key").exists():
                write_keypair(str(keys), host.name)
        lines.append(f'curve_keys = "{KEYS}"')
    else:
        lines.append("insecure = true")
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


@contextlib.contextmanager
def running_cluster(
    network: Network,
    postgres: PostgresServer,
    tmp: Path,
    acceptors: dict[str, int],
    *,
    shards: int,
    base_config: str,
    settings: tuple[str, ...] = (),
    timeout: float = 60.0,
) -> Iterator[tuple[list[Host], list[ClusterNode], str]]:
    """A cluster of one node per host (hosts, nodes, DSN): `acceptors` names
    the hosts and gives each node's acceptor count; its nodes are
    configured by `base_config` (what the cluster file leaves open), serving
    every shard; stopped, its hosts and database removed afterwards. Skips
    the test where network namespaces cannot be made."""
    hosts: list[Host] = []
    started: list[ClusterNode] = []
    database = postgres.create_database()
    try:
        for name in acceptors:
            try:
                hosts.append(network.add_host(name))
            except NetnsUnavailable as exc:
                pytest.skip(f"network namespaces are not available: {exc}")
        dsn = f"host={network.host_address} port={postgres.port} user=postgres dbname={database}"
        cluster_file = write_cluster_file(
            tmp / "cluster.toml",
            tuple(hosts),
            shards,
            dsn,
            tuple(acceptors.values()),
            settings,
        )
        base = tmp / "flockmq.toml"
        base.write_text(base_config)
        for host in hosts:
            node = ClusterNode(
                tmp / host.name,
                command_prefix=host.command(),
                cluster_file=cluster_file,
                node=host.name,
                base_config=base,
            )
            started.append(node)
            node.launch()
        wait_serving(started, shards, timeout)
        yield hosts, started, dsn
    finally:
        for node in started:
            node.stop()
        for host in hosts:
            network.remove_host(host.name)
        postgres.drop_database(database)
