"""Mosquitto's $SYS/broker topics (issue 13), for the whole broker across its
processes, read by a real client as a Mosquitto dashboard would."""

from __future__ import annotations

import queue
import re

import paho.mqtt.client as mqtt

from .broker import MakeBroker
from .clients import Client, unique, wait_for


class SysWatcher:
    """The latest value of every $SYS/broker topic a subscriber has seen."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.latest: dict[str, bytes] = {}
        client.connect()
        assert client.subscribe("$SYS/broker/#", 0)[0] == 0

    def value(self, topic: str) -> bytes | None:
        try:
            while True:
                msg: mqtt.MQTTMessage = self.client.messages.get_nowait()
                self.latest[msg.topic] = bytes(msg.payload)
        except queue.Empty:
            pass
        return self.latest.get(f"$SYS/broker/{topic}")

    def wait_for(self, topic: str, expected: bytes) -> None:
        wait_for(lambda: self.value(topic) == expected, 30, f"{topic} = {expected!r}")


def test_clients_connected_counts_every_acceptors_clients(make_broker: MakeBroker) -> None:
    broker = make_broker(acceptors=2)
    watcher = SysWatcher(Client(broker.port))
    clients = [Client(broker.port) for _ in range(5)]
    for c in clients:
        c.connect()
    # 5 clients and the watcher, spread by the kernel over both acceptors
    watcher.wait_for("clients/connected", b"6")
    per_acceptor = [watcher.value(f"acceptor/{i}/clients_connected") for i in (0, 1)]
    assert sum(int(v or 0) for v in per_acceptor) == 6
    for c in clients[:2]:
        c.disconnect()
    watcher.wait_for("clients/connected", b"4")
    assert watcher.value("clients/maximum") == b"6"
    for c in clients[2:]:
        c.disconnect()
    watcher.client.disconnect()


def test_mosquittos_topics_are_there_with_their_meanings(make_broker: MakeBroker) -> None:
    broker = make_broker(acceptors=2)
    watcher = SysWatcher(Client(broker.port))
    topic = unique("sys")
    persistent = Client(broker.port, unique("offline"), clean=False)
    persistent.connect()
    persistent.subscribe(topic, 1)
    persistent.disconnect()  # a persistent session without a connection
    pub = Client(broker.port)
    pub.connect()
    pub.publish(topic, b"kept", 1, retain=True)
    pub.publish(topic, b"queued", 1)
    watcher.wait_for("clients/disconnected", b"1")
    watcher.wait_for("retained messages/count", b"1")
    wait_for(lambda: int(watcher.value("store/messages/count") or 0) >= 1, 30, "queued message")
    wait_for(lambda: int(watcher.value("subscriptions/count") or 0) >= 2, 30, "subscriptions")
    wait_for(lambda: int(watcher.value("publish/messages/received") or 0) >= 2, 30, "publishes in")
    wait_for(lambda: int(watcher.value("bytes/received") or 0) > 0, 30, "bytes in")
    wait_for(lambda: watcher.value("load/messages/received/1min") is not None, 30, "load")
    version = watcher.value("version")
    assert version is not None and version.startswith(b"flockmq version ")
    uptime = watcher.value("uptime")
    assert uptime is not None and re.fullmatch(rb"\d+ seconds", uptime)
    clients_total = int(watcher.value("clients/total") or 0)
    assert clients_total == int(watcher.value("clients/connected") or 0) + 1
    pub.disconnect()
    watcher.client.disconnect()
