"""The control endpoint (issue 13): every broker process answers "what are
you doing?" with one msgpack snapshot, for `flockmq status` and the dashboard
(flockmq/app/control.py asks; this module answers).

Where: a ZeroMQ ROUTER socket at `ipc://<runtime_dir>/control-<role>-<index>.sock`
(`control_endpoint`). The runtime directory is the supervisor's short
mkdtemp path, as for the bus's ipc endpoints, so the path stays under the
~107-byte limit of a Unix socket whatever the data directory; the supervisor
writes where it is into `<data_dir>/DISCOVERY_FILE` so a client finds it from
the data directory. The control socket is ipc:// even with `transport = tcp`:
`flockmq status` runs on the broker's host.

The protocol: a request is a msgpack array `[CONTROL_VERSION, "snapshot"]`;
the answer a msgpack map (`ControlServer.snapshot`), or `{"error": why}` for
a request that is not one. The socket is hostile-safe and bounded: requests
over MAX_REQUEST_BYTES are refused by ZeroMQ itself (ZMQ_MAXMSGSIZE), its
queues hold HWM messages, at most REQUESTS_PER_PASS are answered per
event-loop pass, a snapshot is rebuilt at most every SNAPSHOT_REUSE seconds
(it walks the shard's sessions), and a malformed request gets an error
answer or is dropped; nothing it does raises out of the loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

from flockmq import curve

if TYPE_CHECKING:
    import asyncio  # annotations only: `flockmq serve` runs no event loop

log = logging.getLogger("flockmq.control")

CONTROL_VERSION = 1
SNAPSHOT = "snapshot"
DISCOVERY_FILE = "flockmq.control.json"
MAX_REQUEST_BYTES = 256
HWM = 64
REQUESTS_PER_PASS = 32
SNAPSHOT_REUSE = 0.05  # seconds
MAX_FRAMES = 3  # identity, the REQ delimiter, the request

Snapshot = dict[str, Any]


def control_endpoint(runtime_dir: str, role: str, index: int) -> str:
    return f"ipc://{runtime_dir}/control-{role}-{index}.sock"


def bind_control(endpoint: str) -> zmq.Socket[Any]:
    """A ROUTER socket for control requests, bounded (see the docstring)."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    return sock


def parse_request(frames: list[bytes]) -> tuple[list[bytes], str | None] | None:
    """(the reply's head frames, error) for a request, error None for a
    snapshot request; None for what cannot be answered (dropped). A REQ
    client's request comes as [identity, b"", body], a DEALER's as
    [identity, body]."""
    if len(frames) < 2 or len(frames) > MAX_FRAMES:
        return None
    head, body = frames[:-1], frames[-1]
    if len(head) == 2 and head[1] != b"":
        return None
    try:
        request = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return head, "not msgpack"
    if request != [CONTROL_VERSION, SNAPSHOT]:
        return head, "unknown request"
    return head, None


def answer_request(sock: zmq.Socket[Any], make_snapshot: Callable[[], Snapshot]) -> bool:
    """Receive and answer one request; False when none was waiting."""
    try:
        frames = sock.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return False
    parsed = parse_request(frames)
    if parsed is None:
        return True
    head, error = parsed
    reply: Snapshot = {"error": error} if error is not None else make_snapshot()
    with contextlib.suppress(zmq.ZMQError):  # a gone or full peer: dropped
        sock.send_multipart([*head, msgpack.packb(reply, use_bin_type=True)], zmq.NOBLOCK)
    return True


def process_figures() -> Snapshot:
    """This process's CPU seconds (user + system), resident memory and its
    proportional share (PSS: pages shared with the other broker processes,
    which fork from one parent, counted once over all of them)."""
    import psutil  # on the first status request: 1.4 MiB a process that is never asked

    proc = psutil.Process()
    with proc.oneshot():
        cpu = proc.cpu_times()
        rss = proc.memory_info().rss
        return {"cpu_seconds": cpu.user + cpu.system, "rss_bytes": rss, "pss_bytes": pss_of(proc)}


def pss_of(proc: Any) -> int:
    """A psutil process's proportional set size (Linux smaps_rollup); 0 where
    the platform does not tell."""
    import psutil

    try:
        return int(getattr(proc.memory_full_info(), "pss", 0))
    except (psutil.Error, OSError):
        return 0


def peer_name(key: Hashable) -> str:
    """A bus key as a name: ("worker", 0) -> "worker-0"; an acceptor's int
    shard keys are workers."""
    if isinstance(key, tuple):
        return "-".join(str(part) for part in key)
    if isinstance(key, int):
        return f"worker-{key}"
    return str(key)


def bus_figures(bus: Any) -> Snapshot:
    """Per peer, the bytes sent and not yet credited (`in_flight`) and the
    bytes waiting to be sent (`backlog`) on this process's pipe to it."""
    pipes = {}
    for key, in_flight in bus.in_flight.items():
        backlog = sum(len(frame) for frame in bus.backlog.get(key, ()))
        pipes[peer_name(key)] = {"in_flight": in_flight, "backlog": backlog}
    return {
        "pipes": pipes,
        "pipe_bytes": bus.pipe_bytes,
        "envelopes_in": bus.envelopes_received,
        "envelopes_out": bus.envelopes_sent,
        "frames_in": bus.frames_received,
        "frames_out": bus.frames_sent,
        # CURVE handshakes refused: keys of no cluster node (flockmq/curve.py)
        "curve_refused": curve.refused(),
    }


class ControlServer:
    """Answers control requests from an asyncio loop (the loop's reader on
    the socket's FD, edge-triggered as for the bus: drain until empty)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: str,
        describe: Callable[[], Snapshot],
    ) -> None:
        """`describe()`: what this process adds to the snapshot (role,
        index, counters, gauges, pipes)."""
        self.loop = loop
        self.describe = describe
        self.sock = bind_control(endpoint)
        self.endpoint = endpoint
        self.fd: int = self.sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self.scheduled = False
        self.cached: Snapshot | None = None
        self.cached_at = 0.0
        loop.add_reader(self.fd, self._drain)
        self._schedule()

    @classmethod
    def for_process(
        cls,
        loop: asyncio.AbstractEventLoop,
        runtime_dir: str,
        stats: Any,
        bus: Any,
        incarnation: int,
    ) -> ControlServer | None:
        """The control server of a role's process, from its SysStats (role,
        index, counters, gauges) and its Bus; None without a runtime dir (a
        process started outside a supervisor)."""
        if not runtime_dir:
            return None

        def describe() -> Snapshot:
            gauges = stats.gauges() if stats.gauges is not None else {}
            return {
                "role": stats.role,
                "index": stats.index,
                "incarnation": incarnation,
                "counters": dict(stats.counters),
                "gauges": gauges,
                **bus_figures(bus),
            }

        endpoint = control_endpoint(runtime_dir, stats.role, stats.index)
        return cls(loop, endpoint, describe)

    def snapshot(self) -> Snapshot:
        now = time.time()
        if self.cached is None or now - self.cached_at > SNAPSHOT_REUSE:
            self.cached = {
                "pid": os.getpid(),
                "time": now,
                **process_figures(),
                **self.describe(),
            }
            self.cached_at = now
        return self.cached

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self.scheduled = False
        try:
            for _ in range(REQUESTS_PER_PASS):
                if not answer_request(self.sock, self.snapshot):
                    return
        except Exception:  # a bug here must not stop the process's loop
            log.exception("control request failed")
            return
        self._schedule()  # more may wait: the edge-triggered FD will not fire again

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the loop may already be closed
            self.loop.remove_reader(self.fd)
        self.sock.close(0)


class PollingControl:
    """The supervisor's control socket: it has no event loop, so it answers
    while it waits between its checks of the children (`serve_for`), and
    writes the discovery file (`<data_dir>/DISCOVERY_FILE`) that tells
    clients where the control sockets are."""

    def __init__(self, data_dir: str, runtime_dir: str, describe: Callable[[], Snapshot]) -> None:
        self.describe = describe
        self.endpoint = control_endpoint(runtime_dir, "supervisor", 0)
        self.sock = bind_control(self.endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.discovery = os.path.join(data_dir, DISCOVERY_FILE)
        where = {"supervisor_pid": os.getpid(), "runtime_dir": runtime_dir}
        tmp = f"{self.discovery}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(where, fh)
        os.replace(tmp, self.discovery)

    def snapshot(self) -> Snapshot:
        return {"pid": os.getpid(), "time": time.time(), **process_figures(), **self.describe()}

    def serve_for(self, seconds: float) -> None:
        """Answer requests for `seconds` (a signal may end it sooner)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self.poller.poll(int(left * 1000) + 1):
                return
            for _ in range(REQUESTS_PER_PASS):
                if not answer_request(self.sock, self.snapshot):
                    break

    def close(self) -> None:
        self.sock.close(0)
        with contextlib.suppress(OSError):
            os.unlink(self.discovery)
