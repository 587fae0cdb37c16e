"""flockmq/bus.py: pipes bounded in bytes by credit, frames split by size,
credit on the always-read inbox, restarted peers, corrupt frames.

Two or three `Bus` objects in one event loop over ipc endpoints in a
temporary directory: real ZeroMQ, no broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import msgpack
import pytest
import uvloop
import zmq

from flockmq.bus import MAX_FRAME_BYTES, Bus, _Inbox
from flockmq.envelopes import FRAME_VERSION, Envelope, Kind, Wire

PIPE = 256 * 1024
BIG = b"x" * (64 * 1024)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


def run_until(
    loop: asyncio.AbstractEventLoop, done: Callable[[], bool], timeout: float = 10.0
) -> None:
    async def wait() -> None:
        deadline = loop.time() + timeout
        while not done():
            assert loop.time() < deadline, "timed out"
            await asyncio.sleep(0.001)

    loop.run_until_complete(wait())


class Node:
    """A bus and what it received: every envelope, and the sizes of the frames."""

    def __init__(self, loop: asyncio.AbstractEventLoop, me: int, incarnation: int = 0) -> None:
        self.got: list[Wire] = []
        self.frames: list[int] = []  # envelopes per frame received
        self.bus = Bus(loop, me, incarnation, self._received, pipe_bytes=PIPE)

    def _received(self, batch: list[Wire]) -> None:
        self.frames.append(len(batch))
        self.got.extend(batch)


def opaque(*fields: object) -> Envelope:
    """An envelope for the bus alone, which reads none of its fields: these
    tests need its size and order, not a kind's fields."""
    return cast(Envelope, [*fields])


def endpoint(tmp_path: Path, name: str) -> str:
    return f"ipc://{tmp_path / name}"


def pair(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, receiver_pausable: bool = False
) -> tuple[Node, Node]:
    a, b = Node(loop, 1), Node(loop, 2)
    a.bus.bind(endpoint(tmp_path, "a"), pausable=False)
    b.bus.bind(endpoint(tmp_path, "b"), pausable=receiver_pausable)
    if receiver_pausable:  # b's core inbox, for credit
        b.bus.bind(endpoint(tmp_path, "b-core"), pausable=False)
        a.bus.connect("b", endpoint(tmp_path, "b"), 2, endpoint(tmp_path, "b-core"))
    else:
        a.bus.connect("b", endpoint(tmp_path, "b"), 2)
    b.bus.connect("a", endpoint(tmp_path, "a"), 1)
    a.bus.start()
    b.bus.start()
    return a, b


def test_a_pipe_holds_at_most_its_bytes_while_the_receiver_does_not_read(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    a, b = pair(loop, tmp_path, receiver_pausable=True)
    b.bus.pause_reading("test")
    for i in range(100):  # 6.4 MB for a 256 KB pipe
        a.bus.send("b", opaque(7, i, BIG))
    run_until(loop, lambda: a.bus.congested)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert a.bus.in_flight["b"] <= PIPE + MAX_FRAME_BYTES
    assert a.bus.backlog_bytes >= 100 * len(BIG) - PIPE - MAX_FRAME_BYTES
    assert b.got == []
    b.bus.resume_reading("test")
    run_until(loop, lambda: len(b.got) == 100)
    assert [e[1] for e in b.got] == list(range(100))  # in order
    run_until(loop, lambda: not a.bus.congested)
    assert a.bus.backlog_bytes == 0
    assert a.bus.in_flight["b"] < b.bus.credit_threshold + MAX_FRAME_BYTES


def test_credit_reaches_a_sender_whose_data_inbox_is_paused(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    """As a router paused towards an acceptor: the acceptor's credit goes to
    the router's core inbox, which is always read, or neither could move."""
    a, b = pair(loop, tmp_path, receiver_pausable=True)
    b.bus.pause_reading("test")  # b stops reading what a sends (its work inbox)
    for i in range(40):  # b -> a: more than a pipe's worth, needs a's credit
        b.bus.send("a", opaque(7, i, BIG))
    run_until(loop, lambda: len(a.got) == 40)
    run_until(loop, lambda: not b.bus.congested)


def test_large_envelopes_are_split_into_frames_under_the_limit(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    sizes: list[int] = []
    a, b = pair(loop, tmp_path)
    real = b.bus._on_frame

    def spy(frame: bytes) -> None:
        sizes.append(len(frame))
        real(frame)

    b.bus._on_frame = spy  # type: ignore[method-assign]  # a spy in its place
    for i in range(12):
        a.bus.send("b", opaque(7, i, BIG))
    a.bus.send("b", opaque(7, 99, b"y" * (MAX_FRAME_BYTES * 2)))  # one envelope alone is larger
    run_until(loop, lambda: len(b.got) == 13)
    data_frames = [s for s in sizes if s > 100]
    assert max(data_frames[:-1]) <= MAX_FRAME_BYTES
    assert len(data_frames) >= 4


def test_frames_are_counted_both_ways(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    """What `flockmq status` shows of a hop's batching: envelopes per frame."""
    a, b = pair(loop, tmp_path)
    for i in range(10):
        a.bus.send("b", opaque(7, i))  # one pass: one frame
    run_until(loop, lambda: len(b.got) == 10)
    assert (a.bus.envelopes_sent, a.bus.frames_sent) == (10, 1)
    assert (b.bus.envelopes_received, b.bus.frames_received) == (10, 1)


def test_a_restarted_peer_is_not_owed_what_its_previous_incarnation_was_sent(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    a, b = pair(loop, tmp_path, receiver_pausable=True)
    b.bus.pause_reading("test")
    for i in range(20):
        a.bus.send("b", opaque(7, i, BIG))
    run_until(loop, lambda: a.bus.congested)
    # b "restarts": a frame from b's next incarnation (nothing was handled)
    push: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(endpoint(tmp_path, "a"))
    push.send(msgpack.packb([FRAME_VERSION, 2, 1, 0, [[8, "hello"]]]))
    run_until(loop, lambda: [8, "hello"] in a.got)
    assert a.bus.in_flight["b"] <= PIPE + MAX_FRAME_BYTES  # reset, then refilled
    assert a.bus.backlog_bytes < 20 * len(BIG) - PIPE  # the backlog moved on
    push.close(0)


def test_a_new_incarnation_of_a_peer_is_told_once_before_its_envelopes(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    got: list[Wire] = []
    seen: list[tuple[object, int]] = []
    a = Bus(
        loop,
        1,
        0,
        got.extend,
        pipe_bytes=PIPE,
        on_peer_restarted=lambda key: seen.append((key, len(got))),
    )
    a.bind(endpoint(tmp_path, "a"), pausable=False)
    a.connect("b", endpoint(tmp_path, "b"), 2)
    a.start()
    push: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(endpoint(tmp_path, "a"))
    try:
        for incarnation, n in ((0, 1), (0, 2), (1, 3), (1, 4)):
            push.send(msgpack.packb([FRAME_VERSION, 2, incarnation, 0, [[8, n]]]))
        run_until(loop, lambda: len(got) == 4)
        # b's first start is no restart; its incarnation 1 is, once, before [8, 3]
        assert seen == [("b", 2)]
    finally:
        push.close(0)
        a.close()


def test_a_corrupt_frame_is_counted_and_the_next_one_handled(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    a, b = pair(loop, tmp_path)
    push: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(endpoint(tmp_path, "b"))
    for junk in (
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        msgpack.packb([FRAME_VERSION + 9, 1, 0, 0, []]),
    ):
        push.send(junk)
    a.bus.send("b", opaque(7, "after"))
    run_until(loop, lambda: b.got == [[7, "after"]])
    assert b.bus.malformed_frames == 3
    push.close(0)


def test_a_failing_handler_does_not_stop_the_bus(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    a, b = pair(loop, tmp_path)
    seen: list[Wire] = []

    def handler(envelopes: list[Wire]) -> None:
        seen.extend(envelopes)
        if envelopes[0][1] == "boom":
            raise RuntimeError("a bug")

    b.bus.on_envelopes = handler
    a.bus.send("b", opaque(7, "boom"))
    a.bus.flush()
    a.bus.send("b", opaque(7, "next"))
    run_until(loop, lambda: [7, "next"] in seen)


def test_a_paused_inbox_does_not_wake_the_loop_while_frames_wait(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    """ZeroMQ's FD stays readable until the socket's pending commands are
    processed: an inbox paused with frames waiting must not be woken over and
    over (a router busy-looped on its paused work inbox)."""
    a, b = pair(loop, tmp_path, receiver_pausable=True)
    wakeups = [0]
    real = b.bus._on_readable

    def count(inbox: _Inbox) -> None:
        wakeups[0] += 1
        real(inbox)

    b.bus._on_readable = count  # type: ignore[method-assign]  # a spy in its place
    # The reader was registered with the bound method: register the spy.
    for inbox in b.bus.inboxes:
        fd: int = inbox.sock.getsockopt(zmq.FD)  # type: ignore[assignment]  # an int option
        loop.remove_reader(fd)
        loop.add_reader(fd, b.bus._on_readable, inbox)
    b.bus.pause_reading("test")
    for i in range(20):
        a.bus.send("b", opaque(7, i, b"x"))
    run_until(loop, lambda: wakeups[0] >= 1)  # the frames are there
    loop.run_until_complete(asyncio.sleep(0.3))
    assert wakeups[0] < 20, f"{wakeups[0]} wake-ups in 0.3 s while paused"
    assert b.got == []
    b.bus.resume_reading("test")
    run_until(loop, lambda: len(b.got) == 20)


def test_a_lone_connect_goes_at_once_and_one_close_behind_it_waits_for_company(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A linger far longer than this test: whatever arrives came without it.
    monkeypatch.setattr("flockmq.bus.LINGER", 30.0)
    a, b = pair(loop, tmp_path)
    a.bus.send("b", opaque(Kind.CONNECT, "first"))  # alone: sent at once
    run_until(loop, lambda: len(b.got) == 1)
    a.bus.send("b", opaque(Kind.CLOSED, "second"))  # right behind another: waits
    a.bus.extend("b", [opaque(Kind.CONNACK, "third"), opaque(Kind.ONLINE, "fourth")])
    assert not a.bus._flush_scheduled and a.bus.outboxes["b"]
    a.bus.send("b", opaque(Kind.PUBLISH, "fifth"))  # a message never waits, and takes them along
    run_until(loop, lambda: len(b.got) == 5)
    assert [e[1] for e in b.got] == ["first", "second", "third", "fourth", "fifth"]
    assert b.frames == [1, 4]


def test_lingering_envelopes_are_sent_when_the_linger_ends(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flockmq.bus.LINGER", 0.05)
    a, b = pair(loop, tmp_path)
    a.bus._last_linger_kind = loop.time()  # as if a CONNECT had just gone
    a.bus.send("b", opaque(Kind.CONNECT, "one"))
    a.bus.send("b", opaque(Kind.CONNECT, "two"))
    assert not a.bus._flush_scheduled
    run_until(loop, lambda: len(b.got) == 2)
    assert b.frames == [2]
    assert b.got == [[Kind.CONNECT, "one"], [Kind.CONNECT, "two"]]


def test_a_closed_waits_longer_and_a_connect_behind_it_brings_the_flush_forward(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flockmq.bus.LINGER", 0.05)
    monkeypatch.setattr("flockmq.bus.CLOSED_LINGER", 0.4)
    a, b = pair(loop, tmp_path)
    a.bus._last_linger_kind = loop.time()  # as if a CONNECT had just gone
    a.bus.send("b", opaque(Kind.CLOSED, "gone"))
    loop.run_until_complete(asyncio.sleep(0.15))  # past LINGER: a CLOSED waits on
    assert b.got == []
    start = loop.time()
    a.bus.send("b", opaque(Kind.CONNECT, "new"))  # waits LINGER, and takes the CLOSED along
    run_until(loop, lambda: len(b.got) == 2)
    assert loop.time() - start < 0.2
    assert b.frames == [2]
    assert [e[1] for e in b.got] == ["gone", "new"]
    # The CLOSED's own timer, replaced, sends nothing when it fires.
    a.bus._last_linger_kind = loop.time()
    a.bus.send("b", opaque(Kind.CONNACK, "later"))
    loop.run_until_complete(asyncio.sleep(0.3))
    assert b.frames == [2, 1]


def test_a_closed_alone_waits_at_most_closed_linger(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flockmq.bus.CLOSED_LINGER", 0.1)
    a, b = pair(loop, tmp_path)
    a.bus._last_linger_kind = loop.time()
    start = loop.time()
    a.bus.send("b", opaque(Kind.CLOSED, "gone"))
    run_until(loop, lambda: len(b.got) == 1)
    assert 0.09 <= loop.time() - start < 0.5


def test_a_peer_marked_down_is_sent_nothing_and_a_frame_from_it_brings_it_back(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    """A cluster's router on a dead node (peer_down): its full pipe and
    backlog are dropped, so this process is no longer congested, and what
    is sent to it meanwhile is dropped; a frame from it (back) ends that."""
    a, b = pair(loop, tmp_path, receiver_pausable=True)
    b.bus.pause_reading("test")  # b reads nothing: as good as dead
    for i in range(20):
        a.bus.send("b", opaque(7, i, BIG))
    run_until(loop, lambda: a.bus.congested)
    decongested: list[bool] = []
    a.bus.on_decongested = lambda: decongested.append(True)
    a.bus.peer_down("b")
    assert not a.bus.congested and a.bus.backlog_bytes == 0 and a.bus.in_flight["b"] == 0
    assert decongested == [True] and a.bus.dropped_frames > 0
    dropped = a.bus.dropped_frames
    for i in range(20):
        a.bus.send("b", opaque(7, 100 + i, BIG))
    loop.run_until_complete(asyncio.sleep(0.02))
    assert not a.bus.congested and a.bus.in_flight["b"] == 0
    assert a.bus.dropped_frames > dropped
    # b comes back: its next incarnation's first frame
    push: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(endpoint(tmp_path, "a"))
    push.send(msgpack.packb([FRAME_VERSION, 2, 1, 0, [[8, "up"]]]))
    run_until(loop, lambda: [8, "up"] in a.got)
    assert "b" not in a.bus.down
    b.bus.resume_reading("test")
    a.bus.send("b", opaque(7, 999))
    run_until(loop, lambda: any(e[1] == 999 for e in b.got))
    # nothing queued for it while it was down reached it (the socket was remade)
    assert not any(100 <= e[1] < 120 for e in b.got)
    push.close(0)
