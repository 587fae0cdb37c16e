"""What an acceptor's clients sent and were sent, for the broker-wide `$SYS`
topics Mosquitto publishes (router/sys_topics.py): bytes, MQTT packets and
PUBLISH packets, each way. Plain integers bumped on the paths that already
handle each read, packet and write; published with the counters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Traffic:
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0  # writes to a client: one packet each, but a CONNACK's early writes
    publishes_in: int = 0
    publishes_out: int = 0

    def as_counters(self) -> dict[str, int]:
        return {
            "bytes_received": self.bytes_in,
            "bytes_sent": self.bytes_out,
            "packets_received": self.packets_in,
            "packets_sent": self.packets_out,
            "publishes_received": self.publishes_in,
            "publishes_sent": self.publishes_out,
        }
