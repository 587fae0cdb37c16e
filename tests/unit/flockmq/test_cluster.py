"""flockmq/cluster.py: a valid cluster file parses into what it says, and
every way of getting it wrong is an error naming the file and the key."""

from __future__ import annotations

import copy
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
    BusRole,
    Cluster,
    ClusterError,
    load_cluster,
    parse_cluster,
)
from flockmq.config import Config, ConfigError
from flockmq.shard_plan import MAX_NODES, MAX_SHARDS

SOURCE = "cluster.toml"
BASE: dict[str, Any] = {
    "shards": 64,
    "postgres_dsn": "host=10.9.0.1 dbname=flockmq user=flockmq password=s3cret",
    "nodes": [
        {"name": "a", "address": "10.9.0.11"},
        {"name": "b", "address": "10.9.0.12", "port": 1884, "bus_port": 20000},
        {"name": "c", "address": "10.9.0.13", "acceptors": 2, "workers": 3},
    ],
}


def to_toml(data: dict[str, Any]) -> str:
    """The TOML of a flat table with [[nodes]]."""
    lines = [f"{key} = {toml_value(value)}" for key, value in data.items() if key != "nodes"]
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
    assert (a.port, a.bus_port, a.acceptors, a.workers) == (1883, 15550, 1, 1)
    assert (b.port, b.bus_port) == (1884, 20000)
    assert (c.acceptors, c.workers) == (2, 3)
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


def test_endpoints_are_the_single_host_tcp_layout_on_the_nodes_address() -> None:
    c = parse(BASE).node("c")
    layout = Config(
        transport="tcp", tcp_host="10.9.0.13", tcp_base_port=15550, acceptors=2, workers=3
    )
    assert c.bus_endpoint(BusRole.ROUTER) == layout.router_endpoint() == "tcp://10.9.0.13:15550"
    assert c.bus_endpoint(BusRole.ROUTER_WORK) == layout.router_work_endpoint()
    assert c.bus_endpoint(BusRole.WORKER, 2) == layout.worker_endpoint(2)
    assert c.bus_endpoint(BusRole.WORKER_WORK, 1) == layout.worker_work_endpoint(1)
    assert c.bus_endpoint(BusRole.ACCEPTOR, 1) == layout.acceptor_endpoint(1)
    # every inbox has a port of its own, and bus_ports are exactly those ports
    ports = [int(e.rsplit(":", 1)[1]) for e in c.bus_endpoints().values()]
    assert sorted(ports) == list(c.bus_ports)
    assert len(c.bus_endpoints()) == 2 + 2 * 3 + 2


@pytest.mark.parametrize(
    ("role", "index"),
    [(BusRole.ROUTER, 1), (BusRole.WORKER, 3), (BusRole.WORKER_WORK, -1), (BusRole.ACCEPTOR, 2)],
)
def test_an_inbox_the_node_does_not_have_is_an_error(role: BusRole, index: int) -> None:
    with pytest.raises(ClusterError, match=f"node 'c': no {role.value} {index}"):
        parse(BASE).node("c").bus_endpoint(role, index)


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
    ("nodes.0.port", 15553, "nodes[0].port: 15553 is one of the node's bus ports (15550-15554)"),
    ("nodes.0.bus_port", 70000, "nodes[0].bus_port: 70000 is outside 1-65535"),
    (
        "nodes.0.bus_port",
        65533,
        "nodes[0].bus_port: the bus needs ports 65533-65537 and its heartbeats 65538, past 65535",
    ),
    (
        "nodes.0.bus_port",
        65531,
        "nodes[0].bus_port: the bus needs ports 65531-65535 and its heartbeats 65536, past 65535",
    ),
    ("nodes.0.port", 15555, "nodes[0].port: 15555 is the node's heartbeat port on 10.9.0.11"),
    ("nodes.0.workers", 0, "nodes[0].workers: 0 is outside 1-256"),
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
    workers=st.integers(0, 300),
)
def test_ports_are_accepted_exactly_when_they_fit_and_do_not_clash(
    port: int, bus_port: int, acceptors: int, workers: int
) -> None:
    node = {"name": "a", "address": "10.9.0.11", "port": port, "bus_port": bus_port}
    node |= {"acceptors": acceptors, "workers": workers}
    data = {**BASE, "nodes": [node]}
    last = bus_port + 1 + 2 * workers + acceptors
    fits = (
        1 <= port <= 65535
        and 1 <= bus_port <= 65535
        and 1 <= acceptors <= 256
        and 1 <= workers <= 256
        and last + 1 <= 65535  # the heartbeat port is last + 1
        and not bus_port <= port <= last + 1
    )
    if fits:
        parsed = parse(data).nodes[0]
        assert parsed.port not in parsed.bus_ports
        assert parsed.bus_ports == range(bus_port, last + 1)
        assert parsed.heartbeat_port == last + 1 != parsed.port
    else:
        with pytest.raises(
            ClusterError, match=r"^cluster\.toml: nodes\[0\]\.(port|bus_port|acceptors|workers): "
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


def test_the_example_in_the_module_docstring_is_a_valid_cluster_file() -> None:
    import flockmq.cluster

    doc = flockmq.cluster.__doc__ or ""
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    cluster = parse_cluster(example, "docstring")
    assert cluster.node("a").bus_endpoint(BusRole.ROUTER) == "tcp://10.0.0.11:15550"
    assert cluster.lock_namespace == DEFAULT_LOCK_NAMESPACE
