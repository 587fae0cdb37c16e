"""The malformed-packet corpus as data: every packet type x every field and
flag violation x MQTT 3.1, 3.1.1 and 5.0, each with the exact answer the
specifications require (case.py says how the answers are derived; one module
per part of the protocol generates its cases)."""

from __future__ import annotations

from collections.abc import Iterator

from .case import Case, Corpus
from .connect_cases import connect_packet
from .header_cases import control_packets, fixed_header, packet_order
from .property_cases import connect_properties, properties, publish_properties, subscribe_properties
from .publish_cases import WORKER_PROBE_ID, acks, publish_packet
from .subscription_cases import subscriptions

__all__ = ["CASES", "GROUPS", "WORKER_PROBE_ID", "Case", "by_group"]


def generate() -> dict[str, Case]:
    c = Corpus()
    fixed_header(c)
    connect_packet(c)
    properties(c)
    connect_properties(c)
    publish_properties(c)
    subscribe_properties(c)
    publish_packet(c)
    acks(c)
    subscriptions(c)
    control_packets(c)
    packet_order(c)
    return c.cases


CASES = generate()
GROUPS = sorted({case.group for case in CASES.values()})


def by_group(group: str) -> Iterator[Case]:
    return (case for case in CASES.values() if case.group == group and case.xfail is None)
