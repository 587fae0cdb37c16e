"""ZeroMQ plumbing shared by every process: PULL inboxes, one PUSH per peer,
frames batched per peer per event-loop pass, and every pipe bounded in bytes.

Frames: a msgpack array `[FRAME_VERSION, sender, incarnation, credit,
[envelope...]]` (see flockmq/envelopes.py), at most MAX_BATCH envelopes and,
unless one envelope alone is larger, MAX_FRAME_BYTES bytes. Between a
cluster's hosts every inbox and pipe is CURVE (`curve`: flockmq/curve.py),
so a frame comes from a process of the cluster.

Bytes, not frames, bound a pipe. ZeroMQ's high-water mark counts messages, and
a frame can carry anything from 10 bytes to megabytes, so each sender counts
the bytes it sent to a peer that the peer has not yet reported handled
(`in_flight`); past `pipe_bytes` further frames wait in the sender's backlog.
The receiver reports what it handled in credit frames (no envelopes) once a
quarter of `pipe_bytes` is due. What a pipe holds (ZeroMQ's queues, the
kernel's buffer) is thus at most `pipe_bytes` plus one frame. When a peer
restarts (a frame from it carries a new incarnation), what was sent to its
previous incarnation no longer counts, and `on_peer_restarted(key)` tells the
process (which resends what the peer kept for it: its $SYS counters to a
restarted router, flockmq/runtime_process.py). A peer that moved to another
endpoint (a cluster's shard taken over by another node: `repoint`) is
treated the same way: what its old endpoint was sent is lost.

A peer on a node declared dead (a cluster's router, `peer_down`, from its
supervisor's ROUTERS_LIVE: flockmq/app/routers_live.py) is sent nothing:
what ZeroMQ queued for it, its backlog and its in-flight count are dropped,
and what is sent to it later is dropped too (counted in `dropped_frames`),
so a dead peer's full pipe never makes this process `congested`. Any frame
from it (it came back: a new incarnation's ROUTER_UP, or a healed link), or
`peer_up`, ends that; the process resyncs it as any restarted peer.

Who waits for whom (no deadlock in the cycle acceptor -> worker -> router ->
acceptor): routers and workers read two inboxes. The core inbox (from the
router and workers, and credit from acceptors) is always read; the work inbox
(what acceptors send: new work) is paused while this process has a backlog
towards any peer. Acceptors read their one inbox always (a slow client is the
connection's problem, never its acceptor's: see frontend/connection.py) and
stop reading client sockets while they have a backlog (`congested`). So new
work waits at the edge, and every process keeps draining what is already
inside.

Connection set-up and teardown may wait for company (`LINGER_KINDS`): in a
connect storm each CONNECT, CONNACK and CLOSED would otherwise cost a frame,
and a frame costs both processes a wake-up of ZeroMQ's I/O thread and of
their own. Such an envelope, sent less than LINGER seconds after the previous
one, waits up to LINGER for others (anything else sent meanwhile takes it
along at once); one that comes alone, as on an idle broker, goes at once. No
message (PUBLISH, acknowledgement, delivery) ever waits. A CLOSED may wait
up to CLOSED_LINGER: no client waits for it (its client is gone), so in a
storm it rides in the frame of the next CONNECT's flush instead of costing
a frame of its own (a will or the session's end comes a few ms later).

LINGER is 2 ms: in a storm a CONNACK comes at most about 4 ms later than it
would (the CONNECT's wait and the CONNACK's), nothing when connections come
less often than one per LINGER. Measured (connects-passwords, native
generator, flockmq only, alternating builds, one run each): broker CPU per
connect 234-314 us with 1 ms, 191-203 with 2 ms, 149-205 with 4 ms;
connects/s 5.0-6.4k, 7.1-7.5k, 6.6-8.3k.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import msgpack
import zmq

from flockmq.curve import CurveKeys, bind_curve, connect_curve
from flockmq.envelopes import FRAME_VERSION, Envelope, Kind, Wire

log = logging.getLogger("flockmq.bus")

# ZeroMQ's own limit, in frames; the byte limit (pipe_bytes) normally binds
# first. Not lower: libzmq returns send credit lazily, and at HWM 64 a lightly
# loaded pipe stalled for 20 ms per message (measured).
HWM = 1000
MAX_BATCH = 256  # envelopes per frame
MAX_FRAME_BYTES = 256 * 1024  # a frame is split below this (one envelope may exceed it)
FRAMES_PER_PASS = 256
RETRY_SECONDS = 0.002
LINGER = 0.002
LINGER_KINDS = frozenset({Kind.CONNECT, Kind.CONNACK, Kind.CLOSED, Kind.ONLINE})
CLOSED_LINGER = 0.005
_CLOSED = int(Kind.CLOSED)
DEFAULT_PIPE_BYTES = 4 * 1024 * 1024

_packer = msgpack.Packer(use_bin_type=True)
# As plain ints: pyzmq's enum members cost ~2 us more per getsockopt call.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)


class _Inbox:
    __slots__ = ("drain_scheduled", "pausable", "sock")

    def __init__(self, sock: zmq.Socket[Any], pausable: bool) -> None:
        self.sock = sock
        self.pausable = pausable
        self.drain_scheduled = False


class Bus:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        me: int,
        incarnation: int,
        on_envelopes: Callable[[list[Wire]], None],
        on_decongested: Callable[[], None] | None = None,
        pipe_bytes: int = DEFAULT_PIPE_BYTES,
        on_peer_restarted: Callable[[Hashable], None] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        """`me`: this process's id on the bus (see Config.process_id), sent
        with every frame so that receivers know whom to credit.
        `on_peer_restarted(key)`: a frame came from a new incarnation of the
        peer connected as `key` (not for a peer's first start, incarnation 0),
        before the frame's envelopes are handled. `curve`: a cluster
        node's keys: every tcp:// inbox and pipe is CURVE (flockmq/curve.py)."""
        self.loop = loop
        self.me = me
        self.incarnation = incarnation
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.on_envelopes = on_envelopes
        self.on_decongested = on_decongested
        self.on_peer_restarted = on_peer_restarted
        self.pipe_bytes = pipe_bytes
        self.curve = curve
        self.credit_threshold = max(1, pipe_bytes // 4)
        self.inboxes: list[_Inbox] = []
        self.peers: dict[Hashable, zmq.Socket[Any]] = {}
        self._endpoints: dict[Hashable, str] = {}
        self.outboxes: dict[Hashable, list[Envelope]] = {}
        self.in_flight: dict[Hashable, int] = {}  # bytes sent, not yet credited
        self.backlog: dict[Hashable, deque[bytes]] = {}
        self.backlog_bytes = 0
        self.key_of: dict[int, Hashable] = {}  # peer id -> key
        self.control: dict[int, zmq.Socket[Any]] = {}  # where credit for a peer goes
        self.peer_incarnations: dict[int, int] = {}
        self.due: dict[int, int] = {}  # bytes handled per sender, not yet credited
        self._credit_blocked: set[int] = set()
        self._repointed: set[int] = set()  # peer ids whose next incarnation is a new process's
        self.repoints = 0
        self.down: set[Hashable] = set()  # peers on a dead node: sent nothing (peer_down)
        self.dropped_frames = 0
        self._flush_scheduled = False
        self._retry_scheduled = False
        self._lingering = False  # a flush is due at _linger_until (see the module's docstring)
        self._linger_until = 0.0
        self._linger_timer = 0  # which call_later of _end_linger is the live one
        self._last_linger_kind = -LINGER  # when one of LINGER_KINDS was last sent
        self._paused_by: set[str] = {"start"}
        self.malformed_frames = 0
        # envelopes through this process, for `flockmq status` (flockmq/control.py)
        self.envelopes_received = 0
        self.envelopes_sent = 0
        # frames through this process (credit-only ones included): envelopes
        # per frame is how well a hop batches
        self.frames_received = 0
        self.frames_sent = 0

    # --- wiring ---------------------------------------------------------------------------
    def bind(self, endpoint: str, *, pausable: bool) -> None:
        """An inbox. A pausable one is not read while this process has a
        backlog (it brings new work); the others are always read."""
        sock = self.ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.LINGER, 0)
        bind_curve(sock, endpoint, self.curve)
        self.inboxes.append(_Inbox(sock, pausable))

    def connect(
        self, key: Hashable, endpoint: str, peer_id: int, control_endpoint: str | None = None
    ) -> None:
        """A peer: frames for `key` go to `endpoint`; credit for what the peer
        sends us goes to `control_endpoint` (an inbox of the peer that it
        always reads), or to `endpoint` when that is one."""
        sock = self._push(endpoint)
        self.peers[key] = sock
        self._endpoints[key] = endpoint
        self.outboxes[key] = []
        self.in_flight[key] = 0
        self.key_of[peer_id] = key
        self.control[peer_id] = sock if control_endpoint is None else self._push(control_endpoint)

    def repoint(self, key: Hashable, endpoint: str, control_endpoint: str | None = None) -> None:
        """The peer `key` now lives at `endpoint` (a cluster's shard moved to
        another node, flockmq/shard_directory.py): its PUSH is closed, and
        what ZeroMQ still queued for the old endpoint is dropped, counted
        as lost exactly as for a restarted peer (`in_flight` zeroed,
        `on_peer_restarted(key)` called, so the process's resend logic
        runs); frames still in this process's backlog for `key` go to the
        new endpoint. Credit for what the peer sends goes to
        `control_endpoint`, or `endpoint`, as in `connect`. The peer's next
        incarnation number is taken as the new process's, not as a
        restart."""
        old = self.peers[key]
        peer_ids = [pid for pid, k in self.key_of.items() if k == key]
        for pid in peer_ids:
            control = self.control.get(pid)
            if control is not None and control is not old:
                control.close(0)
        old.close(0)
        sock = self._push(endpoint)
        self.peers[key] = sock
        self._endpoints[key] = endpoint
        for pid in peer_ids:
            self.control[pid] = sock if control_endpoint is None else self._push(control_endpoint)
            self.peer_incarnations.pop(pid, None)
            self._repointed.add(pid)
        self.in_flight[key] = 0
        self.repoints += 1
        if self.on_peer_restarted is not None:
            self.on_peer_restarted(key)
        if key in self.backlog:
            self._drain_backlog(key)

    def peer_down(self, key: Hashable) -> None:
        """The peer `key` is on a dead node: drop what is queued or counted
        in flight for it, and what is sent to it until it is back (a frame
        from it, or `peer_up`). Its PUSH is made again at the same endpoint,
        which drops what ZeroMQ queued: a returning peer must not read a
        stale burst ahead of its resync."""
        if key in self.down or key not in self.peers:
            return
        self.down.add(key)
        old = self.peers[key]
        old.close(0)
        self.peers[key] = sock = self._push(self._endpoints[key])
        for pid, k in self.key_of.items():
            if k == key and self.control.get(pid) is old:
                self.control[pid] = sock
        self.in_flight[key] = 0
        self.outboxes[key].clear()
        frames = self.backlog.pop(key, None)
        if frames:
            self.dropped_frames += len(frames)
            self.backlog_bytes -= sum(map(len, frames))
            if not self.backlog:
                self.resume_reading("backlog")
                if self.on_decongested is not None:
                    self.on_decongested()

    def peer_up(self, key: Hashable) -> None:
        """The peer `key` is reachable again: frames go to it again."""
        self.down.discard(key)

    def _push(self, endpoint: str) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.LINGER, 2000)
        connect_curve(sock, endpoint, self.curve)
        return sock

    def start(self) -> None:
        for inbox in self.inboxes:
            fd: int = inbox.sock.getsockopt(zmq.FD)  # type: ignore[assignment]
            self.loop.add_reader(fd, self._on_readable, inbox)  # edge-triggered: drain all
        self._paused_by.discard("start")
        for inbox in self.inboxes:
            self._schedule_drain(inbox)

    # --- sending ------------------------------------------------------------------------
    def outbox(self, key: Hashable) -> list[Envelope]:
        """The list to append envelopes for `key` to; sent at the end of this pass."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)
        return self.outboxes[key]

    def send(self, key: Hashable, envelope: Envelope) -> None:
        kind = envelope[0]
        if self._flush_scheduled or (
            kind in LINGER_KINDS and self._linger(CLOSED_LINGER if kind == _CLOSED else LINGER)
        ):
            self.outboxes[key].append(envelope)
        else:
            self.outbox(key).append(envelope)

    def extend(self, key: Hashable, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        lingers = all(e[0] in LINGER_KINDS for e in envelopes)
        if self._flush_scheduled or (lingers and self._linger(LINGER)):
            self.outboxes[key].extend(envelopes)
        else:
            self.outbox(key).extend(envelopes)

    def _linger(self, seconds: float) -> bool:
        """Whether an envelope of LINGER_KINDS may wait for company (and a
        flush is due within `seconds`): only if another came shortly before.
        An earlier deadline than the one waited for brings the flush forward."""
        now = self.loop.time()
        recent = now - self._last_linger_kind < LINGER
        self._last_linger_kind = now
        if not recent:
            return False
        until = now + seconds
        if not self._lingering or until < self._linger_until:
            self._lingering = True
            self._linger_until = until
            self._linger_timer += 1  # the timer armed before, if any, is moot
            self.loop.call_later(seconds, self._end_linger, self._linger_timer)
        return True

    def _end_linger(self, timer: int) -> None:
        if timer != self._linger_timer:
            return  # an earlier deadline replaced this one
        self._lingering = False
        if not self._flush_scheduled:
            self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        for key, pending in self.outboxes.items():
            if pending:
                self.envelopes_sent += len(pending)
                for start in range(0, len(pending), MAX_BATCH):
                    self._send_chunk(key, pending[start : start + MAX_BATCH])
                pending.clear()

    def _send_chunk(self, key: Hashable, chunk: list[Envelope]) -> None:
        frame: bytes = _packer.pack([FRAME_VERSION, self.me, self.incarnation, 0, chunk])
        if len(frame) > MAX_FRAME_BYTES and len(chunk) > 1:
            half = len(chunk) // 2  # large messages: smaller frames, so pipes stay bounded
            self._send_chunk(key, chunk[:half])
            self._send_chunk(key, chunk[half:])
            return
        self._send_frame(key, frame)

    def _send_frame(self, key: Hashable, frame: bytes) -> None:
        if self.down and key in self.down:
            self.dropped_frames += 1
            return
        backlog = self.backlog.get(key)
        if backlog:
            backlog.append(frame)
            self.backlog_bytes += len(frame)
            return
        if not self._try_send(key, frame):
            self.backlog[key] = deque([frame])
            self.backlog_bytes += len(frame)
            self.pause_reading("backlog")

    def _try_send(self, key: Hashable, frame: bytes) -> bool:
        """Send now if the pipe's byte budget and ZeroMQ allow it. A frame
        larger than the whole budget goes when nothing else is in flight."""
        in_flight = self.in_flight[key]
        if in_flight and in_flight + len(frame) > self.pipe_bytes:
            return False  # waits for credit (see _on_frame)
        try:
            self.peers[key].send(frame, _NOBLOCK)
        except zmq.Again:
            self._schedule_retry()
            return False
        self.frames_sent += 1
        self.in_flight[key] = in_flight + len(frame)
        return True

    def _drain_backlog(self, key: Hashable) -> None:
        frames = self.backlog.get(key)
        if not frames:
            return
        while frames and self._try_send(key, frames[0]):
            self.backlog_bytes -= len(frames.popleft())
        if not frames:
            del self.backlog[key]
            if not self.backlog:
                self.resume_reading("backlog")
                if self.on_decongested is not None:
                    self.on_decongested()

    def _schedule_retry(self) -> None:
        if not self._retry_scheduled:
            self._retry_scheduled = True
            self.loop.call_later(RETRY_SECONDS, self._retry)

    def _retry(self) -> None:
        """ZeroMQ's queue was full (its HWM), or a credit frame could not go."""
        self._retry_scheduled = False
        for key in list(self.backlog):
            self._drain_backlog(key)
        for sender in list(self._credit_blocked):
            self._send_credit(sender)

    @property
    def congested(self) -> bool:
        return bool(self.backlog)

    # --- credit ----------------------------------------------------------------------------
    def _send_credit(self, sender: int) -> None:
        due = self.due.get(sender, 0)
        sock = self.control.get(sender)
        if not due or sock is None:
            self._credit_blocked.discard(sender)
            return
        try:
            sock.send(
                _packer.pack([FRAME_VERSION, self.me, self.incarnation, due, []]), zmq.NOBLOCK
            )
        except zmq.Again:
            self._credit_blocked.add(sender)
            self._schedule_retry()
            return
        self.frames_sent += 1
        self._credit_blocked.discard(sender)
        self.due[sender] = 0

    def _on_credit(self, sender: int, incarnation: int, credit: int) -> None:
        key = self.key_of.get(sender)
        if key is None:
            return
        if self.down and key in self.down:
            self.down.discard(key)  # it is back (see peer_down)
        last = self.peer_incarnations.get(sender)
        if last != incarnation:
            self.peer_incarnations[sender] = incarnation
            if sender in self._repointed:
                self._repointed.discard(sender)  # repoint() already counted it lost
            elif last is not None or incarnation > 0:
                # A restarted peer: what its previous incarnation was sent is
                # gone with it (or will be credited by the new one, which at
                # worst over-admits one pipe's worth once).
                self.in_flight[key] = 0
                if self.on_peer_restarted is not None:
                    self.on_peer_restarted(key)
        if credit:
            left = self.in_flight[key] - credit
            self.in_flight[key] = left if left > 0 else 0
        if key in self.backlog:
            self._drain_backlog(key)

    # --- receiving -----------------------------------------------------------------------
    def pause_reading(self, reason: str) -> None:
        """Stop reading the pausable inboxes until every reason is lifted."""
        self._paused_by.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self._paused_by:
            self._paused_by.discard(reason)
            if not self._paused_by:
                for inbox in self.inboxes:
                    if inbox.pausable:
                        self._schedule_drain(inbox)

    def _on_readable(self, inbox: _Inbox) -> None:
        self._drain(inbox)

    def _schedule_drain(self, inbox: _Inbox) -> None:
        if not inbox.drain_scheduled:
            inbox.drain_scheduled = True
            self.loop.call_soon(self._drain, inbox)

    def _paused(self, inbox: _Inbox) -> bool:
        paused = self._paused_by
        return bool(paused) and (inbox.pausable or "start" in paused)

    def _drain(self, inbox: _Inbox) -> None:
        inbox.drain_scheduled = False
        sock = inbox.sock
        for _ in range(FRAMES_PER_PASS):
            if self._paused(inbox):
                # ZeroMQ's FD stays readable until the socket's pending
                # commands are processed: do that (it receives nothing), or
                # the loop wakes up for this inbox again at once, forever
                # while it is paused. resume_reading() drains it.
                sock.getsockopt(_EVENTS)
                return
            try:
                frame = sock.recv(_NOBLOCK)
            except zmq.Again:
                return
            self._on_frame(frame)
            # Asked, not tried: a recv that finds nothing raises zmq.Again,
            # and building that exception cost a good part of what a frame
            # of the connect path costs to handle (once per wake-up of each
            # process). Asking processes ZeroMQ's pending commands as that
            # recv did, so the edge-triggered FD fires for the next frame.
            events: int = sock.getsockopt(_EVENTS)  # type: ignore[assignment]
            if not events & _POLLIN:
                return
        # More may be waiting: the edge-triggered FD will not fire again for it.
        self._schedule_drain(inbox)

    def _on_frame(self, frame: bytes) -> None:
        self.frames_received += 1
        try:
            version, sender, incarnation, credit, envelopes = msgpack.unpackb(
                frame, raw=False, strict_map_key=False, use_list=True
            )
            if version != FRAME_VERSION or not isinstance(envelopes, list):
                raise ValueError(f"frame version {version!r}")
            self._on_credit(sender, incarnation, credit)
        except Exception:  # a corrupt frame must not stop the process
            self.malformed_frames += 1
            log.exception("dropping an undecodable frame (%d bytes)", len(frame))
            return
        if envelopes:
            self.envelopes_received += len(envelopes)
            # Roles catch a failing envelope themselves (flockmq/isolation.py);
            # this is the last line of defence for a bug in a role's loop.
            try:
                self.on_envelopes(envelopes)
            except Exception:
                log.exception("error while handling a frame of %d envelopes", len(envelopes))
            due = self.due.get(sender, 0) + len(frame)
            self.due[sender] = due
            if due >= self.credit_threshold:
                self._send_credit(sender)

    def close(self) -> None:
        self.flush()
        if self.backlog:
            self._retry()
        for inbox in self.inboxes:
            with contextlib.suppress(Exception):  # the loop may already be closed at shutdown
                self.loop.remove_reader(inbox.sock.getsockopt(zmq.FD))  # type: ignore[arg-type]
            inbox.sock.close(0)
        for sock in {*self.peers.values(), *self.control.values()}:
            sock.close()
