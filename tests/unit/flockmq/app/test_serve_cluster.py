"""`flockmq serve --cluster FILE --node NAME` (issue 14): what the cluster
file decides cannot be contradicted by a flag or by the --config file, and
every mistake is a usage error (exit 2) that says what is wrong, before
anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flockmq.app.cli import main
from flockmq.app.supervisor import local_children
from flockmq.cluster import load_cluster
from flockmq.config import ConfigError, load_config

CLUSTER = """
shards = 6
postgres_dsn = "host=10.9.0.1 dbname=flockmq user=flockmq password=s3cret"
[[nodes]]
name = "a"
address = "10.9.0.11"
acceptors = 2
[[nodes]]
name = "b"
address = "10.9.0.12"
[[nodes]]
name = "c"
address = "10.9.0.13"
[security]
insecure = true
"""


@pytest.fixture
def cluster_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(CLUSTER)
    return path


def serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["serve", *args])
    return result.exit_code, result.output


def test_node_without_cluster_and_cluster_without_node_are_usage_errors(
    cluster_file: Path,
) -> None:
    code, out = serve("--node", "a")
    assert code == 2 and "--node: only with --cluster FILE" in out
    code, out = serve("--cluster", str(cluster_file))
    assert code == 2 and "--cluster: which node is this host? (--node NAME)" in out


def test_an_unknown_node_is_a_usage_error_listing_the_nodes(cluster_file: Path) -> None:
    code, out = serve("--cluster", str(cluster_file), "--node", "z")
    assert code == 2
    assert "Invalid value for '--node'" in out
    assert f"{cluster_file} has no node 'z' (its nodes: a, b, c)" in out


def test_a_missing_or_invalid_cluster_file_says_so(tmp_path: Path, cluster_file: Path) -> None:
    code, out = serve("--cluster", str(tmp_path / "nope.toml"), "--node", "a")
    assert code == 2 and "nope.toml: No such file or directory" in out
    cluster_file.write_text(CLUSTER.replace("shards = 6", "shards = 2"))
    code, out = serve("--cluster", str(cluster_file), "--node", "a")
    assert code == 2 and "shards: 2 is fewer than the 3 nodes" in out


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--workers", "4"], "--workers: the cluster file decides it (workers = 6); leave it out"),
        (["--acceptors", "1"], "--acceptors: the cluster file decides it (acceptors = 4)"),
        (["--routers", "1"], "--routers: the cluster file decides it (routers = 3)"),
        (["--port", "1884"], "--port: the cluster file decides it (port = 1883)"),
        (["--host", "0.0.0.0"], "--host: the cluster file decides it (host = '10.9.0.11')"),
        (["--transport", "ipc"], "--transport: the cluster file decides it (transport = 'tcp')"),
        (["--store", "sqlite"], "--store: the cluster file decides it (store = 'postgres')"),
        (["--postgres-dsn", "host=x"], "--postgres-dsn: the cluster file decides it (its"),
    ],
)
def test_a_flag_that_contradicts_the_cluster_file_is_refused(
    cluster_file: Path, flags: list[str], error: str
) -> None:
    code, out = serve("--cluster", str(cluster_file), "--node", "a", *flags)
    assert code == 2
    assert error in out
    assert "s3cret" not in out


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('transport = "ipc"', "transport: the cluster file decides it (transport = 'tcp')"),
        ("workers = 2", "workers: the cluster file decides it (workers = 6)"),
        ("tcp_base_port = 20000", "tcp_base_port: the cluster file decides it"),
        ("shard_namespace = 7", "shard_namespace: the cluster file decides it"),
        ("auth_processes = 1", "cluster: auth hooks are not supported in a cluster yet"),
    ],
)
def test_a_config_file_key_that_contradicts_the_cluster_file_is_refused(
    tmp_path: Path, cluster_file: Path, text: str, error: str
) -> None:
    config = tmp_path / "flockmq.toml"
    config.write_text(f"allow_anonymous = true\n{text}\n")
    code, out = serve("--cluster", str(cluster_file), "--node", "b", "--config", str(config))
    assert code == 2 and error in out


def test_a_setting_the_file_agrees_with_and_what_it_leaves_open_are_taken(
    tmp_path: Path, cluster_file: Path
) -> None:
    fixed = load_cluster(str(cluster_file)).config_values("c")
    overrides = {"workers": 6, "max_inflight": 10, "allow_anonymous": True}
    config = load_config(None, {**overrides, "data_dir": str(tmp_path)}, fixed)
    assert (config.workers, config.max_inflight, config.host) == (6, 10, "10.9.0.13")
    with pytest.raises(ConfigError, match="not on a loopback address"):
        load_config(None, {"data_dir": str(tmp_path)}, fixed)  # anonymous: only if asked


def test_each_node_runs_its_router_its_acceptors_and_the_workers_of_its_shards(
    tmp_path: Path, cluster_file: Path
) -> None:
    cluster = load_cluster(str(cluster_file))
    seen: list[tuple[str, int]] = []
    for name, acceptors in (("a", [0, 1]), ("b", [2]), ("c", [3])):
        values = {**cluster.config_values(name), "allow_anonymous": True}
        config = load_config(None, {"data_dir": str(tmp_path)}, values)
        children = [(child.role, child.index) for child in local_children(config)]
        assert placement_of(children, "router") == [cluster.node_names.index(name)]
        assert placement_of(children, "acceptor") == acceptors
        assert config.placement is not None
        assert placement_of(children, "worker") == config.placement.workers_here()
        seen += children
    # every process of the broker runs on exactly one node
    expected = (
        [("router", i) for i in range(3)]
        + [("worker", i) for i in range(6)]
        + [("acceptor", i) for i in range(4)]
    )
    assert sorted(seen) == sorted(expected)


def placement_of(children: list[tuple[str, int]], role: str) -> list[int]:
    return sorted(index for r, index in children if r == role)
