"""A session's queue is bounded by what its messages hold, not by their
payloads alone (issue 9 item 9): 1-byte payloads carrying 600 KB of user
properties each went through a 1 MiB `max_queued_bytes` (+180 MB)."""

from __future__ import annotations

from pathlib import Path

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.e2e.broker import MakeBroker
from tests.e2e.clients import Client, unique

from .health import MB, assert_healthy, child_pids, rss

BIG = 600_000  # bytes of user properties on a 1-byte payload
COUNT = 60


def test_user_properties_count_against_max_queued_bytes(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    config = tmp_path / "queue.toml"
    config.write_text(f"max_queued_bytes = {MB}\n")
    broker = make_broker("--config", str(config), workers=1)
    pids = child_pids(broker)
    before = rss(broker)[("worker", 0)]
    topic = unique("heavy")
    sub_id = unique("offline")
    sub = Client(broker.port, sub_id, protocol=5, clean=True, session_expiry=3600)
    sub.connect()
    sub.subscribe(topic, 1)
    sub.disconnect()  # offline: what is published now waits in its queue

    pub = Client(broker.port, protocol=5)
    pub.connect()
    heavy = Properties(PacketTypes.PUBLISH)
    heavy.UserProperty = [("k", "v" * (BIG // 10))] * 10  # a string holds at most 64 KB
    for _ in range(COUNT):
        pub.publish(topic, b"x", 1, properties=heavy)  # acknowledged: routed and queued
    grown = rss(broker)[("worker", 0)] - before
    pub.publish(topic, b"marker", 1)

    sub = Client(broker.port, sub_id, protocol=5, clean=False, session_expiry=3600)
    sub.connect()
    # Queued copies come in order, the marker last: count the heavy ones before it.
    heavy_delivered = 0
    while sub.expect(1)[0].payload != b"marker":
        heavy_delivered += 1
    sub.disconnect()
    pub.disconnect()
    # 1 MiB holds one message of 600 KB of properties, not 60 (36 MB).
    assert heavy_delivered == 1
    assert grown < 30 * MB, f"worker grew {grown / MB:.0f} MB"
    assert_healthy(broker, pids)
