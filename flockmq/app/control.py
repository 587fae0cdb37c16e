"""The client side of the control endpoint (flockmq/control.py), shared by
`flockmq status` and the dashboard (router/metrics.py): find a running
broker from its data directory, ask every process for its snapshot at once,
each with a deadline (a process that does not answer is "no answer", never a
hang), and keep the previous sample so that rates come from two.

A sample is the supervisor's list of children (role, index, pid, restarts),
each with its own snapshot or None. Without an answer from the supervisor,
the control sockets found in the runtime directory are asked instead.
"""

from __future__ import annotations

import glob
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import psutil
import zmq

from flockmq.app.status import Report, Sample, build_report
from flockmq.control import CONTROL_VERSION, DISCOVERY_FILE, SNAPSHOT, Snapshot, control_endpoint

TIMEOUT = 1.0  # seconds a process has to answer
MAX_REPLY_BYTES = 4 * 1024 * 1024
_REQUEST: bytes = msgpack.packb([CONTROL_VERSION, SNAPSHOT])
_SOCKET = re.compile(r"control-([a-z]+)-(\d+)\.sock$")


class StatusError(Exception):
    """No broker to ask (no discovery file, or an unreadable one)."""


@dataclass(frozen=True)
class Broker:
    supervisor_pid: int
    runtime_dir: str


def find_broker(data_dir: str) -> Broker:
    path = os.path.join(data_dir, DISCOVERY_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            found = json.load(fh)
        broker = Broker(int(found["supervisor_pid"]), str(found["runtime_dir"]))
    except FileNotFoundError:
        raise StatusError(f"no broker is running on {data_dir} (no {DISCOVERY_FILE})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StatusError(f"{path}: unreadable ({exc})") from None
    if not psutil.pid_exists(broker.supervisor_pid):
        raise StatusError(
            f"no broker is running on {data_dir} (its supervisor, pid "
            f"{broker.supervisor_pid}, is gone)"
        )
    return broker


def ask_all(endpoints: list[str], timeout: float = TIMEOUT) -> list[Snapshot | None]:
    """Every endpoint's snapshot, asked at once; None for no answer within
    `timeout` (or an answer that is not a snapshot)."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    poller = zmq.Poller()
    socks: list[zmq.Socket[Any]] = []
    answers: list[Snapshot | None] = [None] * len(endpoints)
    try:
        for endpoint in endpoints:
            sock: zmq.Socket[Any] = ctx.socket(zmq.REQ)
            socks.append(sock)  # closed below whatever comes next (a Ctrl-C too)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
            sock.connect(endpoint)
            sock.send(_REQUEST, zmq.NOBLOCK)
            poller.register(sock, zmq.POLLIN)
        waiting = len(socks)
        deadline = time.monotonic() + timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            for sock, _event in poller.poll(int(left * 1000) + 1):
                answers[socks.index(sock)] = _decode(sock.recv())
                poller.unregister(sock)
                waiting -= 1
    finally:
        for sock in socks:
            sock.close(0)
    return answers


def _decode(data: bytes) -> Snapshot | None:
    try:
        answer = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return None
    if not isinstance(answer, dict) or "error" in answer or "pid" not in answer:
        return None
    return answer


def take_sample(runtime_dir: str, timeout: float = TIMEOUT) -> Sample:
    """One snapshot of every process: the supervisor first (who the children
    are), then all of them at once."""
    [supervisor] = ask_all([control_endpoint(runtime_dir, "supervisor", 0)], timeout)
    if supervisor is not None and isinstance(supervisor.get("children"), list):
        children = [dict(c) for c in supervisor["children"] if isinstance(c, dict)]
    else:
        children = _found_sockets(runtime_dir)
    answers = ask_all([str(c["endpoint"]) for c in children], timeout)
    rows: list[dict[str, Any]] = [
        {"role": "supervisor", "index": 0, "restarts": 0, "snapshot": supervisor}
    ]
    if supervisor is not None:
        rows[0]["pid"] = supervisor["pid"]
    for child, answer in zip(children, answers, strict=True):
        row = {k: child.get(k) for k in ("role", "index", "pid", "restarts")}
        row["snapshot"] = answer
        if answer is not None:
            row["pid"] = answer["pid"]
        rows.append(row)
    return Sample(time.time(), rows)


def _found_sockets(runtime_dir: str) -> list[dict[str, Any]]:
    """The children's control sockets, when the supervisor does not answer."""
    found = []
    for path in sorted(glob.glob(os.path.join(glob.escape(runtime_dir), "control-*.sock"))):
        match = _SOCKET.search(path)
        if match and match.group(1) != "supervisor":
            role, index = match.group(1), int(match.group(2))
            found.append({"role": role, "index": index, "endpoint": f"ipc://{path}"})
    return found


class StatusSampler:
    """Rates need two samples: this keeps the last two. `report()` takes a
    new sample and compares it with the last one, or, when there is none or
    it is stale, takes two `interval` apart; asked again within half an
    interval, it answers the last report's figures again (several dashboards
    cost the broker no more). Thread-safe: the dashboard's HTTP threads
    share one."""

    def __init__(self, runtime_dir: str, interval: float = 1.0, stale: float = 30.0) -> None:
        self.runtime_dir = runtime_dir
        self.interval = interval
        self.stale = stale
        self.pair: tuple[Sample, Sample] | None = None
        self.lock = threading.Lock()

    def report(self, cpu_count: int | None = None) -> Report:
        with self.lock:
            now = time.time()
            if self.pair is None or now - self.pair[1].time > self.interval / 2:
                last = None if self.pair is None else self.pair[1]
                if last is None or now - last.time > self.stale:
                    last = take_sample(self.runtime_dir)
                    time.sleep(self.interval)
                self.pair = (last, take_sample(self.runtime_dir))
            return build_report(*self.pair, cpu_count or os.cpu_count() or 1)
