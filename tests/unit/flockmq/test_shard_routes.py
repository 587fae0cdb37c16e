"""flockmq/shard_routes.py: a SHARD_AT that moves a shard repoints its pipe
to the worker's inboxes on the new node (same port offset, the new node's
address and bus ports); a re-send, a stale one and a malformed one do not."""

from __future__ import annotations

from flockmq.cluster import parse_cluster
from flockmq.config import Config
from flockmq.envelopes import Kind
from flockmq.shard_routes import ShardRoutes

CLUSTER = """
shards = 6
postgres_dsn = "host=10.9.0.1 dbname=x"
[[nodes]]
name = "a"
address = "10.9.0.11"
[[nodes]]
name = "b"
address = "10.9.0.12"
bus_port = 20000
[[nodes]]
name = "c"
address = "10.9.0.13"
[security]
insecure = true
"""


def test_a_moved_shard_is_repointed_to_its_worker_on_the_new_node() -> None:
    cluster = parse_cluster(CLUSTER, "cluster.toml")
    config = Config(**cluster.config_values("a"))
    placement = config.placement
    assert placement is not None
    shard = next(s for s, n in enumerate(placement.worker_nodes) if n == 2)  # one of c's
    calls: list[tuple[int, str, str]] = []
    routes = ShardRoutes(
        config,
        lambda s, now: calls.append((s, now.worker_work_endpoint(s), now.worker_endpoint(s))),
    )
    routes.on_shard_at([Kind.SHARD_AT, shard, 2, 1])  # c claimed it: no move
    assert calls == []
    routes.on_shard_at([Kind.SHARD_AT, shard, 1, 2])  # b took it
    ((moved, work, core),) = calls
    assert moved == shard
    for new, old in (
        (work, config.worker_work_endpoint(shard)),
        (core, config.worker_endpoint(shard)),
    ):
        # the same inbox (port offset) on b: b's address, b's first bus port
        assert new.startswith("tcp://10.9.0.12:") and old.startswith("tcp://10.9.0.13:")
        assert port(new) - 20000 == port(old) - cluster.node("c").bus_port
    routes.on_shard_at([Kind.SHARD_AT, shard, 1, 2])  # the re-send
    routes.on_shard_at([Kind.SHARD_AT, shard, 2, 1])  # a late frame of the old owner
    routes.on_shard_at([Kind.SHARD_AT, shard, 7, 3])  # no node 7
    routes.on_shard_at([Kind.SHARD_AT, shard])
    assert len(calls) == 1 and routes.malformed == 2 and routes.directory.stale == 1
    assert routes.config.placement is not None
    assert routes.config.placement.worker_nodes[shard] == 1


def port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])
