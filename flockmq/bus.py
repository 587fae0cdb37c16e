"""ZeroMQ plumbing shared by every process: one PULL inbox, one PUSH per peer,
one frame per peer per event-loop pass.

Receiving: the inbox's ZMQ_FD is edge-triggered, so the reader drains until
EVENTS says empty (a bounded number of frames per pass, then it yields to the
loop and continues). Sending: PUSH never drops; when a peer's queue is at its
high-water mark the frame waits in a backlog and sending is retried until it
drains.

Backpressure without deadlock: the processes form a cycle (acceptor -> worker
-> router -> acceptor ...), so a process that stopped reading whenever any send
backed up could wait on a peer that waits on it. The rule: a process pauses its
inbox only for backlog towards the peers named in `pause_for` (router and
workers: acceptors), and acceptors, which never pause their inbox for backlog,
stop reading client sockets instead (`congested`), which is where new work
enters. An acceptor pauses its inbox only for a client socket that is full, and
for at most a grace period (see frontend/acceptor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable
from typing import Any

import zmq

from flockmq.envelopes import Envelope, pack_frame, unpack_frame

log = logging.getLogger("flockmq.bus")

# Frames per pipe. With MAX_BATCH this bounds what a pipe holds. Not lower:
# libzmq returns send credit lazily, and at HWM 64 a lightly loaded pipe
# stalled for 20 ms per message (measured); at 1000 a hop costs ~90 us.
HWM = 1000
MAX_BATCH = 256  # envelopes per frame
FRAMES_PER_PASS = 256
RETRY_SECONDS = 0.002


class Bus:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        inbox_endpoint: str,
        on_envelopes: Callable[[list[Envelope]], None],
        on_decongested: Callable[[], None] | None = None,
        pause_for: Callable[[Hashable], bool] | None = None,
    ) -> None:
        self.loop = loop
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.inbox = self.ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.RCVHWM, HWM)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.bind(inbox_endpoint)
        self.on_envelopes = on_envelopes
        self.on_decongested = on_decongested
        self.pause_for = pause_for
        self.peers: dict[Hashable, zmq.Socket[Any]] = {}
        self.outboxes: dict[Hashable, list[Envelope]] = {}
        self.backlog: dict[Hashable, list[bytes]] = {}
        self._flush_scheduled = False
        self._paused_by: set[str] = {"start"}
        self._drain_scheduled = False
        self.malformed_frames = 0
        self.handler_errors = 0

    def start(self) -> None:
        self.loop.add_reader(self.inbox.getsockopt(zmq.FD), self._on_readable)
        self.resume_reading("start")

    def connect(self, key: Hashable, endpoint: str) -> None:
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.connect(endpoint)
        self.peers[key] = sock
        self.outboxes[key] = []

    # --- sending ------------------------------------------------------------------------
    def outbox(self, key: Hashable) -> list[Envelope]:
        """The list to append envelopes for `key` to; sent at the end of this pass."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)
        return self.outboxes[key]

    def send(self, key: Hashable, envelope: Envelope) -> None:
        self.outbox(key).append(envelope)

    def extend(self, key: Hashable, envelopes: list[Envelope]) -> None:
        if envelopes:
            self.outbox(key).extend(envelopes)

    def flush(self) -> None:
        self._flush_scheduled = False
        for key, pending in self.outboxes.items():
            if pending:
                for start in range(0, len(pending), MAX_BATCH):
                    self._send_frame(key, pack_frame(pending[start : start + MAX_BATCH]))
                pending.clear()

    def _send_frame(self, key: Hashable, frame: bytes) -> None:
        backlog = self.backlog.get(key)
        if backlog:
            backlog.append(frame)
            return
        try:
            self.peers[key].send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.backlog.setdefault(key, []).append(frame)
            if self.pause_for is not None and self.pause_for(key):
                self.pause_reading("backlog")
            self.loop.call_later(RETRY_SECONDS, self._retry_backlog)

    def _retry_backlog(self) -> None:
        for key, frames in list(self.backlog.items()):
            sock = self.peers[key]
            while frames:
                try:
                    sock.send(frames[0], zmq.NOBLOCK)
                except zmq.Again:
                    break
                frames.pop(0)
            if not frames:
                del self.backlog[key]
        if self.backlog:
            self.loop.call_later(RETRY_SECONDS, self._retry_backlog)
        else:
            self.resume_reading("backlog")
            if self.on_decongested is not None:
                self.on_decongested()

    @property
    def congested(self) -> bool:
        return bool(self.backlog)

    # --- receiving -----------------------------------------------------------------------
    def pause_reading(self, reason: str) -> None:
        """Stop taking envelopes from the inbox until every reason is lifted."""
        self._paused_by.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self._paused_by:
            self._paused_by.discard(reason)
            if not self._paused_by:
                self._schedule_drain()

    def _on_readable(self) -> None:
        if not self._paused_by:
            self._drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        inbox = self.inbox
        for _ in range(FRAMES_PER_PASS):
            if self._paused_by:
                return
            try:
                frame = inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                envelopes = unpack_frame(frame)
            except Exception:  # a corrupt frame must not stop the process
                self.malformed_frames += 1
                log.exception("dropping an undecodable frame (%d bytes)", len(frame))
                continue
            try:
                self.on_envelopes(envelopes)
            except Exception:
                # The dispatch boundary of every process: a bug met by one
                # envelope is logged with its traceback and counted, and the
                # process goes on serving everyone else.
                self.handler_errors += 1
                log.exception("error while handling a frame of %d envelopes", len(envelopes))
        # More may be waiting: the edge-triggered FD will not fire again for it.
        self._schedule_drain()

    def close(self) -> None:
        self.flush()
        if self.backlog:
            self._retry_backlog()
        with contextlib.suppress(Exception):  # the loop may already be closed at shutdown
            self.loop.remove_reader(self.inbox.getsockopt(zmq.FD))
        self.inbox.close(0)
        for sock in self.peers.values():
            sock.close()
