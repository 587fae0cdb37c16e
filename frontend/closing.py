"""Connections closing in an acceptor, each aborted if it is not gone
CLOSE_GRACE seconds after its close (a client that stopped reading never
lets a close's flush complete: frontend/connection.py).

One timer for all of them, not one per connection: every connection is
closed once, and a timer handle each (made, kept in the loop's heap for a
second, fired, then found to have nothing to do for nearly every one) cost a
connect storm's acceptor more than the rest of its close. The grace is the
same for every connection, so the order they closed in is the order they
are due in: a dict in insertion order, its first entry the next due. A
connection leaves it when its transport is gone (`gone`), so it is not kept
alive for the grace, and the timer, armed only while some connection is
closing, fires about once per CLOSE_GRACE under any rate of closes.

Invariant: every connection in `due` had its transport's close called at
the time recorded minus CLOSE_GRACE, and is aborted at that time unless it
is gone first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import ClientConnection

CLOSE_GRACE = 1.0  # seconds a closing connection may flush before it is aborted


class Closing:
    __slots__ = ("armed", "due", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[ClientConnection, float] = {}  # in the order they closed
        self.armed = False

    def closed(self, conn: ClientConnection) -> None:
        """`conn`'s transport was told to close: abort it after CLOSE_GRACE
        (a second close keeps the first one's time)."""
        self.due.setdefault(conn, self.loop.time() + CLOSE_GRACE)
        if not self.armed:
            self.armed = True
            self.loop.call_later(CLOSE_GRACE, self._abort_overdue)

    def gone(self, conn: ClientConnection) -> None:
        """`conn`'s transport is gone: nothing to abort."""
        self.due.pop(conn, None)

    def _abort_overdue(self) -> None:
        self.armed = False
        due = self.due
        now = self.loop.time()
        while due:
            conn = next(iter(due))
            at = due[conn]
            if at > now:
                self.armed = True
                self.loop.call_later(at - now, self._abort_overdue)
                return
            del due[conn]
            conn.abort_unless_closed()
