"""flockmq/bus.py `Bus.repoint`: a peer (a cluster's shard) moved to another
endpoint. Real ZeroMQ over tcp on 127.0.0.1, three buses in one event loop:
a sender, the peer's old process (which dies) and its new one (the same bus
id, another endpoint). What was sent to the old one is lost and counted so
(on_peer_restarted, in_flight zeroed), later sends and the backlog go to the
new one, credit flows between them, and the new process's first frame is
not taken for yet another restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator
from typing import cast

import pytest
import uvloop

from flockmq.app.probe import free_port_range
from flockmq.bus import Bus
from flockmq.envelopes import Envelope, Wire

PIPE = 256 * 1024
BIG = b"x" * (64 * 1024)
SENDER, PEER = 10, 2


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


def run_until(
    loop: asyncio.AbstractEventLoop, done: Callable[[], bool], timeout: float = 20.0
) -> None:
    async def wait() -> None:
        deadline = loop.time() + timeout
        while not done():
            assert loop.time() < deadline, "timed out"
            await asyncio.sleep(0.001)

    loop.run_until_complete(wait())


def opaque(*fields: object) -> Envelope:
    return cast(Envelope, [*fields])


class Proc:
    """A bus bound on its own tcp endpoint, and what it received."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, me: int, incarnation: int, pausable: bool = False
    ) -> None:
        self.got: list[Wire] = []
        self.restarted: list[Hashable] = []
        self.bus = Bus(
            loop,
            me,
            incarnation,
            self.got.extend,
            pipe_bytes=PIPE,
            on_peer_restarted=self.restarted.append,
        )
        self.endpoint = f"tcp://127.0.0.1:{free_port_range(1)}"
        self.bus.bind(self.endpoint, pausable=pausable)


@pytest.fixture
def procs(loop: asyncio.AbstractEventLoop) -> Iterator[tuple[Proc, Proc, Proc]]:
    sender, old, new = Proc(loop, SENDER, 0), Proc(loop, PEER, 0), Proc(loop, PEER, 3)
    sender.bus.connect("w", old.endpoint, PEER)
    for peer in (old, new):  # the peer's credit and replies go to the sender
        peer.bus.connect("s", sender.endpoint, SENDER)
    for proc in (sender, old, new):
        proc.bus.start()
    yield sender, old, new
    for proc in (sender, old, new):
        if not proc.bus.inboxes[0].sock.closed:
            proc.bus.close()


def test_after_a_repoint_sends_go_to_the_new_process_and_the_old_ones_count_as_lost(
    loop: asyncio.AbstractEventLoop, procs: tuple[Proc, Proc, Proc]
) -> None:
    sender, old, new = procs
    sender.bus.send("w", opaque(7, "first"))
    run_until(loop, lambda: old.got == [[7, "first"]])
    old.bus.close()  # the old owner's node dies
    sender.bus.send("w", opaque(7, "lost"))  # queued by ZeroMQ towards the dead endpoint
    sender.bus.flush()
    assert sender.bus.in_flight["w"] > 0

    sender.bus.repoint("w", new.endpoint)

    assert sender.restarted == ["w"] and sender.bus.in_flight["w"] == 0
    for i in range(40):  # more than a pipe's worth: needs the new process's credit
        sender.bus.send("w", opaque(7, i, BIG))
    run_until(loop, lambda: len(new.got) == 40)
    assert [e[1] for e in new.got] == list(range(40))  # in order, and not "lost"
    run_until(loop, lambda: not sender.bus.congested)
    # the new process (incarnation 3) credited the sender: its first frame
    # was not another restart (repoint told it once)
    assert sender.bus.peer_incarnations[PEER] == 3
    assert sender.restarted == ["w"] and sender.bus.repoints == 1
    # and it talks back on its own pipe
    new.bus.send("s", opaque(8, "hello"))
    run_until(loop, lambda: [8, "hello"] in sender.got)


def test_the_backlog_for_a_dead_peer_goes_to_its_new_endpoint(
    loop: asyncio.AbstractEventLoop, procs: tuple[Proc, Proc, Proc]
) -> None:
    sender, old, new = procs
    old.bus.inboxes[0].pausable = True  # it reads nothing more: no credit comes back
    old.bus.pause_reading("dying")
    for i in range(30):  # 1.9 MB for a 256 KB pipe: most of it waits in the backlog
        sender.bus.send("w", opaque(7, i, BIG))
    run_until(loop, lambda: sender.bus.congested)
    waiting = len(sender.bus.backlog["w"])
    assert waiting > 0

    sender.bus.repoint("w", new.endpoint)

    run_until(loop, lambda: not sender.bus.congested and [7, 29, BIG] in new.got)
    got = [e[1] for e in new.got]
    assert got == list(range(30 - len(got), 30))  # the tail that had not left, in order
    assert len(got) >= waiting
    assert sender.bus.backlog_bytes == 0


def test_a_repoint_with_a_control_endpoint_sends_credit_there(
    loop: asyncio.AbstractEventLoop, procs: tuple[Proc, Proc, Proc]
) -> None:
    """As an acceptor's pipe to a worker: data to the worker's work inbox
    (which it stops reading when congested), credit for what the worker
    sends to its core inbox (always read): both moved."""
    sender, _, _ = procs
    worker = Proc(loop, PEER, 5, pausable=True)
    core = f"tcp://127.0.0.1:{free_port_range(1)}"
    worker.bus.bind(core, pausable=False)
    worker.bus.connect("s", sender.endpoint, SENDER)
    worker.bus.start()
    try:
        worker.bus.pause_reading("congested")  # only the core inbox is read
        sender.bus.repoint("w", worker.endpoint, core)
        for i in range(40):  # the worker sends more than a pipe's worth to the acceptor
            worker.bus.send("s", opaque(7, i, BIG))
        run_until(loop, lambda: len(sender.got) == 40)
        run_until(loop, lambda: not worker.bus.congested)  # credit reached the core inbox
        sender.bus.send("w", opaque(7, "waits"))  # the work inbox: read once resumed
        worker.bus.resume_reading("congested")
        run_until(loop, lambda: [7, "waits"] in worker.got)
    finally:
        worker.bus.close()
