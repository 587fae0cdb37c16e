"""Run plans: who publishes what to whom, and how clients are spread over
processes (no process above the per-process connection cap)."""

from __future__ import annotations

import pytest
from loadgen.scenarios import MAX_CONNECTIONS_PER_PROCESS, Settings, build_plan


def test_fanin_splits_the_count_over_publishers_to_one_wildcard() -> None:
    plan = build_plan(Settings("fanin", publishers=4, count=1000, run_id="t"), 2)
    assert [p.count for p in plan.publishers] == [250] * 4
    (sub,) = plan.subscribers
    assert sub.topic_filter == "flock/t/fanin/+"
    assert sub.expects == (0, 1, 2, 3)
    assert plan.expected_deliveries == 1000


def test_fanout_delivers_each_message_to_every_subscriber() -> None:
    plan = build_plan(Settings("fanout", subscribers=100, count=50, run_id="t"), 2)
    assert len(plan.publishers) == 1 and plan.publishers[0].count == 50
    assert all(s.expects == (0,) for s in plan.subscribers)
    assert plan.expected_deliveries == 5000


def test_pairs_use_distinct_topics() -> None:
    plan = build_plan(Settings("pairs", pairs=10, count=100, run_id="t"), 2)
    topics = {p.topic for p in plan.publishers}
    assert len(topics) == 10
    for sub in plan.subscribers:
        (pub_id,) = sub.expects
        assert plan.publishers[pub_id].topic == sub.topic_filter
    assert plan.expected_deliveries == 100


def test_subscribers_connect_to_the_subscriber_host_when_given() -> None:
    plain = build_plan(Settings("pairs", pairs=3, count=30, run_id="t"), 2)
    assert all(c.host == "" for c in [*plain.publishers, *plain.subscribers])
    split = Settings("pairs", pairs=3, count=30, run_id="t", subscriber_host="10.0.0.3")
    plan = build_plan(split, 2)
    assert [s.host for s in plan.subscribers] == ["10.0.0.3"] * 3
    assert [p.host for p in plan.publishers] == [""] * 3  # Settings.host


def test_latency_is_one_paced_pair() -> None:
    plan = build_plan(Settings("latency", rate=10_000, count=100, run_id="t"), 2)
    assert len(plan.publishers) == len(plan.subscribers) == 1
    assert plan.publishers[0].rate == 10_000


@pytest.mark.parametrize("connections", [1, 15_000, 15_001, 40_000, 60_000])
def test_connections_respect_the_per_process_cap(connections: int) -> None:
    plan = build_plan(Settings("connections", connections=connections, run_id="t"), 2)
    assert sum(len(a) for a in plan.assignment) == connections
    assert max(len(a) for a in plan.assignment) <= MAX_CONNECTIONS_PER_PROCESS
    # 40,000 connections to one port need more than one source address
    by_source = {c.source_ip for c in plan.idle}
    assert len(by_source) == 1 + (connections - 1) // 10_000


def test_too_few_processes_is_refused() -> None:
    with pytest.raises(ValueError):
        build_plan(Settings("connections", connections=40_000, processes=2, run_id="t"), 2)


def test_subscribers_and_publishers_are_spread() -> None:
    plan = build_plan(Settings("pairs", pairs=10, processes=2, run_id="t"), 8)
    assert [len(a) for a in plan.assignment] == [10, 10]


def test_connect_rate_clients_only_connect() -> None:
    plan = build_plan(Settings("connect-rate", connections=12_000, processes=4, run_id="t"), 2)
    assert not plan.publishers and not plan.subscribers and not plan.idle
    assert len(plan.churn) == 12_000
    assert len({c.client_id for c in plan.churn}) == 12_000
    assert [len(a) for a in plan.assignment] == [3000] * 4
    # the first 10,000 connect from the default address, the rest are spread
    assert {c.source_ip for c in plan.churn[:10_000]} == {""}
    assert {c.source_ip for c in plan.churn[10_000:]} == {"127.0.0.2"}


def test_clients_take_the_credentials_in_turn() -> None:
    users = (("a", "pa"), ("b", "pb"), ("c", "pc"))
    plan = build_plan(Settings("connect-rate", connections=7, credentials=users, run_id="t"), 2)
    assert [c.credentials for c in plan.churn] == [*users, *users, users[0]]
    plan = build_plan(Settings("fanin", publishers=4, credentials=users, run_id="t"), 2)
    clients = [*plan.subscribers, *plan.publishers]
    assert all(c.credentials in users for c in clients)


def test_no_credentials_means_anonymous() -> None:
    plan = build_plan(Settings("fanin", publishers=2, run_id="t"), 2)
    assert all(c.credentials is None for c in [*plan.subscribers, *plan.publishers])
