"""frontend/acceptor_core.py: the acceptor driven by the runtime every core
shares (flockmq/runtime.py): frames with each envelope isolated, timers
through next_timer/handle_timer, and nothing held for a commit."""

from __future__ import annotations

import pytest

from flockmq import envelopes as env
from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.acceptor_core import TIMER_INTERVAL, AcceptorCore, NoCommits

from .test_ordering import acceptor, connected

__all__ = ["acceptor"]  # the fixture


def test_an_unknown_kind_is_counted_and_the_frame_goes_on(acceptor: Acceptor) -> None:
    conn = connected(acceptor)
    acceptor.on_envelopes([[999, "junk"], [env.Kind.SEND_UNSUBACK, conn.conn_id, 5, [0]], [None]])
    assert acceptor.counters["unknown_envelopes"] == 2
    assert acceptor.counters["envelope_errors"] == 0
    assert b"\xb0" in b"".join(conn.pending)  # the UNSUBACK in between was written


def test_timers_run_once_per_tick_through_the_runner(
    acceptor: Acceptor, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []
    monkeypatch.setattr(acceptor, "run_timers", runs.append)
    core = acceptor.core
    assert isinstance(core, AcceptorCore)
    acceptor.runner.tick(100.0)
    acceptor.runner.tick(100.1)  # not due yet
    acceptor.runner.tick(100.0 + TIMER_INTERVAL - 0.01)  # a tick a little early: due
    assert runs == [100.0, 100.0 + TIMER_INTERVAL - 0.01]


def test_an_acceptor_holds_nothing_for_a_commit(acceptor: Acceptor) -> None:
    assert acceptor.core.take_durable() == ([], [])
    with pytest.raises(AssertionError):
        NoCommits().release([], None)
