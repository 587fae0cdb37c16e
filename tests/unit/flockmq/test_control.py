"""flockmq/control.py and flockmq/app/control.py: a control server in an
event loop answers snapshots, refuses what is not a request without
stopping, and a client that asks a socket nobody answers gets None in time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from flockmq.app.control import ask_all
from flockmq.control import CONTROL_VERSION, SNAPSHOT, ControlServer, control_endpoint


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A ControlServer on a loop in a thread; yields its endpoint."""
    endpoint = control_endpoint(str(tmp_path), "worker", 3)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        ControlServer(loop, endpoint, lambda: {"role": "worker", "index": 3})
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield endpoint
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def dealer(endpoint: str) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(endpoint)
    return sock


def test_a_snapshot_names_the_process_with_its_figures(server: str) -> None:
    [answer] = ask_all([server], timeout=5)
    assert answer is not None
    assert (answer["role"], answer["index"]) == ("worker", 3)
    assert answer["pid"] > 0 and answer["rss_bytes"] > 0 and answer["cpu_seconds"] >= 0
    assert 0 < answer["pss_bytes"] <= answer["rss_bytes"]


def test_garbage_gets_an_error_or_nothing_and_the_server_still_answers(server: str) -> None:
    sock = dealer(server)
    try:
        sock.send_multipart([b"", b"\xc1not msgpack"])
        assert msgpack.unpackb(sock.recv_multipart()[-1]) == {"error": "not msgpack"}
        sock.send_multipart([b"", msgpack.packb([CONTROL_VERSION, "shutdown"])])
        assert msgpack.unpackb(sock.recv_multipart()[-1]) == {"error": "unknown request"}
        sock.send_multipart([b"x", b"y", b"z", b"w"])  # too many frames: dropped
        sock.send_multipart([b"not empty", msgpack.packb([CONTROL_VERSION, SNAPSHOT])])  # dropped
        sock.send(b"\x00" * 100_000)  # over ZMQ_MAXMSGSIZE: ZeroMQ drops the peer
    finally:
        sock.close(0)
    [answer] = ask_all([server], timeout=5)
    assert answer is not None and answer["index"] == 3


def test_nobody_answering_is_none_within_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    assert ask_all([control_endpoint(str(tmp_path), "acceptor", 0)], timeout=0.3) == [None]
    assert time.monotonic() - started < 2
