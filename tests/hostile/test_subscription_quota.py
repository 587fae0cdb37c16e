"""One client cannot grow its worker, the router's topic tree and the store
without bound by subscribing to ever more, or ever longer, filters: past
`max_subscriptions` / `max_subscription_bytes` a new filter gets SUBACK 0x97
Quota exceeded (0x80 before MQTT 5), and what it holds keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

from flockmq.frontend.codec import Connack, Connect, Publish, Suback, Subscribe, Subscription
from tests.e2e.broker import MakeBroker
from tests.e2e.clients import RawClient, unique

from .health import MB, assert_healthy, child_pids, rss

FILTER_BYTES = 60_000


@pytest.mark.parametrize(("level", "refused"), [(4, 0x80), (5, 0x97)])
def test_long_filters_past_the_session_quota_are_refused(
    make_broker: MakeBroker, tmp_path: Path, level: int, refused: int
) -> None:
    config = tmp_path / "quota.toml"
    config.write_text(f"max_subscription_bytes = {4 * FILTER_BYTES}\n")
    broker = make_broker("--config", str(config), acceptors=1, workers=1)
    pids = child_pids(broker)
    before = rss(broker)[("router", 0)]
    base = unique("quota")
    client = RawClient(broker.port, level)
    client.send(Connect(unique("greedy"), level, False, 60))  # persistent: stored too
    assert isinstance(client.recv(), Connack)
    codes: list[int] = []
    for i in range(200):  # 12 MB of filters asked for, 240 KB allowed
        topic_filter = f"{base}/{i}/" + "x" * FILTER_BYTES
        client.send(Subscribe(i + 1, (Subscription(topic_filter, 1),)))
        suback = client.recv()
        assert isinstance(suback, Suback) and suback.packet_id == i + 1
        codes.extend(suback.reason_codes)
    assert codes[:3] == [1, 1, 1]
    assert set(codes[4:]) == {refused}
    # What it holds still works.
    held = f"{base}/0/" + "x" * FILTER_BYTES
    client.send(Publish(held, b"mine", 0))
    got = client.recv()
    assert isinstance(got, Publish) and got.payload == b"mine"
    client.close()
    assert rss(broker)[("router", 0)] - before < 20 * MB
    assert_healthy(broker, pids)
