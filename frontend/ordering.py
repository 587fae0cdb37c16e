"""Fences: what one connection sends takes effect in the order it was sent,
whatever path each packet takes between the processes (sans-IO).

A QoS 0/1 PUBLISH goes from the acceptor straight to the router (ROUTE);
SUBSCRIBE, UNSUBSCRIBE, QoS 2 PUBLISH and the connection's end (CLOSED: a
will, a session end) go to the session's worker, which tells the router
later. Two pipes, so the router could see a SUBSCRIBE before the PUBLISH
sent ahead of it (a live copy instead of SUBACK then the retained one). The
pipe from this acceptor to the router is FIFO (one ZeroMQ PUSH, one inbox at
the router), so:

- ROUTE then SUBSCRIBE/UNSUBSCRIBE/CLOSED: when the connection sent ROUTEs
  the router may not have handled yet, a FENCE `[FENCE, acceptor, seq]` goes
  on that pipe and the packet waits for FENCED (the router answers it after
  everything before it). Every ROUTE is numbered (`sent`); FENCED `seq` says
  that everything numbered up to `seq` was handled (`done`), for every
  connection of this acceptor, so one that published before the last
  answered fence needs none. A connection that only publishes never pays.
- SUBSCRIBE/UNSUBSCRIBE then a QoS 0/1 PUBLISH: the publish waits until the
  connection has no SUBSCRIBE/UNSUBSCRIBE unanswered (the worker sends
  SUBACK/UNSUBACK only once the router has them).

While a packet waits, the connection reads nothing more (its bytes stay in
the socket, or in its decoder: one read at most), so holding is bounded by
the client's own flow. A fence the router never answers (it died; ROUTER_UP
sends every open fence again after the publishes being retried) or a hold
past `timeout` is let go, counted, rather than waited for forever.
"""

from __future__ import annotations

from typing import Protocol

from flockmq.envelopes import Fence, Kind


class Fenced(Protocol):
    """What waits for a fence (a connection)."""

    fence_seq: int

    def on_fenced(self) -> None: ...


class Fences:
    def __init__(self, acceptor: int) -> None:
        self.acceptor = acceptor
        self.sent = 0  # numbers envelopes sent to the router (ROUTEs and FENCEs)
        self.done = 0  # the router has handled every envelope numbered up to this
        self.open: dict[int, tuple[Fenced, float]] = {}  # seq -> (waiter, since)

    def needed(self, last_routed: int) -> bool:
        """Whether a ROUTE numbered `last_routed` may still be unhandled."""
        return last_routed > self.done

    def fence(self, waiter: Fenced, now: float) -> Fence:
        """A FENCE for `waiter` (replacing one it already waits for)."""
        if waiter.fence_seq:
            self.open.pop(waiter.fence_seq, None)
        self.sent += 1
        seq = waiter.fence_seq = self.sent
        self.open[seq] = (waiter, now)
        return Fence(Kind.FENCE, self.acceptor, seq)

    def answered(self, seq: int) -> Fenced | None:
        """FENCED `seq`: the waiter to let go on, if any still waits for it."""
        self.done = max(self.done, seq)
        entry = self.open.pop(seq, None)
        if entry is None:
            return None
        waiter = entry[0]
        waiter.fence_seq = 0
        return waiter

    def overdue(self, now: float, timeout: float) -> list[Fenced]:
        """Waiters whose fence was not answered in `timeout`: given up on."""
        late = [seq for seq, (_, since) in self.open.items() if now - since > timeout]
        waiters = []
        for seq in late:
            waiter = self.open.pop(seq)[0]
            waiter.fence_seq = 0
            waiters.append(waiter)
        return waiters

    def refence(self, now: float) -> list[Fence]:
        """The router restarted: every open fence again, to the new one."""
        return [self.fence(waiter, now) for waiter, _ in list(self.open.values())]
