"""flockmq/app/heartbeats.py over real ZeroMQ sockets on 127.0.0.1-3 (three
addresses of the loopback: a cluster's nodes have addresses of their own),
with a fake clock for the membership's timing: nodes hear each other, a
node whose sockets are gone is declared dead after the timeout, a restarted
node at the same address rejoins with its new incarnation, and garbage on
the wire is counted and ignored."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from flockmq.app.heartbeats import Heartbeats
from flockmq.app.probe import free_port
from flockmq.cluster import Node
from flockmq.envelopes import Heartbeat, Kind
from flockmq.membership import Change, ChangeKind, Membership

INTERVAL, TIMEOUT = 1.0, 5.0
NAMES = ("a", "b", "c")
WAIT = 20.0  # real seconds an expected heartbeat may take (a loaded machine)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def node_with_free_heartbeat_port(name: str, address: str) -> Node:
    """A node whose heartbeat port (the one past its bus ports) is free now."""
    node = Node(name, address, port=1, bus_port=1)
    return dataclasses.replace(node, bus_port=free_port(address) - len(node.bus_ports))


@pytest.fixture
def nodes() -> dict[str, Node]:
    found = {}
    for i, name in enumerate(NAMES):
        address = f"127.0.0.{i + 1}"
        found[name] = node_with_free_heartbeat_port(name, address)
    return found


@pytest.fixture
def made() -> Iterator[list[Heartbeats]]:
    links: list[Heartbeats] = []
    yield links
    for link in links:
        link.close()


def start(
    nodes: dict[str, Node], me: str, incarnation: int, clock: Clock, made: list[Heartbeats]
) -> Heartbeats:
    membership = Membership(me, NAMES, INTERVAL, TIMEOUT, clock())
    peers = {n: node.heartbeat_endpoint() for n, node in nodes.items() if n != me}
    link = Heartbeats(
        membership,
        incarnation,
        f"broker-{me}{incarnation}",
        nodes[me].heartbeat_endpoint(),
        peers,
        clock,
    )
    made.append(link)
    return link


def poll_until(
    links: list[Heartbeats], clock: Clock, done: Any, step: float = 0.0
) -> list[tuple[str, Change]]:
    """Poll every link (the fake clock moved by `step` each round) until
    `done(changes)`; every change seen, with who saw it."""
    seen: list[tuple[str, Change]] = []
    deadline = time.monotonic() + WAIT
    while not done(seen):
        assert time.monotonic() < deadline, f"timed out; changes seen: {seen}"
        clock.now += step
        for link in links:
            seen.extend((link.membership.me, c) for c in link.poll())
        links[0].wait(0.01)
    return seen


def test_nodes_hear_each_other_and_a_silent_one_dies_then_rejoins_restarted(
    nodes: dict[str, Node], made: list[Heartbeats]
) -> None:
    clock = Clock()
    a, b, c = (start(nodes, n, 1, clock, made) for n in NAMES)
    links = [a, b, c]
    # every node hears the two others' first incarnation (the clock moves by
    # a tenth of an interval: heartbeats go every ten rounds)

    def all_heard(_: object) -> bool:
        return all(
            link.membership.incarnation(other) == 1
            for link in links
            for other in NAMES
            if other != link.membership.me
        )

    assert poll_until(links, clock, all_heard, step=INTERVAL / 10) == []  # presumed live: no change
    assert a.live == b.live == c.live == set(NAMES)

    c.close()  # c dies: its sockets are gone, nothing more comes from it
    made.remove(c)
    start_dead = clock.now
    seen = poll_until([a, b], clock, lambda s: len(s) >= 2, step=INTERVAL / 10)
    assert sorted(seen) == [
        ("a", Change(ChangeKind.LEFT, "c", 1, "broker-c1")),
        ("b", Change(ChangeKind.LEFT, "c", 1, "broker-c1")),
    ]
    assert (
        clock.now - start_dead >= TIMEOUT - INTERVAL - 0.01
    )  # not before its silence was the timeout
    assert a.live == b.live == {"a", "b"}

    c2 = start(nodes, "c", 2, clock, made)  # restarted at the same address
    seen = poll_until([a, b, c2], clock, lambda s: len(s) >= 2, step=INTERVAL / 10)
    assert sorted(seen) == [
        ("a", Change(ChangeKind.JOINED, "c", 2, "broker-c2")),
        ("b", Change(ChangeKind.JOINED, "c", 2, "broker-c2")),
    ]
    assert a.live == b.live == c2.live == set(NAMES)
    assert a.sent > 0 and a.received > 0 and a.malformed == 0


def test_garbage_and_strangers_are_counted_and_change_nothing(
    nodes: dict[str, Node], made: list[Heartbeats]
) -> None:
    clock = Clock()
    a = start(nodes, "a", 1, clock, made)
    rogue: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.PUB)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.bind(nodes["b"].heartbeat_endpoint())  # where a expects b
    try:
        packed = msgpack.packb
        frames = [
            b"\xc1not msgpack",
            packed([Kind.HEARTBEAT, "b", -5, "x"]),
            packed({"node": "b"}),
            packed([Kind.HEARTBEAT, "zz", 1, "x"]),  # well-formed, from no node of the cluster
            packed([Kind.HEARTBEAT, "b", 1, "x" * 2000]),  # over MAX_MESSAGE
        ]
        deadline = time.monotonic() + WAIT
        while a.malformed < 4 or a.membership.unknown < 1:
            assert time.monotonic() < deadline, (a.malformed, a.membership.unknown)
            for frame in frames:
                rogue.send(frame)
            a.poll()
            a.wait(0.05)
        assert a.membership.incarnation("b") == -1  # nothing from "b" was believed
        # then a real heartbeat from b's endpoint still gets through
        good = packed(Heartbeat(Kind.HEARTBEAT, "b", 9, "broker-b9"))
        while a.membership.incarnation("b") != 9:
            assert time.monotonic() < deadline, "b's heartbeat never arrived"
            rogue.send(good)
            a.poll()
            a.wait(0.05)
    finally:
        rogue.close(0)
