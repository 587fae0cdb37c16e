"""A cluster node's supervisor tells its workers and router which routers
are live (ROUTERS_LIVE, flockmq/envelopes.py; issue 14): router r runs on
node r, so these are the nodes its membership holds live
(flockmq/membership.py). What they do with it: flockmq/routers_live.py and
workers/subscriptions.py (a SUBACK waits for live routers only).

Sent on each change of the live set and again every RESEND seconds, to the
workers this node runs now (a worker started for a shard that moved here,
or restarted, learns it within RESEND) and to its router. One frame of the
bus's format per process (flockmq/bus.py), from SENDER, an id no process
has: the receiver owes it no credit. Never waits: each PUSH queues at most
SNDHWM frames (a child not started yet), and a frame that does not fit is
dropped (`dropped`): the next one says the same.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any, Final

import msgpack
import zmq

from flockmq.config import Config
from flockmq.curve import connect_curve
from flockmq.envelopes import FRAME_VERSION, Kind

RESEND: Final = 1.0  # seconds
SENDER: Final = -1  # no process's bus id (Config.process_id: 0 and up)
SNDHWM: Final = 4


class RoutersLiveSender:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.socks: dict[str, zmq.Socket[Any]] = {}
        self.live: list[int] | None = None
        self.sent_at = 0.0
        self.sent = 0
        self.dropped = 0

    def poll(self, config: Config, live_nodes: Collection[str]) -> None:
        """Send if the live set changed or RESEND seconds went by."""
        placement = config.placement
        if placement is None:
            return
        live = sorted(placement.names.index(n) for n in live_nodes if n in placement.names)
        now = self.clock()
        if live == self.live and now - self.sent_at < RESEND:
            return
        self.live, self.sent_at = live, now
        frame = msgpack.packb([FRAME_VERSION, SENDER, 0, 0, [[int(Kind.ROUTERS_LIVE), live]]])
        endpoints = [config.router_endpoint(r) for r in placement.routers_here()]
        endpoints += [config.worker_endpoint(s) for s in placement.workers_here()]
        for endpoint in endpoints:
            try:
                self._sock(endpoint, config).send(frame, zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                self.dropped += 1

    def _sock(self, endpoint: str, config: Config) -> zmq.Socket[Any]:
        sock = self.socks.get(endpoint)
        if sock is None:
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, SNDHWM)
            sock.setsockopt(zmq.LINGER, 0)
            connect_curve(sock, endpoint, config.curve)  # the inboxes are CURVE servers
            self.socks[endpoint] = sock
        return sock

    def close(self) -> None:
        for sock in self.socks.values():
            with contextlib.suppress(zmq.ZMQError):
                sock.close(0)
        self.socks.clear()
