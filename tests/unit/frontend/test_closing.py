"""The closing connections of an acceptor (frontend/closing.py): each
aborted CLOSE_GRACE after its close unless gone first, with one timer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from flockmq.frontend.closing import CLOSE_GRACE, Closing


class Loop:
    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], object]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        self.timers.append((self.now + delay, callback))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while due := [t for t in self.timers if t[0] <= self.now]:
            for timer in due:
                self.timers.remove(timer)
                timer[1]()


class Conn:
    def __init__(self) -> None:
        self.aborted = 0

    def abort_unless_closed(self) -> None:
        self.aborted += 1


def make() -> tuple[Loop, Closing]:
    loop = Loop()
    return loop, Closing(cast(Any, loop))


def test_a_connection_not_gone_is_aborted_after_the_grace() -> None:
    loop, closing = make()
    conn = Conn()
    closing.closed(cast(Any, conn))
    loop.advance(CLOSE_GRACE - 0.01)
    assert conn.aborted == 0
    loop.advance(0.01)
    assert conn.aborted == 1
    assert not closing.due
    loop.advance(10)
    assert conn.aborted == 1


def test_a_connection_gone_in_time_is_not_aborted_nor_kept() -> None:
    loop, closing = make()
    conn = Conn()
    closing.closed(cast(Any, conn))
    closing.gone(cast(Any, conn))
    assert not closing.due  # not kept alive for the grace
    loop.advance(2 * CLOSE_GRACE)
    assert conn.aborted == 0


def test_each_is_aborted_at_its_own_time_with_one_timer_armed() -> None:
    loop, closing = make()
    first, second, third = Conn(), Conn(), Conn()
    closing.closed(cast(Any, first))
    loop.advance(0.3)
    closing.closed(cast(Any, second))
    closing.closed(cast(Any, second))  # closed twice: its first time holds
    loop.advance(0.3)
    closing.closed(cast(Any, third))
    closing.gone(cast(Any, third))
    assert len(loop.timers) == 1
    loop.advance(0.4)  # 1.0 after the first
    assert (first.aborted, second.aborted) == (1, 0)
    loop.advance(0.29)
    assert second.aborted == 0
    loop.advance(0.01)
    assert (first.aborted, second.aborted, third.aborted) == (1, 1, 0)
    assert not loop.timers and not closing.armed
    closing.closed(cast(Any, third))  # armed again by the next close
    assert len(loop.timers) == 1
