"""router/sys_topics.py: Mosquitto's $SYS/broker topics, summed over the
processes' own counters, with Mosquitto's load averages."""

from __future__ import annotations

import math

import pytest

from flockmq.router.sys_topics import SysTopics


def published(sys: SysTopics, now: float) -> dict[str, bytes]:
    return dict(sys.topics(now))


def feed(sys: SysTopics, role: str, index: int, **counters: int) -> None:
    for name, value in counters.items():
        assert sys.observe(f"$SYS/broker/{role}/{index}/{name}", str(value).encode())


def test_figures_are_summed_over_the_processes() -> None:
    sys = SysTopics("1.2.3", started=100.0)
    feed(sys, "acceptor", 0, clients_connected=3, packets_received=10, bytes_sent=500)
    feed(sys, "acceptor", 1, clients_connected=2, packets_received=5, bytes_sent=100)
    feed(sys, "worker", 0, sessions_offline=4, subscriptions=7, messages_stored=9)
    feed(sys, "worker", 1, sessions_offline=1, subscriptions=1)
    feed(sys, "router", 0, retained_messages=6)
    got = published(sys, 160.0)
    assert got["$SYS/broker/clients/connected"] == b"5"
    assert got["$SYS/broker/clients/disconnected"] == b"5"
    assert got["$SYS/broker/clients/total"] == b"10"
    assert got["$SYS/broker/messages/received"] == b"15"
    assert got["$SYS/broker/bytes/sent"] == b"600"
    assert got["$SYS/broker/subscriptions/count"] == b"8"
    assert got["$SYS/broker/retained messages/count"] == b"6"
    assert got["$SYS/broker/store/messages/count"] == b"9"
    assert got["$SYS/broker/uptime"] == b"60 seconds"
    assert got["$SYS/broker/version"] == b"flockmq version 1.2.3"
    # the maximum stays when clients leave
    feed(sys, "acceptor", 0, clients_connected=0)
    got = published(sys, 170.0)
    assert got["$SYS/broker/clients/connected"] == b"2"
    assert got["$SYS/broker/clients/maximum"] == b"5"


def test_a_restarted_process_does_not_make_totals_go_back() -> None:
    sys = SysTopics("1", started=0.0)
    feed(sys, "acceptor", 0, packets_received=1000, clients_connected=50)
    feed(sys, "acceptor", 0, packets_received=30, clients_connected=2)  # restarted
    got = published(sys, 1.0)
    assert got["$SYS/broker/messages/received"] == b"1030"
    assert got["$SYS/broker/clients/connected"] == b"2"  # a value now, not a total


def test_load_is_mosquittos_moving_average_per_minute() -> None:
    sys = SysTopics("1", started=0.0)
    feed(sys, "acceptor", 0, packets_received=0)
    sys.topics(0.0)
    feed(sys, "acceptor", 0, packets_received=600)  # 600 in 10 s: 3600 per minute
    got = published(sys, 10.0)
    for period, seconds in (("1min", 60), ("5min", 300), ("15min", 900)):
        expected = 3600 * (1 - math.exp(-10 / seconds))
        value = float(got[f"$SYS/broker/load/messages/received/{period}"])
        assert value == pytest.approx(expected, abs=0.01)
    # a steady rate: the 1-minute average converges to it
    for step in range(2, 200):
        feed(sys, "acceptor", 0, packets_received=600 * step)
        got = published(sys, 10.0 * step)
    assert float(got["$SYS/broker/load/messages/received/1min"]) == pytest.approx(3600, rel=0.01)
    assert {f"$SYS/broker/load/{s}/1min" for s in ("connections", "sockets", "bytes/sent")} <= set(
        got
    )


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("$SYS/broker/acceptor/x/packets_received", b"1"),
        ("$SYS/broker/acceptor/99999/packets_received", b"1"),
        ("$SYS/broker/acceptor/0/not-a-name", b"1"),
        ("$SYS/broker/acceptor/0/packets_received", b"many"),
        ("$SYS/broker/acceptor/0/packets_received", b"1" * 100),
        ("$SYS/broker/clients/connected", b"1"),  # our own output
        ("$SYS/broker/acceptor/0/packets_received/x", b"1"),
        ("other/acceptor/0/packets_received", b"1"),
    ],
)
def test_anything_else_is_ignored(topic: str, payload: bytes) -> None:
    sys = SysTopics("1", started=0.0)
    assert not sys.observe(topic, payload)
    assert sys.values == {} and sys.process_values == {}


def test_every_process_counter_is_kept_for_the_metrics_but_only_ours_are_summed() -> None:
    sys = SysTopics("1", started=0.0)
    assert sys.observe("$SYS/broker/acceptor/0/protocol_errors", b"3")
    assert sys.observe("$SYS/broker/worker/0/packets_received", b"5")  # not a worker's total
    assert sys.values == {}
    assert sys.process_values == {
        ("acceptor", 0, "protocol_errors"): 3,
        ("worker", 0, "packets_received"): 5,
    }


def test_the_process_values_are_bounded() -> None:
    from flockmq.router import sys_topics

    sys = SysTopics("1", started=0.0)
    for i in range(sys_topics.MAX_PROCESS_VALUES + 10):
        sys.observe(f"$SYS/broker/acceptor/{i % 4000}/c{i // 4000}", b"1")
    assert len(sys.process_values) == sys_topics.MAX_PROCESS_VALUES
    assert sys.dropped == 10
