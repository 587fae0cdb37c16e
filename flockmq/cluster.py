"""The cluster file (issue 14): which hosts form one broker, how many
session shards it has, which PostgreSQL they share, and how they watch each
other. Sans-IO: `parse_cluster` takes the file's text, `load_cluster` only
reads the file and hands it over.

Wired (phase 1): `flockmq serve --cluster FILE --node NAME` runs node NAME
of ONE broker laid out over the nodes (`Cluster.config_values`: routers =
the nodes, workers = `shards`, every node's acceptors numbered globally;
where each runs: flockmq/placement.py). The node listens for clients on
`node.address:node.port`, binds its processes' bus inboxes on its address
(ports from `bus_port` on: `Node.bus_ports`) and connects to the other
nodes'. At start shards are placed by `assign_shards` over every node of
the file, as if all were live; each worker takes its shard's lock in
`lock_namespace` on `postgres_dsn` (workers/ownership.py). Shards move when
a node dies or comes back: the heartbeats below (flockmq/membership.py,
flockmq/app/heartbeats.py, on `Node.heartbeat_port`) decide who is live,
and flockmq/app/cluster_moves.py what each node runs.

```toml
shards = 64                      # fixed for the life of the cluster
postgres_dsn = "host=10.0.0.1 dbname=flockmq user=flockmq"
lock_namespace = 1718382435      # optional: the advisory locks' first key
heartbeat_interval = 1.0         # optional, seconds
heartbeat_timeout = 5.0          # optional, seconds

[security]                       # required: one of the two
curve_keys = "keys"              # a directory (relative: to this file's) with
                                 #   every node's NAME.key and this host's
                                 #   NAME.key_secret (flockmq cluster-keys)
# insecure = true                # no CURVE: anyone reaching the ports is a node

[[nodes]]
name = "a"
address = "10.0.0.11"
port = 1883                      # optional: where clients connect
bus_port = 15550                 # optional: the first of the node's bus ports
acceptors = 2                    # optional: every node must know every node's
                                 #   acceptor count to address their inboxes
```

Invariants of a parsed `Cluster` (each broken one is a `ClusterError` that
names the file and the key):

- every key is known (a typo is an error, never silently a default), and
  has its type (TOML `true` is not a number);
- 1..MAX_NODES nodes, names unique, 1..MAX_NODE_NAME characters of
  `A-Z a-z 0-9 . _ -` starting with a letter or digit (they end up in
  logs, process titles and PostgreSQL's application_name);
- addresses unique, IPv4 (the bus's ZeroMQ sockets do not enable IPv6), and
  neither unspecified (0.0.0.0: other nodes must be able to connect to it)
  nor multicast/broadcast;
- each node's listener port, bus ports (`Node.bus_ports`: the whole
  layout's, 2 per router and worker and 1 per acceptor of the cluster) and
  heartbeat port (`Node.heartbeat_port`, just past the bus ports) are TCP
  ports (1..65535) and do not overlap;
- nodes <= shards <= MAX_SHARDS;
- `postgres_dsn` is given and parses (store/postgres.py `describe_dsn`);
  it is kept out of `repr`, since it may hold a password;
- 0 < heartbeat_interval <= MAX_HEARTBEAT_INTERVAL and heartbeat_timeout at
  least two intervals (one late heartbeat is not a death), at most
  MAX_HEARTBEAT_TIMEOUT;
- `[security]` has `curve_keys` (the bus and heartbeats between hosts are
  CURVE, flockmq/curve.py) or `insecure = true`, not both: a cluster is
  never open by omission. The keys themselves are read for one node by
  `config_values` (`curve_keys_of`), a missing, unreadable or malformed
  one a ClusterError naming the file.

Bus endpoints are derived in one place: the `Config` methods that lay out
a single host's `tcp` bus (flockmq/config.py), which consult the placement
for the address and first port of the node that runs each process.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flockmq.config import ConfigError
from flockmq.curve import CurveKeyError, CurveKeys, read_node_keys
from flockmq.placement import Placement, bus_port_count
from flockmq.shard_plan import MAX_NODE_NAME_BYTES, MAX_NODES, MAX_SHARDS, assign_shards

# "floc", store/shard_locks.py's NAMESPACE (not imported: importing this
# module would then import psycopg, which it needs only to check a DSN; a
# unit test keeps the two equal)
DEFAULT_LOCK_NAMESPACE = 0x666C6F63
MAX_LOCK_NAMESPACE = 0x7FFFFFFF  # an int4, the first key of pg_advisory_lock(int4, int4)
MAX_NODE_NAME = 63  # a DNS label; PostgreSQL's application_name is 63 bytes
MAX_PROCESSES = 256  # acceptors or workers of one node, as flockmq/config.py bounds them
MAX_HEARTBEAT_INTERVAL = 60.0
MAX_HEARTBEAT_TIMEOUT = 600.0
DEFAULT_PORT = 1883
DEFAULT_BUS_PORT = 15550
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

assert MAX_NODE_NAME <= MAX_NODE_NAME_BYTES  # every valid name is a valid planner name


class ClusterError(ConfigError):
    """An invalid cluster file: the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    address: str  # IPv4, as written (checked by ipaddress)
    port: int = DEFAULT_PORT  # MQTT listener
    bus_port: int = DEFAULT_BUS_PORT  # the first bus port; the rest follow (bus_ports)
    acceptors: int = 1
    # how many bus ports the cluster's layout takes on every node: set by
    # parse_cluster once every node is read (flockmq/placement.py bus_port_count)
    layout_ports: int = 1

    @property
    def bus_ports(self) -> range:
        """Every port the node keeps for the cluster's bus: the whole
        layout's (2 per router and shard, 1 per acceptor of the cluster),
        whichever processes it runs, so a process runs on any node on its
        one port offset."""
        return range(self.bus_port, self.bus_port + self.layout_ports)

    @property
    def heartbeat_port(self) -> int:
        """The port of the node's heartbeat socket (flockmq/app/heartbeats.py):
        the one just past its bus ports. The one place it is derived."""
        return self.bus_ports.stop

    def heartbeat_endpoint(self) -> str:
        return f"tcp://{self.address}:{self.heartbeat_port}"


@dataclass(frozen=True, slots=True)
class Cluster:
    source: str  # the file it came from, for messages
    nodes: tuple[Node, ...]
    shards: int
    postgres_dsn: str = field(repr=False)  # may hold a password
    lock_namespace: int = DEFAULT_LOCK_NAMESPACE
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    curve_keys: str = ""  # the keys' directory ([security]); "" only when insecure
    insecure: bool = False  # [security] insecure = true: no CURVE between the hosts

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)

    def node(self, name: str) -> Node:
        """The node called `name`; ClusterError listing the known names."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(self.node_names)
        raise ClusterError(f"{self.source}: no node {name[:80]!r} (the nodes are: {known})")

    @property
    def acceptors(self) -> int:
        """Every node's acceptors: numbered globally, node 0's first."""
        return sum(node.acceptors for node in self.nodes)

    def placement(self, name: str) -> Placement:
        """Which node runs what, as seen by node `name` (ClusterError if there
        is none): at start, every node of the file taken as live (shards move
        later: flockmq/app/shard_workers.py rewrites `worker_nodes`)."""
        me = self.node(name)
        names = self.node_names
        owners = assign_shards(names, self.shards)
        worker_nodes = [0] * self.shards
        for node, shards in owners.items():
            for shard in shards:
                worker_nodes[shard] = names.index(node)
        return Placement(
            names=names,
            addresses=tuple(node.address for node in self.nodes),
            bus_ports=tuple(node.bus_port for node in self.nodes),
            acceptor_nodes=tuple(
                i for i, node in enumerate(self.nodes) for _ in range(node.acceptors)
            ),
            worker_nodes=tuple(worker_nodes),
            node=self.nodes.index(me),
        )

    def config_values(self, name: str) -> dict[str, Any]:
        """The Config values node `name` takes from the cluster file
        (flockmq/config.py `load_config(..., fixed=...)`): one broker of
        `nodes` routers, `shards` workers and every node's acceptors, over
        tcp, on the shared PostgreSQL; listening on the node's address."""
        me = self.node(name)
        return {
            "host": me.address,
            "port": me.port,
            "routers": len(self.nodes),
            "workers": self.shards,
            "acceptors": self.acceptors,
            "transport": "tcp",
            "tcp_host": me.address,
            "tcp_base_port": me.bus_port,
            "store": "postgres",
            "postgres_dsn": self.postgres_dsn,
            "shard_namespace": self.lock_namespace,
            "placement": self.placement(name),
            "curve": self.curve_keys_of(name),
        }

    def curve_keys_of(self, name: str) -> CurveKeys | None:
        """Node `name`'s CURVE keys (None for an insecure cluster), read
        from `curve_keys` now; ClusterError naming the file that is wrong."""
        if self.insecure:
            return None
        nodes = {node.name: node.address for node in self.nodes}
        try:
            return read_node_keys(self.curve_keys, self.node(name).name, nodes)
        except CurveKeyError as exc:
            raise ClusterError(f"{self.source}: security.curve_keys: {exc}") from None


TOP_KEYS = {
    "nodes",
    "shards",
    "postgres_dsn",
    "lock_namespace",
    "heartbeat_interval",
    "heartbeat_timeout",
    "security",
}
SECURITY_KEYS = {"curve_keys", "insecure"}
NODE_KEYS = {"name", "address", "port", "bus_port", "acceptors"}


def load_cluster(path: str) -> Cluster:
    """Read and parse the cluster file at `path` (the only I/O here)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ClusterError(f"cluster file {path}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClusterError(f"cluster file {path}: not UTF-8 ({exc.reason})") from None
    return parse_cluster(text, path)


def parse_cluster(text: str, source: str = "<cluster file>") -> Cluster:
    """A checked Cluster from the TOML `text`; ClusterError naming `source`
    and the key for the first thing that is wrong."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClusterError(f"cluster file {source}: {exc}") from None
    _reject_unknown(data, TOP_KEYS, source, "")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ClusterError(f"{source}: nodes: expected [[nodes]] tables, at least one")
    if len(raw_nodes) > MAX_NODES:
        raise ClusterError(f"{source}: nodes: {len(raw_nodes)} nodes, at most {MAX_NODES}")
    nodes = tuple(_parse_node(raw, source, f"nodes[{i}]") for i, raw in enumerate(raw_nodes))
    _check_unique(nodes, source)
    shards = _shards(data, source, len(nodes))
    ports = bus_port_count(len(nodes), shards, sum(node.acceptors for node in nodes))
    curve_keys, insecure = _security(data, source)
    cluster = Cluster(
        source=source,
        nodes=tuple(replace(node, layout_ports=ports) for node in nodes),
        shards=shards,
        postgres_dsn=_dsn(data, source),
        lock_namespace=_integer(
            data, "lock_namespace", source, "", DEFAULT_LOCK_NAMESPACE, 0, MAX_LOCK_NAMESPACE
        ),
        heartbeat_interval=_seconds(data, "heartbeat_interval", source, 1.0),
        heartbeat_timeout=_seconds(data, "heartbeat_timeout", source, 5.0),
        curve_keys=curve_keys,
        insecure=insecure,
    )
    _check_heartbeat(cluster)
    _check_ports(cluster)
    return cluster


def _reject_unknown(table: Mapping[str, Any], known: set[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ClusterError(
            f"{source}: {where}unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _parse_node(raw: Any, source: str, where: str) -> Node:
    if not isinstance(raw, dict):
        raise ClusterError(f"{source}: {where}: expected a table")
    _reject_unknown(raw, NODE_KEYS, source, f"{where}: ")
    prefix = f"{where}."
    node = Node(
        name=_name(raw, source, where),
        address=_address(raw, source, where),
        port=_integer(raw, "port", source, prefix, DEFAULT_PORT, 1, 65535),
        bus_port=_integer(raw, "bus_port", source, prefix, DEFAULT_BUS_PORT, 1, 65535),
        acceptors=_integer(raw, "acceptors", source, prefix, 1, 1, MAX_PROCESSES),
    )
    return node


def _check_ports(cluster: Cluster) -> None:
    """Every node's bus ports (the whole layout's: Node.bus_ports) and
    heartbeat port are TCP ports, and its listener is none of them."""
    for i, node in enumerate(cluster.nodes):
        prefix = f"{cluster.source}: nodes[{i}]."
        ports = node.bus_ports
        last = ports[-1]
        heartbeat = node.heartbeat_port
        if heartbeat > 65535:
            raise ClusterError(
                f"{prefix}bus_port: the bus needs ports {node.bus_port}-{last} and its"
                f" heartbeats {heartbeat}, past 65535"
            )
        if node.port in ports:
            raise ClusterError(
                f"{prefix}port: {node.port} is one of the node's bus ports"
                f" ({node.bus_port}-{last}) on {node.address}"
            )
        if node.port == heartbeat:
            raise ClusterError(
                f"{prefix}port: {node.port} is the node's heartbeat port on {node.address}"
            )


def _name(raw: Mapping[str, Any], source: str, where: str) -> str:
    name = _required(raw, "name", source, f"{where}.")
    if not isinstance(name, str):
        raise ClusterError(f"{source}: {where}.name: expected a string, got {name!r}")
    if not 1 <= len(name) <= MAX_NODE_NAME or not NODE_NAME.fullmatch(name):
        raise ClusterError(
            f"{source}: {where}.name: {name[:80]!r} is not 1-{MAX_NODE_NAME} characters of"
            " A-Z a-z 0-9 . _ - starting with a letter or digit"
        )
    return name


def _address(raw: Mapping[str, Any], source: str, where: str) -> str:
    value = _required(raw, "address", source, f"{where}.")
    key = f"{source}: {where}.address"
    if not isinstance(value, str):
        raise ClusterError(f"{key}: expected a string, got {value!r}")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ClusterError(f"{key}: {value[:80]!r} is not an IP address") from None
    if address.version != 4:
        raise ClusterError(f"{key}: {value!r}: IPv6 is not supported yet (the bus is IPv4)")
    if (
        address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise ClusterError(f"{key}: {value!r} is not an address other nodes can connect to")
    return str(address)


def _check_unique(nodes: tuple[Node, ...], source: str) -> None:
    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name in names:
            raise ClusterError(
                f"{source}: nodes[{i}].name: {node.name!r} is also nodes[{names[node.name]}]"
            )
        if node.address in addresses:
            raise ClusterError(
                f"{source}: nodes[{i}].address: {node.address} is also"
                f" nodes[{addresses[node.address]}]'s"
            )
        names[node.name] = i
        addresses[node.address] = i


def _required(table: Mapping[str, Any], key: str, source: str, prefix: str) -> Any:
    if key not in table:
        raise ClusterError(f"{source}: {prefix}{key}: missing")
    return table[key]


def _integer(
    table: Mapping[str, Any],
    key: str,
    source: str,
    prefix: str,
    default: int | None,
    low: int,
    high: int,
) -> int:
    value = (
        table.get(key, default) if default is not None else _required(table, key, source, prefix)
    )
    if not isinstance(value, int) or isinstance(value, bool):
        raise ClusterError(f"{source}: {prefix}{key}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ClusterError(f"{source}: {prefix}{key}: {value} is outside {low}-{high}")
    return value


def _shards(table: Mapping[str, Any], source: str, nodes: int) -> int:
    shards = _integer(table, "shards", source, "", None, 1, MAX_SHARDS)
    if shards < nodes:
        raise ClusterError(
            f"{source}: shards: {shards} is fewer than the {nodes} nodes (each node"
            " needs a shard of its own; make it several times the nodes, e.g. 64)"
        )
    return shards


def _seconds(table: Mapping[str, Any], key: str, source: str, default: float) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ClusterError(f"{source}: {key}: expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ClusterError(f"{source}: {key}: {value} is not a positive number of seconds")
    return float(value)


def _dsn(table: Mapping[str, Any], source: str) -> str:
    value = table.get("postgres_dsn")
    if value is None or value == "":
        raise ClusterError(
            f"{source}: postgres_dsn: missing (the PostgreSQL database every node shares)"
        )
    if not isinstance(value, str):
        raise ClusterError(f"{source}: postgres_dsn: expected a string")
    from flockmq.store import StoreError
    from flockmq.store.postgres import describe_dsn

    try:
        describe_dsn(value)
    except StoreError as exc:
        raise ClusterError(f"{source}: {exc}") from None  # it names postgres_dsn
    return value


def _security(table: Mapping[str, Any], source: str) -> tuple[str, bool]:
    """(the keys' directory, insecure) of the [security] table; a relative
    directory is the cluster file's."""
    security = table.get("security")
    if not isinstance(security, dict):
        raise ClusterError(
            f"{source}: security: missing: a [security] table with curve_keys = DIR"
            " (keys made by flockmq cluster-keys), or insecure = true where nothing"
            " but the nodes can reach their bus and heartbeat ports"
        )
    _reject_unknown(security, SECURITY_KEYS, source, "security: ")
    insecure = security.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ClusterError(f"{source}: security.insecure: expected true or false")
    keys = security.get("curve_keys", "")
    if not isinstance(keys, str):
        raise ClusterError(f"{source}: security.curve_keys: expected a directory's path")
    if insecure == bool(keys):
        raise ClusterError(f"{source}: security: give one of curve_keys = DIR and insecure = true")
    if keys and not os.path.isabs(keys):
        keys = os.path.join(os.path.dirname(source), keys)
    return keys, insecure


def _check_heartbeat(cluster: Cluster) -> None:
    interval, timeout = cluster.heartbeat_interval, cluster.heartbeat_timeout
    if interval > MAX_HEARTBEAT_INTERVAL:
        raise ClusterError(
            f"{cluster.source}: heartbeat_interval: {interval} is over"
            f" {MAX_HEARTBEAT_INTERVAL:.0f} seconds"
        )
    if timeout > MAX_HEARTBEAT_TIMEOUT:
        raise ClusterError(
            f"{cluster.source}: heartbeat_timeout: {timeout} is over"
            f" {MAX_HEARTBEAT_TIMEOUT:.0f} seconds"
        )
    if timeout < 2 * interval:
        raise ClusterError(
            f"{cluster.source}: heartbeat_timeout: {timeout} is less than two"
            f" heartbeat_interval ({interval}): one late heartbeat would be a death"
        )
