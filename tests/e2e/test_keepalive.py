"""Keepalive end to end: PINGREQ/PINGRESP, a client that keeps talking stays
connected, a silent one is closed after 1.5 x keepalive [MQTT-3.1.2-24], and
keepalive 0 turns the mechanism off."""

from __future__ import annotations

import time

import pytest

from flockmq.frontend.codec import Pingreq, Pingresp, Suback, Subscribe, Subscription

from .broker import Broker
from .clients import RawClient, unique
from .test_connect import raw_connect


@pytest.mark.parametrize("level", [3, 4])
def test_pingreq_gets_pingresp(broker: Broker, level: int) -> None:
    raw, _ = raw_connect(broker.port, unique("ping")[:23], keepalive=60, level=level)
    for _ in range(3):
        raw.send(Pingreq())
        assert raw.recv() == Pingresp()
    raw.close()


def test_client_that_keeps_pinging_stays_connected(broker: Broker) -> None:
    keepalive = 1
    raw, _ = raw_connect(broker.port, unique("alive"), keepalive=keepalive)
    started = time.monotonic()
    while time.monotonic() - started < 2.5 * keepalive:  # well past 1.5 x keepalive
        raw.send(Pingreq())
        assert raw.recv() == Pingresp()  # None here would mean the broker closed it
        time.sleep(0.25)
    raw.send(Subscribe(1, (Subscription(unique("alive"), 0),)))
    assert raw.recv() == Suback(1, (0,))
    raw.close()


def test_silent_client_is_closed_after_one_and_a_half_keepalives(broker: Broker) -> None:
    keepalive = 1
    silent = RawClient(broker.port, 4)
    no_keepalive = RawClient(broker.port, 4)
    raw_connect(broker.port, unique("off"), keepalive=0, raw=no_keepalive)
    sent_at = time.monotonic()  # the broker hears nothing from `silent` after its CONNECT
    raw_connect(broker.port, unique("silent"), keepalive=keepalive, raw=silent)
    assert silent.expect_closed(timeout=20) == []  # 3.1.1: closed, no packet
    assert time.monotonic() - sent_at >= keepalive
    # Keepalive 0: never closed for silence, though it was as silent for as long.
    no_keepalive.send(Pingreq())
    assert no_keepalive.recv() == Pingresp()
    no_keepalive.close()
