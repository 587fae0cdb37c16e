"""One broker serves the shards of a namespace (workers/serving_broker.py):
a standby keeps a lock only while no other broker holds one; of two brokers
sharing the shards, every broker agrees on the one that gives way."""

from __future__ import annotations

import pytest

from flockmq.workers.serving_broker import (
    broker_id,
    broker_of,
    lock_node,
    may_take,
    must_yield,
)


def name(broker: str, index: int) -> str:
    return f"flockmq shards {lock_node(broker, index)}"


def test_broker_ids_are_stable_short_and_apart() -> None:
    a = broker_id("/var/lib/flockmq-a", "host1")
    assert a == broker_id("/var/lib/flockmq-a", "host1")
    assert a != broker_id("/var/lib/flockmq-b", "host1")
    assert a != broker_id("/var/lib/flockmq-a", "host2")
    longest = broker_id("/x", "h" * 200)
    assert len(f"flockmq shards {lock_node(longest, 4095)}".encode()) <= 63


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


@pytest.mark.parametrize(
    "host_a, host_b",
    [
        ("mqtt-node-production-01", "mqtt-node-production-02"),  # equal in their first 20
        ("raspberrypi", "raspberrypi"),  # cloned images, same data_dir default
    ],
)
def test_two_hosts_have_two_broker_ids(host_a: str, host_b: str) -> None:
    """Two brokers with the same id count each other's shards as their own:
    may_take is always true, must_yield never fires, the shards split
    between the brokers (the split serving_broker.py exists to prevent)."""
    a = broker_id("/var/lib/flockmq", host=host_a)
    b = broker_id("/var/lib/flockmq", host=host_b)
    assert a != b
    holders = {0: "flockmq shards " + lock_node(a, 0)}
    assert not may_take(b, holders), "broker B takes shard 1 while broker A serves shard 0"
