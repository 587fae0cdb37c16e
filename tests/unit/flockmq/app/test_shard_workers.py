"""flockmq/app/shard_workers.py: a node whose heartbeat port is taken does
not start (a ConfigError naming the endpoint, which `flockmq serve` turns
into exit status 2) rather than run deaf to the other nodes."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest

from flockmq.app.probe import free_port
from flockmq.app.shard_workers import ShardWorkers
from flockmq.cluster import parse_cluster
from flockmq.config import Config, ConfigError

TEXT = """
shards = 1
postgres_dsn = "host=127.0.0.1 dbname=x"
[[nodes]]
name = "a"
address = "127.0.0.2"
bus_port = {bus_port}
[security]
insecure = true
"""


def test_a_taken_heartbeat_port_is_a_config_error_naming_it() -> None:
    layout = parse_cluster(TEXT.format(bus_port=20000)).node("a").heartbeat_port - 20000
    bus_port = free_port("127.0.0.2") - layout  # its heartbeat port: free a moment ago
    cluster = parse_cluster(TEXT.format(bus_port=bus_port), "cluster.toml")
    node = cluster.node("a")
    config = Config(**cluster.config_values("a"))
    config.broker_id = "test:000000000000"
    supervisor: Any = SimpleNamespace(config=config, children=[], config_path="")
    with socket.socket() as taken:
        taken.bind((node.address, node.heartbeat_port))
        taken.listen()
        with pytest.raises(ConfigError, match=f"heartbeat port {node.heartbeat_endpoint()}"):
            ShardWorkers(supervisor, cluster)
