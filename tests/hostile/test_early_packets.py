"""What a client sends right after its CONNECT is acted on after the CONNACK
[MQTT-3.1.4-5, MQTT-3.2.0-1]: until then (its worker is slow, or waiting
for a takeover) the acceptor does not read the client, so what waits is one
read's worth, however much the client sends."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import psutil

from flockmq.frontend.codec import Connack, Connect, Pingreq, Pingresp, encode
from tests.e2e.broker import MakeBroker
from tests.e2e.clients import TIMEOUT, unique

from .health import MB, assert_healthy, child_pids

PINGS = 1_000_000  # 2 MB of PINGREQs


def bytes_read_when_it_stops(pid: int) -> int:
    """The process's read_chars once they stop growing (it reads nothing
    more for half a second)."""
    proc = psutil.Process(pid)
    last = proc.io_counters().read_chars
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proc.io_counters().read_chars
        if now == last:
            return now
        last = now
    raise AssertionError("it never stopped reading")


def test_answers_waiting_for_the_connack_are_bounded(make_broker: MakeBroker) -> None:
    broker = make_broker(acceptors=1, workers=1)
    pids = child_pids(broker)
    acceptor = pids[("acceptor", 0)]
    sock = socket.create_connection(("127.0.0.1", broker.port))
    sock.settimeout(TIMEOUT)
    data = encode(Connect(unique("eager"), 4, True, 60), 4) + encode(Pingreq(), 4) * PINGS
    worker = pids[("worker", 0)]
    before = bytes_read_when_it_stops(acceptor)
    os.kill(worker, signal.SIGSTOP)  # the CONNACK cannot come
    sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    try:
        sender.start()
        taken = bytes_read_when_it_stops(acceptor) - before
    finally:
        os.kill(worker, signal.SIGCONT)
    # The CONNACK first, then every answer.
    connack = encode(Connack(False, 0), 4)
    expected = connack + encode(Pingresp(), 4) * PINGS
    received = bytearray()
    while len(received) < len(expected):
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(received)} bytes"
        received += chunk
    sender.join(TIMEOUT)
    sock.close()
    assert bytes(received) == expected
    # Before, the acceptor read all 2 MB and held a million answers; now one
    # read's worth.
    assert taken < 1 * MB, f"the acceptor read {taken / MB:.1f} MB before the CONNACK"
    assert_healthy(broker, pids)
