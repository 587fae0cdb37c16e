"""Several routers (`--routers 2`, issue 14's first step) on the real broker:
two acceptors, so acceptor 0's publishes are matched by router 0 and
acceptor 1's by router 1 (Config.router_of). The kernel puts each connection
on an acceptor of its choice (SO_REUSEPORT): the tests ask the broker which
acceptor holds each client (`Broker.acceptor_holding`) and connect more until
both routers are used.

Asserted: every delivery exactly once whichever router matched it, a shared
subscription's group gets each message once, a retained message (and its
delete) published through one router is what a later subscriber through the
other gets, concurrent retained updates of one topic through both routers end
the same on both, `flockmq status` shows both routers, and kill -9 of one
router under QoS 1 load loses no acknowledged message and the restarted
router serves subscriptions again."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flockmq.app.probe import free_port

from .broker import FLOCKMQ, Broker, MakeBroker
from .clients import Client, unique, wait_for
from .load import WAIT, WINDOW, Peer, Publisher, Subscriber, check_delivery
from .test_metrics import scrape

ROUTERS = ["--routers", "2"]
MAX_CLIENTS = 40  # connections tried before giving up on the kernel using both acceptors


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("routers"), extra_args=["--sys-interval", "0.5", *ROUTERS])
    b.start()
    yield b
    b.stop()


def acceptor_of(broker: Broker, client: Client | Peer) -> int:
    sock = client.tcp_socket() if isinstance(client, Client) else client.paho.socket()
    assert isinstance(sock, socket.socket), sock
    return broker.acceptor_holding(sock.getsockname()[1])


def clients_on_both(broker: Broker, per: int, prefix: str, **options: Any) -> list[list[Client]]:
    """Connected clients, at least `per` on each acceptor (so each router):
    [on acceptor 0, on acceptor 1]. Extra connections are closed."""
    on: list[list[Client]] = [[], []]
    for _ in range(MAX_CLIENTS):
        if all(len(group) >= per for group in on):
            return on
        c = Client(broker.port, unique(prefix), **options)
        c.connect()
        group = on[acceptor_of(broker, c)]
        if len(group) < per:
            group.append(c)
        else:
            c.disconnect()
    pytest.fail(f"the kernel put {MAX_CLIENTS} connections on one acceptor")


def drain(client: Client, within: float = 0.5) -> list[bytes]:
    """What else arrives within `within` seconds (nothing, if all is well)."""
    extra = []
    with contextlib.suppress(queue.Empty):
        while True:
            extra.append(bytes(client.messages.get(timeout=within).payload))
    return extra


def each_gets_every_publish_once(everyone: list[Client], topic: str) -> None:
    """Every client subscribes to `topic` and publishes its id there; each
    gets every id exactly once, whichever router matched each publish."""
    for c in everyone:
        c.subscribe(topic, 1)
    for c in everyone:
        c.publish(topic, c.client_id.encode(), 1)
    expected = sorted(c.client_id.encode() for c in everyone)
    for c in everyone:
        got = sorted(bytes(m.payload) for m in c.expect(len(everyone)))
        assert got == expected, c.client_id
        assert drain(c) == [], f"{c.client_id} got a copy twice"
    for c in everyone:
        c.disconnect()


def test_the_supervisor_runs_and_status_shows_both_routers(broker: Broker) -> None:
    pids = {broker.pid_of("router", i) for i in (0, 1)}
    assert len(pids) == 2
    done = subprocess.run(
        [FLOCKMQ, "status", "--data-dir", str(broker.data_dir), "--interval", "0.3", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = {(p["role"], p["index"]): p for p in json.loads(done.stdout)["processes"]}
    assert {found[("router", i)]["pid"] for i in (0, 1)} == pids
    assert all(found[("router", i)]["answered"] for i in (0, 1))


def test_prometheus_shows_every_process_of_both_routers(make_broker: MakeBroker) -> None:
    """Router 0 serves the metrics; router 1's counters reach it as $SYS
    retained updates of router 1 (shared between the routers), and the
    broker-wide retained count is one router's, not the sum."""
    metrics_port = free_port()
    broker = make_broker("--metrics-port", str(metrics_port), *ROUTERS)
    wait_for(lambda: "metrics and dashboard on" in broker.log(), 30, "the metrics port")
    expected = {("router", "0"), ("router", "1"), ("worker", "0"), ("worker", "1")}
    expected |= {("acceptor", "0"), ("acceptor", "1")}
    wait_for(
        lambda: (
            set(scrape(metrics_port).get("flockmq_process_resident_memory_bytes", {})) == expected
        ),
        30,
        "every process's memory, both routers'",
    )
    (p0,), (p1,) = clients_on_both(broker, 1, "m")
    topic = unique("m")
    p0.publish(topic, b"r", 1, retain=True)
    wait_for(
        lambda: (
            scrape(metrics_port).get("flockmq_retained_messages", {})
            == {("router", "0"): 1.0, ("router", "1"): 1.0}
        ),
        30,
        "both routers holding the retained message",
    )
    p0.publish(topic, b"", 1, retain=True)
    for c in (p0, p1):
        c.disconnect()


def test_every_subscriber_gets_every_publish_once_whichever_router_matched_it(
    broker: Broker,
) -> None:
    topic = unique("both")
    groups = clients_on_both(broker, 2, "b")
    each_gets_every_publish_once([c for group in groups for c in group], topic)


def test_a_shared_subscription_group_gets_each_message_once(broker: Broker) -> None:
    """Each message is matched by one router (the one it arrived at), which
    picks one member of the group: never two copies, whichever routers the
    publishers and the members are on."""
    topic = unique("shared")
    (m0, p0), (m1, p1) = clients_on_both(broker, 2, "s", protocol=5)
    for member in (m0, m1):
        member.subscribe(f"$share/g/{topic}", 1)
    count = 20
    for i in range(count):
        p0.publish(topic, f"r0-{i}".encode(), 1)
        p1.publish(topic, f"r1-{i}".encode(), 1)
    expected = {f"r{r}-{i}".encode() for r in (0, 1) for i in range(count)}
    got: list[bytes] = []

    def all_arrived() -> bool:
        got.extend(drain(m0, 0.05) + drain(m1, 0.05))
        return set(got) == expected

    wait_for(all_arrived, WAIT, "every message to the group")
    got.extend(drain(m0) + drain(m1))
    assert sorted(got) == sorted(expected), "a message reached the group twice"
    for c in (m0, p0, m1, p1):
        c.disconnect()


def retained_via(broker: Broker, acceptor: int, topic: str) -> bytes | None:
    """The retained message a new subscriber on `acceptor` gets for `topic`
    (None: none within half a second)."""
    (sub,) = clients_on_both(broker, 1, "look")[acceptor][:1]
    try:
        sub.subscribe(topic, 1)
        with contextlib.suppress(queue.Empty):
            msg = sub.messages.get(timeout=0.5)
            assert msg.retain
            return bytes(msg.payload)
        return None
    finally:
        sub.disconnect()


def test_retained_through_one_router_is_what_a_later_subscriber_on_the_other_gets(
    broker: Broker,
) -> None:
    topic = unique("ret")
    (p0,), (p1,) = clients_on_both(broker, 1, "rp")
    p0.publish(topic, b"from-0", 1, retain=True)
    assert retained_via(broker, 1, topic) == b"from-0"
    p1.publish(topic, b"from-1", 1, retain=True)
    assert retained_via(broker, 0, topic) == b"from-1"
    p1.publish(topic, b"", 1, retain=True)  # deleted through router 1
    assert retained_via(broker, 0, topic) is None
    assert retained_via(broker, 1, topic) is None
    for c in (p0, p1):
        c.disconnect()


def test_concurrent_retained_updates_through_both_routers_end_the_same_on_both(
    broker: Broker,
) -> None:
    """Last writer wins by (stamp, router): whatever order each router gets
    the other's updates in, both hold the same message in the end."""
    topic = unique("race")
    (p0,), (p1,) = clients_on_both(broker, 1, "rr")
    for i in range(50):
        p0.publish(topic, f"0-{i}".encode(), 1, retain=True)
        p1.publish(topic, f"1-{i}".encode(), 1, retain=True)
    last = {b"0-49", b"1-49"}
    seen: list[tuple[bytes | None, bytes | None]] = []

    def agree() -> bool:
        seen.append((retained_via(broker, 0, topic), retained_via(broker, 1, topic)))
        return seen[-1][0] == seen[-1][1] and seen[-1][0] in last

    wait_for(agree, WAIT, f"both routers holding one of {last}: {seen[-3:]}")
    p0.publish(topic, b"", 1, retain=True)
    for c in (p0, p1):
        c.disconnect()


def test_no_acknowledged_message_is_lost_when_one_router_is_killed(tmp_path: Path) -> None:
    config = tmp_path / "flockmq.toml"
    config.write_text("publish_confirm_timeout = 2.0\nrouters = 2\n")
    broker = Broker(tmp_path / "b", extra_args=["--config", str(config)]).start()
    try:
        check_router_kill(broker)
    finally:
        broker.stop()


def peers_on_both(broker: Broker, make: Any) -> list[Any]:
    """A started Peer on acceptor 0, then one on acceptor 1."""
    found: list[Any] = [None, None]
    for _ in range(MAX_CLIENTS):
        peer = make()
        peer.start()
        index = acceptor_of(broker, peer)
        if found[index] is None:
            found[index] = peer
            if all(found):
                return found
        else:
            peer.stop()
    pytest.fail(f"the kernel put {MAX_CLIENTS} connections on one acceptor")


def check_router_kill(broker: Broker) -> None:
    port = broker.port
    base = unique("rk")
    subs: list[Subscriber] = peers_on_both(broker, lambda: Subscriber(port, unique("rks")))
    for sub in subs:
        sub.subscribe(f"{base}/#", 1)
    count = 300
    pubs: list[Publisher] = []
    for shard, pub in enumerate(
        peers_on_both(broker, lambda: Publisher(port, unique("rkp"), f"{base}/x", 1, count, 200.0))
    ):
        pub.topic = f"{base}/{shard}"
        pubs.append(pub)
    for pub in pubs:
        pub.begin()
    wait_for(lambda: sum(len(p.acked()) for p in pubs) >= count // 2, WAIT, "half the load acked")
    # Router 1 matches the publishes of acceptor 1's publisher: stop it until
    # that one has a full window unacknowledged, then kill it.
    old = broker.pid_of("router", 1)
    os.kill(old, signal.SIGSTOP)
    try:
        wait_for(lambda: pubs[1].unacked() >= WINDOW, WAIT, "a full window behind router 1")
    finally:
        os.kill(old, signal.SIGKILL)
    broker.wait_restarted("router", 1, old)
    for pub in pubs:
        pub.mark_in_flight()
    wait_for(lambda: all(p.all_acked() for p in pubs), WAIT, "every publish acked")
    marker = f"marker-{base}".encode()
    pubs[1].paho.publish(f"{base}/marker", marker, 1).wait_for_publish(WAIT)
    wait_for(lambda: all(marker in s.distinct() for s in subs), WAIT, "the marker")
    for sub in subs:
        check_delivery(sub, pubs, 1)
    # The restarted router serves subscriptions again: a new one through
    # each router gets publishes matched by each router.
    topic = unique("after")
    groups = clients_on_both(broker, 1, "ak")
    each_gets_every_publish_once([c for group in groups for c in group], topic)
    for peer in [*pubs, *subs]:
        peer.stop()


def test_a_will_and_the_sys_topics_reach_subscribers_on_either_router(broker: Broker) -> None:
    """A will is routed by its session's worker through one router: one copy
    to each subscriber. Every router's $SYS counters are retained on every
    router: a new subscriber through either router gets both routers'."""
    topic = unique("will")
    subs = [group[0] for group in clients_on_both(broker, 1, "ws")]
    for s in subs:
        s.subscribe(topic, 1)
    for acceptor in (0, 1):
        found = clients_on_both(broker, 1, "w", will=(topic, f"gone-{acceptor}".encode(), 1, False))
        for group in found:
            if group[0] is not found[acceptor][0]:
                group[0].disconnect()
        found[acceptor][0].drop()
    for s in subs:
        got = sorted(bytes(m.payload) for m in s.expect(2))
        assert got == [b"gone-0", b"gone-1"]
        assert drain(s) == []
    wanted = {f"$SYS/broker/router/{i}/retained_messages" for i in (0, 1)}
    for s in subs:
        s.subscribe("$SYS/broker/router/+/retained_messages", 0)
        seen: set[str] = set()

        def both(s: Client = s, seen: set[str] = seen) -> bool:
            with contextlib.suppress(queue.Empty):
                seen.add(s.messages.get(timeout=0.1).topic)
            return seen >= wanted

        wait_for(both, WAIT, "both routers' counters")
        s.disconnect()
