"""flockmq/app/restarts.py with the times passed in: the backoff doubles
for quick exits up to its bound and starts over after a stable run; a
crash loop is said once (a warning), its later exits only at debug level,
and its end once, when a start has lived STABLE_SECONDS."""

from __future__ import annotations

import logging

from flockmq.app.restarts import LOOP_EXITS, STABLE_SECONDS, Restarts

MAX = 10.0


def test_quick_exits_back_off_up_to_the_bound_and_a_stable_run_starts_over() -> None:
    r = Restarts()
    delays = [r.exited(1.0, MAX)[0] for _ in range(10)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and delays[-1] == MAX
    assert r.exited(STABLE_SECONDS + 1, MAX)[0] == 0.1


def test_a_crash_loop_is_said_once_and_its_end_once() -> None:
    """A cluster node cut off from PostgreSQL: its workers exit at start,
    again and again."""
    r = Restarts()
    levels = [r.exited(2.0, MAX)[1] for _ in range(LOOP_EXITS + 20)]
    assert levels[: LOOP_EXITS - 1] == [logging.ERROR] * (LOOP_EXITS - 1)
    assert levels[LOOP_EXITS - 1] == logging.WARNING
    assert set(levels[LOOP_EXITS:]) == {logging.DEBUG}
    assert r.looping
    assert not r.running(5.0) and r.looping  # a start that has not lived long yet
    assert r.running(STABLE_SECONDS + 0.1)  # out of the loop: said once
    assert not r.running(STABLE_SECONDS + 5.0) and not r.looping
    assert r.exited(STABLE_SECONDS + 10.0, MAX) == (0.1, logging.ERROR)


def test_one_slow_exit_breaks_a_run_of_quick_ones() -> None:
    r = Restarts()
    for _ in range(LOOP_EXITS - 1):
        r.exited(1.0, MAX)
    r.exited(STABLE_SECONDS + 1.0, MAX)
    assert r.exited(1.0, MAX)[1] == logging.ERROR and not r.looping
