"""The scenarios: which clients a run has, what each publishes or subscribes
to, and which process runs it.

A plan is plain data, built before any process starts: every publisher has a
global id and a message count, every subscriber a topic filter and the ids of
the publishers it must hear from; in `connect-rate`, each client only connects
(CONNECT, CONNACK 0, DISCONNECT) once, after "go". With credentials, clients
take the users in turn. Subscribers are spread over the processes
first so that they do not share a process with the publishers they measure
when there is a choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

SCENARIOS = ("fanin", "fanout", "pairs", "connections", "latency", "connect-rate")

# A process holds at most this many connections (the host caps a process at
# 20,000 descriptors; leave room for the event loop, pipes and libraries).
MAX_CONNECTIONS_PER_PROCESS = 15_000


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run is configured with (the command-line options)."""

    scenario: str
    host: str = "127.0.0.1"
    port: int = 1883
    qos: int = 0
    count: int = 10_000
    payload: int = 64
    inflight: int = 64
    rate: float = 0.0  # total messages/s over all publishers; 0: as fast as possible
    protocol: int = 4
    clean: bool = True
    publishers: int = 4
    subscribers: int = 10
    pairs: int = 10
    connections: int = 1_000
    hold: float = 10.0
    duration_limit: float = 60.0
    drain_timeout: float = 5.0
    processes: int = 0  # 0: decided from the scenario and the cores
    keepalive: int = 60
    connect_concurrency: int = 200
    run_id: str = ""
    cafile: str = ""  # non-empty: every client speaks TLS and trusts this CA
    credentials: tuple[tuple[str, str], ...] = ()  # (user, password), taken in turn
    # non-empty: subscribers connect to this host instead (another host of
    # a cluster, scripts/bench_cluster.py); the same port
    subscriber_host: str = ""


@dataclass(slots=True)
class ClientSpec:
    client_id: str
    publisher_id: int = -1  # >= 0: this client publishes
    topic: str = ""  # publish topic
    count: int = 0  # messages to publish
    rate: float = 0.0  # this publisher's messages/s; 0: unpaced
    topic_filter: str = ""  # non-empty: this client subscribes
    expects: tuple[int, ...] = ()  # publisher ids a subscriber must hear from
    source_ip: str = ""  # bind here before connecting (spreads ephemeral ports)
    credentials: tuple[str, str] | None = None  # (username, password) in its CONNECT
    host: str = ""  # non-empty: connect here, not to Settings.host


@dataclass(slots=True)
class Plan:
    settings: Settings
    publishers: list[ClientSpec] = field(default_factory=list)
    subscribers: list[ClientSpec] = field(default_factory=list)
    idle: list[ClientSpec] = field(default_factory=list)
    churn: list[ClientSpec] = field(default_factory=list)  # connect once, after "go"
    assignment: list[list[ClientSpec]] = field(default_factory=list)

    @property
    def publisher_counts(self) -> dict[int, int]:
        return {c.publisher_id: c.count for c in self.publishers}

    @property
    def expected_deliveries(self) -> int:
        counts = self.publisher_counts
        return sum(counts[p] for s in self.subscribers for p in s.expects)

    @property
    def total_messages(self) -> int:
        return sum(c.count for c in self.publishers)


def build_plan(settings: Settings, cpu_count: int) -> Plan:
    s = settings
    prefix = f"flock/{s.run_id}"
    plan = Plan(s)
    if s.scenario == "fanin":
        plan.publishers = _publishers(s, s.publishers, lambda i: f"{prefix}/fanin/{i}")
        plan.subscribers = [
            ClientSpec(
                f"lg-{s.run_id}-s0",
                topic_filter=f"{prefix}/fanin/+",
                expects=tuple(range(s.publishers)),
            )
        ]
    elif s.scenario in ("fanout", "latency"):
        n = s.subscribers if s.scenario == "fanout" else 1
        plan.publishers = _publishers(s, 1, lambda i: f"{prefix}/fanout")
        plan.subscribers = [
            ClientSpec(f"lg-{s.run_id}-s{i}", topic_filter=f"{prefix}/fanout", expects=(0,))
            for i in range(n)
        ]
    elif s.scenario == "pairs":
        plan.publishers = _publishers(s, s.pairs, lambda i: f"{prefix}/pair/{i}")
        plan.subscribers = [
            ClientSpec(f"lg-{s.run_id}-s{i}", topic_filter=f"{prefix}/pair/{i}", expects=(i,))
            for i in range(s.pairs)
        ]
    elif s.scenario == "connections":
        plan.idle = [
            ClientSpec(f"lg-{s.run_id}-c{i}", source_ip=_source_ip(s.host, i))
            for i in range(s.connections)
        ]
    elif s.scenario == "connect-rate":
        # The first 10,000 need no bind (the default source address); the
        # bind and its system calls would be most of the client's cost.
        plan.churn = [
            ClientSpec(
                f"lg-{s.run_id}-n{i}", source_ip=_source_ip(s.host, i) if i >= 10_000 else ""
            )
            for i in range(s.connections)
        ]
    else:
        raise ValueError(f"unknown scenario {s.scenario!r}")
    if s.subscriber_host:
        for client in plan.subscribers:
            client.host = s.subscriber_host
    if s.credentials:
        clients = [*plan.subscribers, *plan.publishers, *plan.idle, *plan.churn]
        for i, client in enumerate(clients):
            client.credentials = s.credentials[i % len(s.credentials)]
    _assign(plan, cpu_count)
    return plan


def _publishers(s: Settings, n: int, topic: Callable[[int], str]) -> list[ClientSpec]:
    count = max(1, s.count // n) if s.scenario != "fanout" else s.count
    rate = s.rate / n if s.rate else 0.0
    return [
        ClientSpec(f"lg-{s.run_id}-p{i}", publisher_id=i, topic=topic(i), count=count, rate=rate)
        for i in range(n)
    ]


def _source_ip(host: str, index: int) -> str:
    """Spread idle connections over 127.0.0.1-127.0.0.N, 10,000 per address,
    so that 40,000 connections to one port do not run out of the ~28,000
    ephemeral ports of one source address."""
    if not host.startswith("127."):
        return ""
    return f"127.0.0.{1 + index // 10_000}"


def _churn_source_ip(host: str, index: int) -> str:
    return _source_ip(host, index) if index >= 10_000 else ""


def process_count(plan: Plan, cpu_count: int) -> int:
    s = plan.settings
    clients = len(plan.publishers) + len(plan.subscribers) + len(plan.idle) + len(plan.churn)
    needed = math.ceil(clients / MAX_CONNECTIONS_PER_PROCESS)
    if s.processes:
        if s.processes < needed:
            raise ValueError(
                f"{clients} connections need at least {needed} processes "
                f"({MAX_CONNECTIONS_PER_PROCESS} per process)"
            )
        return min(s.processes, max(clients, 1))
    return max(needed, min(cpu_count, max(clients, 1)))


def _assign(plan: Plan, cpu_count: int) -> None:
    """Round-robin subscribers, then publishers, then idle and connect-only
    clients over the processes, continuing where the previous role stopped."""
    n = process_count(plan, cpu_count)
    plan.assignment = [[] for _ in range(n)]
    for i, client in enumerate([*plan.subscribers, *plan.publishers, *plan.idle, *plan.churn]):
        plan.assignment[i % n].append(client)
