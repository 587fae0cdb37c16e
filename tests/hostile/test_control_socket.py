"""The control sockets (flockmq/control.py) under attack: garbage, oversized
and many-framed messages, a flood of requests whose answers are never read,
and bytes that are not ZeroMQ at all, sent to every process's control
socket. Every process still answers `flockmq status`'s question, with the
pid it started with, and the broker still serves clients."""

from __future__ import annotations

import os
import socket
from typing import Any

import msgpack
import zmq

from flockmq.app.control import find_broker, take_sample
from flockmq.control import CONTROL_VERSION, SNAPSHOT
from tests.e2e.broker import Broker

from .health import assert_healthy, child_pids

FLOOD = 2000


def attack(endpoint: str) -> None:
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, FLOOD * 2)
    sock.connect(endpoint)
    try:
        sock.send_multipart([b"", os.urandom(200)])
        sock.send_multipart([b"", b"\x91" * 250 + b"\xc0"])  # nested 250 deep
        sock.send_multipart([b"", msgpack.packb([CONTROL_VERSION, SNAPSHOT, "x" * 100])])
        sock.send_multipart([b"", msgpack.packb({"snapshot": True})])
        sock.send_multipart([b"frame"] * 10)
        sock.send_multipart([b"", b"\x00" * 1_000_000])  # over the size limit
        request = msgpack.packb([CONTROL_VERSION, SNAPSHOT])
        for _ in range(FLOOD):  # answers never read
            sock.send_multipart([b"", request], zmq.NOBLOCK)
    except zmq.Again:
        pass  # the pipe is full: the socket's bound, as meant
    finally:
        sock.close(0)
    # not ZeroMQ at all, straight to the Unix socket
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(endpoint.removeprefix("ipc://"))
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(4096))


def test_garbage_on_every_control_socket_leaves_every_process_answering(broker: Broker) -> None:
    pids = child_pids(broker)
    runtime_dir = find_broker(str(broker.data_dir)).runtime_dir
    before = take_sample(runtime_dir, timeout=5)
    assert all(row["snapshot"] is not None for row in before.rows)
    for row in before.rows:
        role, index = row["role"], row["index"]
        attack(f"ipc://{runtime_dir}/control-{role}-{index}.sock")
    after = take_sample(runtime_dir, timeout=5)
    answers = {(r["role"], r["index"]): r["snapshot"] for r in after.rows}
    assert all(snapshot is not None for snapshot in answers.values()), answers
    assert {
        k: s["pid"] for k, s in answers.items() if s is not None and k[0] != "supervisor"
    } == pids
    assert_healthy(broker, pids)
