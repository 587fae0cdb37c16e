"""flockmq/cluster.py: a valid cluster file parses into what it says, and
every way of getting it wrong is an error naming the file and the key."""

from __future__ import annotations

import copy
import dataclasses
import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flockmq.cluster import (
    DEFAULT_LOCK_NAMESPACE,
    MAX_NODE_NAME,
    Cluster,
    ClusterError,
    load_cluster,
    parse_cluster,
)
from flockmq.config import Config, ConfigError
from flockmq.curve import write_keypair
from flockmq.placement import Placement
from flockmq.shard_plan import MAX_NODES, MAX_SHARDS, assign_shards

SOURCE = "cluster.toml"
BASE: dict[str, Any] = {
    "shards": 64,
    "postgres_dsn": "host=10.9.0.1 dbname=flockmq user=flockmq password=s3cret",
    "nodes": [
        {"name": "a", "address": "10.9.0.11"},
        {"name": "b", "address": "10.9.0.12", "port": 1884, "bus_port": 20000},
        {"name": "c", "address": "10.9.0.13", "acceptors": 2},
    ],
    "security": {"insecure": True},
}


def to_toml(data: dict[str, Any]) -> str:
    """The TOML of a flat table with [[nodes]] and [security]."""
    tables = ("nodes", "security")
    lines = [f"{key} = {toml_value(value)}" for key, value in data.items() if key not in tables]
    if "security" in data:
        lines.append("[security]")
        security = data["security"]
        lines += [f"{key} = {toml_value(value)}" for key, value in security.items()]
    for node in data.get("nodes", []):
        lines.append("[[nodes]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in node.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """JSON's numbers, booleans and lists are TOML's too; a string has its
    control characters (DEL too, which JSON leaves alone) as \\uXXXX."""
    if isinstance(value, str):
        return (
            '"'
            + "".join(
                f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c
                for c in value
            )
            + '"'
        )
    return json.dumps(value)


def parse(data: dict[str, Any]) -> Cluster:
    return parse_cluster(to_toml(data), SOURCE)


def test_a_valid_file_gives_its_nodes_with_defaults() -> None:
    cluster = parse(BASE)
    assert cluster.node_names == ("a", "b", "c")
    assert cluster.shards == 64
    assert cluster.lock_namespace == DEFAULT_LOCK_NAMESPACE
    assert (cluster.heartbeat_interval, cluster.heartbeat_timeout) == (1.0, 5.0)
    a, b, c = cluster.nodes
    assert (a.port, a.bus_port, a.acceptors) == (1883, 15550, 1)
    assert (b.port, b.bus_port) == (1884, 20000)
    assert c.acceptors == 2
    assert cluster.acceptors == 4
    assert cluster.node("b") is b


def test_the_lock_namespace_default_is_the_lock_holders() -> None:
    from flockmq.store.shard_locks import NAMESPACE

    assert DEFAULT_LOCK_NAMESPACE == NAMESPACE


def test_repr_never_shows_the_dsn_and_its_password() -> None:
    assert "s3cret" not in repr(parse(BASE))


def test_an_unknown_node_is_an_error_that_lists_the_known_ones() -> None:
    with pytest.raises(
        ClusterError, match=r"cluster\.toml: no node 'z' \(the nodes are: a, b, c\)"
    ):
        parse(BASE).node("z")


def test_the_placement_puts_routers_acceptors_and_shards_on_their_nodes() -> None:
    cluster = parse(BASE)
    placement = cluster.placement("c")
    assert placement.names == ("a", "b", "c")
    assert placement.node == 2
    assert placement.routers == 3
    # acceptors numbered globally, node 0's first; each publishes through its node's router
    assert placement.acceptor_nodes == (0, 1, 2, 2)
    assert list(placement.acceptor_routers()) == [0, 1, 2, 2]
    assert placement.acceptors_here() == [2, 3]
    assert placement.routers_here() == [2]
    # every shard on exactly one node: the planner's target with all nodes live
    owners = assign_shards(cluster.node_names, 64)
    for name, shards in owners.items():
        assert set(cluster.placement(name).workers_here()) == shards
    assert sorted(s for n in "abc" for s in cluster.placement(n).workers_here()) == list(range(64))


def test_every_node_computes_the_same_placement_but_its_own_node() -> None:
    cluster = parse(BASE)
    seen = {name: cluster.placement(name) for name in cluster.node_names}
    assert len({(p.addresses, p.acceptor_nodes, p.worker_nodes) for p in seen.values()}) == 1
    assert [p.node for p in seen.values()] == [0, 1, 2]


def cluster_config(name: str, data: dict[str, Any] = BASE) -> Config:
    return Config(**parse(data).config_values(name))


def test_endpoints_are_on_the_address_of_the_node_that_runs_the_process() -> None:
    config = cluster_config("a")
    placement = config.placement
    assert placement is not None
    address = {0: "10.9.0.11", 1: "10.9.0.12", 2: "10.9.0.13"}
    first = {0: 15550, 1: 20000, 2: 15550}
    single = Config(transport="tcp", acceptors=4, workers=64, routers=3)

    def split(endpoint: str) -> tuple[str, int]:
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        return host, int(port)

    def check(endpoint: str, node: int, same_host: str) -> None:
        # the node's address, and the single-host layout's port offset from its first port
        assert split(endpoint) == (address[node], first[node] + split(same_host)[1] - 15550)

    for r in range(3):
        check(config.router_endpoint(r), r, single.router_endpoint(r))
        check(config.router_work_endpoint(r), r, single.router_work_endpoint(r))
    for s in range(64):
        node = placement.worker_nodes[s]
        check(config.worker_endpoint(s), node, single.worker_endpoint(s))
        check(config.worker_work_endpoint(s), node, single.worker_work_endpoint(s))
    for acceptor, node in enumerate((0, 1, 2, 2)):
        check(config.acceptor_endpoint(acceptor), node, single.acceptor_endpoint(acceptor))
        assert config.router_of(acceptor) == node
    # no two inboxes share an address and port, and each port is in its node's range
    endpoints = (
        [config.router_endpoint(r) for r in range(3)]
        + [config.router_work_endpoint(r) for r in range(3)]
        + [config.worker_endpoint(s) for s in range(64)]
        + [config.worker_work_endpoint(s) for s in range(64)]
        + [config.acceptor_endpoint(a) for a in range(4)]
    )
    assert len(set(endpoints)) == len(endpoints) == 138
    cluster = parse(BASE)
    for endpoint in endpoints:
        host, port = split(endpoint)
        owner = cluster.nodes[list(address.values()).index(host)]
        assert port in owner.bus_ports


def test_a_node_config_is_one_broker_over_tcp_on_postgres_listening_on_its_address() -> None:
    # not on loopback: anonymous clients only when asked for (flockmq/listeners.py)
    config = dataclasses.replace(cluster_config("b"), allow_anonymous=True).resolved()
    assert (config.routers, config.workers, config.acceptors) == (3, 64, 4)
    assert (config.transport, config.store, config.auth_processes) == ("tcp", "postgres", 0)
    assert (config.host, config.port) == ("10.9.0.12", 1884)
    assert config.shard_namespace == DEFAULT_LOCK_NAMESPACE
    assert config.acceptor_routers() == (0, 1, 2, 2)
    # what the supervisor hands its children comes back the same
    assert Config.from_json(config.to_json()) == config


def test_without_a_cluster_acceptors_take_routers_in_turn() -> None:
    config = Config(routers=3, acceptors=5)
    assert [config.router_of(a) for a in range(5)] == [0, 1, 2, 0, 1]
    assert config.acceptor_routers() == ()


def test_a_placement_with_a_process_on_no_node_is_refused() -> None:
    with pytest.raises(ValueError, match="every worker on one of the 2 nodes"):
        Placement(("a", "b"), ("10.0.0.1", "10.0.0.2"), (1, 1), (0, 1), (0, 2), 0)
    with pytest.raises(ValueError, match="node 2 is not one of the 2 nodes"):
        Placement(("a", "b"), ("10.0.0.1", "10.0.0.2"), (1, 1), (0, 1), (0, 1), 2)


def with_change(path: str, value: Any) -> dict[str, Any]:
    """BASE with the key at `path` ("shards", "nodes.1.port") set to value
    (deleted when value is DELETE)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    table: Any = data
    for part in parents:
        table = table[int(part)] if part.isdigit() else table[part]
    if value is DELETE:
        del table[last]
    else:
        table[last] = value
    return data


DELETE = object()

# (key to change, its new value, what the error must say after "cluster.toml: ")
ERRORS: list[tuple[str, Any, str]] = [
    ("shardz", 64, "unknown key 'shardz'"),
    ("nodes.0.adress", "10.9.0.20", "nodes[0]: unknown key 'adress'"),
    ("nodes", [], "nodes: expected [[nodes]] tables, at least one"),
    ("nodes", DELETE, "nodes: expected [[nodes]] tables"),
    ("shards", DELETE, "shards: missing"),
    ("shards", 2, "shards: 2 is fewer than the 3 nodes"),
    ("shards", 0, "shards: 0 is outside 1-4096"),
    ("shards", MAX_SHARDS + 1, "shards: 4097 is outside 1-4096"),
    ("shards", True, "shards: expected an integer, got True"),
    ("shards", "64", "shards: expected an integer, got '64'"),
    ("postgres_dsn", DELETE, "postgres_dsn: missing"),
    ("postgres_dsn", "", "postgres_dsn: missing"),
    ("postgres_dsn", 5, "postgres_dsn: expected a string"),
    ("postgres_dsn", "host=x port", "postgres_dsn is not a valid PostgreSQL connection string"),
    ("lock_namespace", -1, "lock_namespace: -1 is outside 0-2147483647"),
    ("lock_namespace", 2**31, "lock_namespace: 2147483648 is outside 0-2147483647"),
    ("heartbeat_interval", 0, "heartbeat_interval: 0 is not a positive number of seconds"),
    ("heartbeat_interval", "1s", "heartbeat_interval: expected a number of seconds"),
    ("heartbeat_interval", 61, "heartbeat_interval: 61.0 is over 60 seconds"),
    ("heartbeat_timeout", -5, "heartbeat_timeout: -5 is not a positive number"),
    ("heartbeat_timeout", 601, "heartbeat_timeout: 601.0 is over 600 seconds"),
    ("heartbeat_timeout", 1.5, "heartbeat_timeout: 1.5 is less than two heartbeat_interval"),
    ("nodes.1.name", DELETE, "nodes[1].name: missing"),
    ("nodes.1.name", "a", "nodes[1].name: 'a' is also nodes[0]"),
    ("nodes.1.name", 7, "nodes[1].name: expected a string"),
    ("nodes.1.name", "", "nodes[1].name: '' is not 1-63 characters"),
    ("nodes.1.name", "b c", "nodes[1].name: 'b c' is not 1-63 characters"),
    ("nodes.1.name", "-b", "nodes[1].name: '-b' is not"),
    ("nodes.1.name", "x" * 64, "nodes[1].name: 'xxxx"),
    ("nodes.2.address", DELETE, "nodes[2].address: missing"),
    ("nodes.2.address", "10.9.0.11", "nodes[2].address: 10.9.0.11 is also nodes[0]'s"),
    ("nodes.2.address", "10.9.0.256", "nodes[2].address: '10.9.0.256' is not an IP address"),
    ("nodes.2.address", "host-c", "nodes[2].address: 'host-c' is not an IP address"),
    ("nodes.2.address", "fd00::1", "nodes[2].address: 'fd00::1': IPv6 is not supported"),
    ("nodes.2.address", "0.0.0.0", "nodes[2].address: '0.0.0.0' is not an address other"),
    ("nodes.2.address", "224.0.0.1", "nodes[2].address: '224.0.0.1' is not an address other"),
    ("nodes.2.address", "255.255.255.255", "nodes[2].address: '255.255.255.255' is not an"),
    ("nodes.2.address", 10, "nodes[2].address: expected a string"),
    ("nodes.0.port", 0, "nodes[0].port: 0 is outside 1-65535"),
    ("nodes.0.port", 65536, "nodes[0].port: 65536 is outside 1-65535"),
    # the whole layout's ports: 2 per router (3) and shard (64), 1 per acceptor (4)
    ("nodes.0.port", 15687, "nodes[0].port: 15687 is one of the node's bus ports (15550-15687)"),
    ("nodes.0.bus_port", 70000, "nodes[0].bus_port: 70000 is outside 1-65535"),
    (
        "nodes.0.bus_port",
        65533,
        "nodes[0].bus_port: the bus needs ports 65533-65670 and its heartbeats 65671, past 65535",
    ),
    (
        "nodes.0.bus_port",
        65398,
        "nodes[0].bus_port: the bus needs ports 65398-65535 and its heartbeats 65536, past 65535",
    ),
    ("nodes.0.port", 15688, "nodes[0].port: 15688 is the node's heartbeat port on 10.9.0.11"),
    # a cluster's workers are its shards, placed by the planner
    ("nodes.0.workers", 3, "nodes[0]: unknown key 'workers'"),
    ("nodes.0.acceptors", 257, "nodes[0].acceptors: 257 is outside 1-256"),
    ("nodes.0.acceptors", 1.0, "nodes[0].acceptors: expected an integer, got 1.0"),
]


@pytest.mark.parametrize(("path", "value", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_every_mistake_is_an_error_naming_the_file_and_the_key(
    path: str, value: Any, message: str
) -> None:
    with pytest.raises(ClusterError) as caught:
        parse(with_change(path, value))
    assert str(caught.value).startswith(f"{SOURCE}: "), caught.value
    assert message in str(caught.value), caught.value
    assert isinstance(caught.value, ConfigError)  # the CLI prints both alike


def test_a_node_that_is_not_a_table_and_too_many_nodes_are_errors() -> None:
    text = 'shards = 4\npostgres_dsn = "host=x"\nnodes = [1]\n'
    with pytest.raises(ClusterError, match=r"cluster\.toml: nodes\[0\]: expected a table"):
        parse_cluster(text, SOURCE)
    many = [{"name": f"n{i}", "address": f"10.8.{i // 200}.{i % 200 + 1}"} for i in range(257)]
    with pytest.raises(ClusterError, match=f"nodes: 257 nodes, at most {MAX_NODES}"):
        parse({**BASE, "shards": 300, "nodes": many})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", ["heartbeat_interval", "heartbeat_timeout"])
def test_a_heartbeat_that_is_not_a_finite_number_is_an_error(key: str, value: str) -> None:
    with pytest.raises(ClusterError, match=f"^cluster\\.toml: {key}: .* is not a positive number"):
        parse_cluster(f"{key} = {value}\n" + to_toml(BASE), SOURCE)


def test_toml_that_does_not_parse_names_the_file() -> None:
    with pytest.raises(ClusterError, match=r"cluster file cluster\.toml: .*line 1"):
        parse_cluster("shards = = 3", SOURCE)


def test_load_names_a_missing_file_and_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"cluster file .*nowhere\.toml: No such file"):
        load_cluster(str(tmp_path / "nowhere.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"shards = 4 # \xff\n")
    with pytest.raises(ClusterError, match=r"bad\.toml: not UTF-8"):
        load_cluster(str(bad))
    good = tmp_path / "good.toml"
    good.write_text(to_toml(BASE))
    assert load_cluster(str(good)).source == str(good)


names = st.text(st.characters(codec="utf-8"), max_size=70)


@given(names)
def test_a_name_is_accepted_exactly_when_it_fits_the_rule(name: str) -> None:
    data = with_change("nodes.1.name", name)
    allowed = string.ascii_letters + string.digits + "._-"
    fits = 1 <= len(name) <= MAX_NODE_NAME and all(c in allowed for c in name)
    fits = fits and name[0] not in "._-"
    if fits and name not in ("a", "c"):
        assert parse(data).nodes[1].name == name
    else:
        with pytest.raises(ClusterError, match=r"^cluster\.toml: nodes\[[12]\]\.name: "):
            parse(data)


@given(
    port=st.integers(-5, 70_000),
    bus_port=st.integers(-5, 70_000),
    acceptors=st.integers(0, 300),
    shards=st.integers(1, 300),
)
def test_ports_are_accepted_exactly_when_they_fit_and_do_not_clash(
    port: int, bus_port: int, acceptors: int, shards: int
) -> None:
    node = {"name": "a", "address": "10.9.0.11", "port": port, "bus_port": bus_port}
    node |= {"acceptors": acceptors}
    data = {**BASE, "shards": shards, "nodes": [node]}
    last = bus_port + 1 + 2 * shards + acceptors
    fits = (
        1 <= port <= 65535
        and 1 <= bus_port <= 65535
        and 1 <= acceptors <= 256
        and last + 1 <= 65535  # the heartbeat port is last + 1
        and not bus_port <= port <= last + 1
    )
    if fits:
        cluster = parse(data)
        parsed = cluster.nodes[0]
        assert parsed.port not in parsed.bus_ports
        assert parsed.bus_ports == range(bus_port, last + 1)
        assert parsed.heartbeat_port == last + 1 != parsed.port
    else:
        with pytest.raises(
            ClusterError, match=r"^cluster\.toml: nodes\[0\]\.(port|bus_port|acceptors): "
        ):
            parse(data)


@given(st.integers(1, 20), st.integers(1, 100))
def test_shards_must_be_at_least_the_nodes(count: int, shards: int) -> None:
    nodes = [{"name": f"n{i}", "address": f"10.9.1.{i + 1}"} for i in range(count)]
    data = {**BASE, "nodes": nodes, "shards": shards}
    if shards >= count:
        assert parse(data).shards == shards
    else:
        with pytest.raises(
            ClusterError, match=rf"shards: {shards} is fewer than the {count} nodes"
        ):
            parse(data)


def test_the_example_in_the_module_docstring_is_a_valid_cluster_file(tmp_path: Path) -> None:
    import flockmq.cluster

    doc = flockmq.cluster.__doc__ or ""
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    cluster = parse_cluster(example, str(tmp_path / "cluster.toml"))
    write_keypair(str(tmp_path / "keys"), "a")  # curve_keys = "keys": the file's directory's
    config = Config(**cluster.config_values("a"))
    assert config.curve is not None
    assert config.router_endpoint() == "tcp://10.0.0.11:15550"
    assert cluster.lock_namespace == DEFAULT_LOCK_NAMESPACE
