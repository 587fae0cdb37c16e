"""An MQTT-aware TCP proxy that can misbehave once, for the load generators'
tests (test_loadtest.py, test_loadtest_native.py).

It forwards both ways and can, once, toward the subscriber, drop a PUBLISH
(answering the broker's QoS flow itself, so the broker sees it acknowledged)
or deliver a PUBLISH twice (the copy under a packet id the broker does not
use, whose acknowledgements the proxy swallows). Runs in its own thread and
event loop; a context manager.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 3, 4, 5, 6, 7
FAKE_PACKET_ID = 65_000  # the broker numbers from 1 up; these runs stay far below
FAULTY_PUBLISH = 10  # the fault hits the 10th PUBLISH sent toward a subscriber


def ack(kind: int, packet_id: int) -> bytes:
    flags = 0x02 if kind == PUBREL else 0x00
    return bytes(((kind << 4) | flags, 2)) + packet_id.to_bytes(2, "big")


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet, fixed header included [MQTT-2.2]."""
    head = await reader.readexactly(1)
    length = shift = 0
    lead = b""
    while True:
        byte = (await reader.readexactly(1))[0]
        lead += bytes((byte,))
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return head + lead + await reader.readexactly(length)


async def packets(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Whole packets until the peer closes."""
    while True:
        try:
            yield await read_packet(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return


def publish_fields(packet: bytes) -> tuple[int, int, int]:
    """(QoS, offset of the packet id, packet id) of a PUBLISH packet."""
    qos = (packet[0] >> 1) & 3
    pos = 1
    while packet[pos] & 0x80:
        pos += 1
    pos += 1
    topic_len = int.from_bytes(packet[pos : pos + 2], "big")
    pid_at = pos + 2 + topic_len
    pid = int.from_bytes(packet[pid_at : pid_at + 2], "big") if qos else 0
    return qos, pid_at, pid


@dataclass
class Link:
    """One proxied client connection: what the proxy owes each side."""

    to_client: asyncio.StreamWriter
    to_broker: asyncio.StreamWriter
    swallow_up: set[tuple[int, int]] = field(default_factory=set)  # client -> broker
    swallow_down: set[tuple[int, int]] = field(default_factory=set)  # broker -> client


class MqttProxy:
    """A TCP proxy on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, host: str, port: int, fault: str | None) -> None:
        assert fault in (None, "drop", "dup")
        self.upstream = (host, port)
        self.fault = fault
        self.publishes_down = 0
        self.fault_applied = False
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    def __enter__(self) -> MqttProxy:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self.listen(), self.loop)
        self.port = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def listen(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(*self.upstream)
        link = Link(client_w, broker_w)
        tasks = [
            asyncio.create_task(self.pump_up(client_r, link)),
            asyncio.create_task(self.pump_down(broker_r, link)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_w, broker_w):
            writer.close()

    async def pump_up(self, reader: asyncio.StreamReader, link: Link) -> None:
        async for packet in packets(reader):
            kind = packet[0] >> 4
            if kind in (PUBACK, PUBREC, PUBCOMP) and len(packet) >= 4:
                key = (kind, int.from_bytes(packet[2:4], "big"))
                if key in link.swallow_up:
                    link.swallow_up.discard(key)
                    if kind == PUBREC:  # our fake QoS 2 copy: finish its flow
                        link.swallow_up.add((PUBCOMP, key[1]))
                        link.to_client.write(ack(PUBREL, key[1]))
                    continue
            link.to_broker.write(packet)

    async def pump_down(self, reader: asyncio.StreamReader, link: Link) -> None:
        async for packet in packets(reader):
            kind = packet[0] >> 4
            if kind == PUBREL:
                key = (PUBREL, int.from_bytes(packet[2:4], "big"))
                if key in link.swallow_down:  # the dropped message's PUBREL
                    link.swallow_down.discard(key)
                    link.to_broker.write(ack(PUBCOMP, key[1]))
                    continue
            if kind == PUBLISH:
                self.publishes_down += 1
                if self.fault and self.publishes_down == FAULTY_PUBLISH:
                    self.fault_applied = True
                    self.misbehave(packet, link)
                    continue
            link.to_client.write(packet)

    def misbehave(self, packet: bytes, link: Link) -> None:
        qos, pid_at, pid = publish_fields(packet)
        if self.fault == "drop":
            # The subscriber never sees it; the broker sees it acknowledged.
            if qos == 1:
                link.to_broker.write(ack(PUBACK, pid))
            elif qos == 2:
                link.to_broker.write(ack(PUBREC, pid))
                link.swallow_down.add((PUBREL, pid))
            return
        link.to_client.write(packet)
        copy = bytearray(packet)
        if qos:
            copy[pid_at : pid_at + 2] = FAKE_PACKET_ID.to_bytes(2, "big")
            link.swallow_up.add((PUBACK if qos == 1 else PUBREC, FAKE_PACKET_ID))
        link.to_client.write(bytes(copy))
