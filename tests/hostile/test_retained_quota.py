"""The retained store is bounded (`max_retained_messages`,
`max_retained_bytes`): a client retaining messages on ever new topics cannot
grow the router and the store without bound; past the bound its messages are
still delivered to the subscribers of the moment, not retained."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.broker import MakeBroker
from tests.e2e.clients import Client, unique

from .health import assert_healthy, child_pids


def test_retained_messages_past_the_bound_are_delivered_not_retained(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    config = tmp_path / "retained.toml"
    config.write_text("max_retained_messages = 5\n")
    broker = make_broker("--config", str(config))
    pids = child_pids(broker)
    base = unique("ret")
    live = Client(broker.port)
    live.connect()
    live.subscribe(f"{base}/#", 1)
    pub = Client(broker.port)
    pub.connect()
    for i in range(12):
        pub.publish(f"{base}/{i}", b"%d" % i, 1, retain=True)
    assert sorted(int(m.payload) for m in live.expect(12)) == list(range(12))
    late = Client(broker.port)
    late.connect()
    late.subscribe(f"{base}/#", 1)
    # The first five were retained; the SUBACK came before them, and a
    # message published now comes after them on the same path.
    pub.publish(f"{base}/marker", b"marker", 1)
    got = []
    while (m := late.expect(1)[0]).payload != b"marker":
        got.append(m)
    assert sorted(int(m.payload) for m in got) == [0, 1, 2, 3, 4]
    assert all(m.retain for m in got)
    for c in (live, pub, late):
        c.disconnect()
    assert_healthy(broker, pids)
