"""One broker serves the shards of a namespace (workers/serving_broker.py):
a standby keeps a lock only while no other broker holds one; of two brokers
sharing the shards, every broker agrees on the one that gives way."""

from __future__ import annotations

import os
import shutil
import socket
from collections import Counter
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from flockmq.app.probe import free_port
from flockmq.app.supervisor import Supervisor
from flockmq.config import Config
from flockmq.workers.ownership import ShardOwnership
from flockmq.workers.serving_broker import (
    broker_of,
    lock_node,
    may_take,
    must_yield,
    new_broker_id,
)


def name(broker: str, index: int) -> str:
    return f"flockmq shards {lock_node(broker, index)}"


def test_broker_ids_are_short_ascii_and_apart() -> None:
    a = new_broker_id("host1")
    assert a.startswith("host1:") and a != new_broker_id("host1")
    assert new_broker_id("höst 1").startswith("h_st_1:")  # no space: broker_of splits on one
    longest = new_broker_id("h" * 200)
    name = f"flockmq shards {lock_node(longest, 4095)}"
    assert len(name.encode()) <= 63 and broker_of(name) == longest


def test_the_broker_is_read_back_from_the_application_name() -> None:
    assert broker_of(name("h:1a2b3c4d", 3)) == "h:1a2b3c4d"
    assert broker_of(name("my worker host:00", 12)) == "my worker host:00"
    assert broker_of("psql") == ""
    assert broker_of("flockmq shards ") == ""


def test_a_standby_takes_a_shard_only_when_no_other_broker_serves() -> None:
    assert may_take("b", {})
    assert may_take("b", {0: name("b", 0)})  # its own lock
    assert not may_take("b", {0: name("b", 0), 1: name("a", 1)})
    assert not may_take("b", {1: "psql"})  # a stranger in our namespace: not ours to share


def test_of_two_brokers_sharing_the_shards_exactly_one_gives_way() -> None:
    for holders in (
        {0: name("a", 0), 1: name("b", 1)},  # one each: the id decides
        {0: name("a", 0), 1: name("b", 1), 2: name("b", 2)},  # b holds more
        {0: name("z", 0), 1: name("b", 1), 2: name("b", 2)},  # more beats a later id
    ):
        brokers = {broker_of(n) for n in holders.values()}
        yielding = {b for b in brokers if must_yield(b, holders)}
        assert len(yielding) == 1, (holders, yielding)
    assert must_yield("a", {0: name("a", 0), 1: name("b", 1)})
    assert must_yield("z", {0: name("z", 0), 1: name("b", 1), 2: name("b", 2)})
    assert not must_yield("a", {0: name("a", 0), 1: name("a", 1)})  # alone


def supervisor_config(data_dir: Path, host: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Supervisor.prepare on a host named `host`: the config file it hands to
    every child (and to a child it restarts)."""
    monkeypatch.setattr(socket, "gethostname", lambda: host)
    config = Config(data_dir=str(data_dir), port=free_port(), workers=2, acceptors=1).resolved()
    supervisor = Supervisor(config)
    supervisor.prepare()
    try:
        path = data_dir / "handed-to-children.json"
        path.write_text(Path(supervisor.config_path).read_text())
        return path
    finally:
        if supervisor.lock_fd is not None:
            os.close(supervisor.lock_fd)
        shutil.rmtree(supervisor.runtime_dir, ignore_errors=True)


def ownership_of(config_path: Path, index: int) -> ShardOwnership:
    """What a (re)started worker `index` makes of the config file it is given."""
    config = Config.from_json(config_path.read_text())
    config.postgres_dsn = "host=127.0.0.1 dbname=flockmq"  # never connected here
    return ShardOwnership(config, index, Counter())


@pytest.mark.parametrize(
    "host_a, host_b",
    [
        ("mqtt-node-production-01", "mqtt-node-production-02"),  # equal in their first 20
        ("raspberrypi", "raspberrypi"),  # cloned images, same data_dir default
        ("hôte-1", "hôte-2"),  # PostgreSQL turns every non-ASCII character into '?'
    ],
)
def test_two_hosts_have_two_broker_ids(
    host_a: str, host_b: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two brokers with the same id count each other's shards as their own:
    may_take is always true, must_yield never fires, the shards split
    between the brokers (the split serving_broker.py exists to prevent).
    The id is made by each supervisor at start: two supervisors, two ids;
    every worker of one broker, restarted or not, has its broker's id."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config_a = supervisor_config(tmp_path / "a", host_a, monkeypatch)
    config_b = supervisor_config(tmp_path / "b", host_b, monkeypatch)
    a0, a1, b0 = ownership_of(config_a, 0), ownership_of(config_a, 1), ownership_of(config_b, 0)
    a, b = a0.broker, b0.broker
    assert a != b
    assert ownership_of(config_a, 0).broker == a1.broker == a  # worker 0 restarted: the same
    for ownership in (a0, a1, b0):
        name = conninfo_to_dict(ownership.locks.conninfo)["application_name"]
        assert isinstance(name, str) and name.isascii() and len(name.encode()) <= 63
        assert broker_of(name) == ownership.broker
    holders = {0: "flockmq shards " + lock_node(a, 0)}
    assert not may_take(b, holders), "broker B takes shard 1 while broker A serves shard 0"
    assert may_take(a, holders)  # A's worker 1 takes its own shard beside worker 0


def test_a_worker_without_its_brokers_id_does_not_start() -> None:
    """A per-process id would make every worker a broker of its own."""
    with pytest.raises(ValueError, match="broker_id"):
        ShardOwnership(Config(postgres_dsn="host=127.0.0.1"), 0, Counter())
