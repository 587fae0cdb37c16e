"""Runs corpus cases against a live broker, many at once on one asyncio loop,
and says for each whether the broker answered as the case expects.

A case's connection: its setup (a valid CONNECT, a subscription and a message
in flight when it needs them), then its bytes and a probe behind them (see
`Case`), then reading until the broker closes or answers the probe. Answers
are decoded with flockmq's codec and described as (packet name, reason code).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterable
from typing import TypeVar, cast

from flockmq.frontend.codec import (
    Connack,
    Packet,
    ProtocolError,
    Publish,
    Pubrel,
    StreamDecoder,
    Suback,
)

from .cases import WORKER_PROBE_ID, Case
from .wire import PINGREQ, ack, connect, publish, subscribe, u16, will_fields

TIMEOUT = 5.0  # per step; only a case the broker gets wrong waits this long
CONCURRENCY = 48

Answer = tuple[str, int]
_run_id = uuid.uuid4().hex[:6]
_counter = itertools.count()
P = TypeVar("P", bound=Packet)


def describe(packet: Packet) -> Answer:
    code = getattr(packet, "reason_code", 0)
    return type(packet).__name__.lower(), code


class Conversation:
    """One client connection of a case: bytes out, decoded packets in."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, level: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = StreamDecoder(protocol_level=level)
        self.closed = False

    async def next(self, deadline: float) -> Packet | None:
        """The next packet, None when the broker closed; TimeoutError past the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            packet = self.decoder.next_packet()
            if packet is not None:
                return packet
            if self.closed:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.closed = True
            else:
                self.decoder.feed(data)

    async def expect(self, kind: type[P], deadline: float, packet_id: int | None = None) -> P:
        """Read until a packet of `kind` (and packet id); the others are skipped."""
        while True:
            packet = await self.next(deadline)
            if packet is None:
                raise ConnectionError(f"closed while waiting for {kind.__name__.lower()}")
            if isinstance(packet, kind) and (
                packet_id is None or getattr(packet, "packet_id", None) == packet_id
            ):
                return packet

    def send(self, data: bytes) -> None:
        self.writer.write(data)


async def _setup(conv: Conversation, case: Case, deadline: float) -> bytes:
    """Bring the connection to the case's starting point; return its bytes
    (with the packet id of the message in flight filled in)."""
    level = case.level
    client_id = f"corpus-{_run_id}-{next(_counter)}"
    conv.send(connect(level, client_id))
    connack = await conv.expect(Connack, deadline)
    if connack.reason_code:
        raise ConnectionError(f"setup CONNECT refused: {describe(connack)}")
    if case.setup != "inflight":
        return case.data
    qos, released = case.inflight
    topic = f"corpus/inflight/{client_id}"
    conv.send(subscribe(level, [(topic, 2)], packet_id=1))
    await conv.expect(Suback, deadline)
    # Its own message comes back to it (no No Local here): our publish is
    # acknowledged and the copy delivered, in either order.
    conv.send(publish(level, topic, qos=qos, packet_id=1))
    got: dict[str, Packet] = {}
    own_ack = "puback" if qos == 1 else "pubrec"
    while len(got) < 2:
        packet = await conv.next(deadline)
        if packet is None:
            raise ConnectionError("closed during setup")
        name = type(packet).__name__.lower()
        if name in ("publish", own_ack):
            got[name] = packet
    delivered = got["publish"]
    assert isinstance(delivered, Publish) and delivered.packet_id is not None  # QoS 1/2
    packet_id = delivered.packet_id
    if released:
        conv.send(ack(5, packet_id))
        await conv.expect(Pubrel, deadline, packet_id)
    return case.data[:2] + u16(packet_id) + case.data[4:]


async def _open(host: str, port: int, level: int) -> Conversation:
    reader, writer = await asyncio.open_connection(host, port)
    return Conversation(reader, writer, level)


async def _connected(
    host: str, port: int, level: int, client_id: str, deadline: float, data: bytes | None = None
) -> Conversation:
    conv = await _open(host, port, level)
    conv.send(data if data is not None else connect(level, client_id))
    connack = await conv.expect(Connack, deadline)
    if connack.reason_code:
        raise ConnectionError(f"setup CONNECT refused: {describe(connack)}")
    return conv


async def run_will_case(host: str, port: int, case: Case) -> tuple[bool, list[Answer]]:
    """Setup "will": a watcher subscribes to the case client's will topic; the
    case connects with a will, sends its bytes and is closed. Then the same
    client id connects again, subscribes to the will topic and publishes a
    marker there. Its CONNACK comes after its worker handled the first
    connection's close (and routed the will, if it did); its SUBSCRIBE
    travels the same worker-to-router pipe behind that will, and the marker
    is published after the SUBACK: so a will that was published reaches the
    watcher before the marker."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    level = case.level
    client_id = f"corpus-{_run_id}-{next(_counter)}"
    will_topic = f"corpus/will/{client_id}"
    watcher = await _connected(host, port, 4, client_id + "-w", deadline)
    client = again = None
    try:
        watcher.send(subscribe(4, [(will_topic, 1)], packet_id=1))
        await watcher.expect(Suback, deadline)
        flags = 0x02 | 0x04 | 0x08  # clean, will, will QoS 1
        client = await _connected(
            host,
            port,
            level,
            client_id,
            deadline,
            connect(level, client_id, flags=flags, will=will_fields(level, will_topic, b"will")),
        )
        client.send(case.data)
        closed, answers = await _read_answers(client, case, loop.time() + TIMEOUT)
        if not closed:
            return closed, answers
        again = await _connected(host, port, 4, client_id, deadline)
        again.send(subscribe(4, [(will_topic, 1)], packet_id=1))
        await again.expect(Suback, deadline)
        again.send(publish(4, will_topic, qos=1, packet_id=2, payload=b"marker"))
        while True:
            packet = await watcher.expect(Publish, deadline)
            if packet.payload == b"will":
                answers.append(("will", 0))
            elif packet.payload == b"marker":
                return closed, answers
    finally:
        for conv in (watcher, client, again):
            if conv is not None:
                conv.writer.close()


async def _read_answers(
    conv: Conversation, case: Case, deadline: float
) -> tuple[bool, list[Answer]]:
    """What the broker sends until it closes or answers the probe."""
    answers: list[Answer] = []
    while True:
        try:
            packet = await conv.next(deadline)
        except TimeoutError:
            answers.append(("timeout", 0))
            return False, answers
        except ProtocolError as exc:
            answers.append((f"undecodable: {exc}", 0))
            return conv.closed, answers
        if packet is None:
            return True, answers
        answers.append(describe(packet))
        if case.probe == "ping" and answers[-1][0] == "pingresp":
            return False, answers
        if (
            case.probe == "worker"
            and answers[-1][0] == "pubcomp"
            and getattr(packet, "packet_id", None) == WORKER_PROBE_ID
        ):
            return False, answers


async def run_case(host: str, port: int, case: Case) -> tuple[bool, list[Answer]]:
    """(closed, answers): whether the broker closed the connection, and what it
    sent after the setup, up to its close or the probe's answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    reader, writer = await asyncio.open_connection(host, port)
    conv = Conversation(reader, writer, case.answer_level or case.level)
    try:
        data = case.data if case.setup == "none" else await _setup(conv, case, deadline)
        if case.probe == "ping":
            data += PINGREQ
        elif case.probe == "worker":
            data += ack(6, WORKER_PROBE_ID)  # PUBREL: answered by the session's worker
        conv.send(data)
        return await _read_answers(conv, case, loop.time() + TIMEOUT)
    finally:
        writer.close()


def judge(case: Case, closed: bool, answers: list[Answer]) -> str | None:
    """None when the broker answered as the case expects, else what differs."""
    kind = case.expect[0]
    if kind == "ok":
        expected = case.expect[1]
        if closed or any(name in ("disconnect", "timeout") for name, _ in answers):
            return f"expected the connection to stay open, got {answers} closed={closed}"
        expected = cast("tuple[Answer, ...] | None", expected)  # see case.ok()
        if expected is not None and tuple(answers) != tuple(expected):
            return f"expected {list(expected)}, got {answers}"
        return None
    # The code of case.connack() or case.violation().
    want: list[Answer] = [] if kind == "close" else [(str(kind), int(cast(int, case.expect[1])))]
    if case.will:
        want.append(("will", 0))
    if not closed or answers != want:
        return f"expected {want or 'a plain close'}, got {answers} closed={closed}"
    return None


async def _run_all(host: str, port: int, cases: Iterable[Case]) -> dict[str, str | None]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(case: Case) -> tuple[str, str | None]:
        async with limit:
            try:
                run = run_will_case if case.setup == "will" else run_case
                closed, answers = await run(host, port, case)
            except (OSError, TimeoutError) as exc:
                return case.name, f"setup failed: {exc!r}"
            return case.name, judge(case, closed, answers)

    results = await asyncio.gather(*(one(case) for case in cases))
    return dict(results)


def run_cases(host: str, port: int, cases: Iterable[Case]) -> dict[str, str | None]:
    """Every case's mismatch (None: as expected), all run concurrently."""
    return asyncio.run(_run_all(host, port, cases))
