"""frontend/acceptor_core.py: the acceptor driven by the runtime every core
shares (flockmq/runtime.py): frames with each envelope isolated, timers
through next_timer/handle_timer, and nothing held for a commit."""

from __future__ import annotations

import pytest

from flockmq import envelopes as env
from flockmq.envelopes import Wire
from flockmq.frontend.acceptor import Acceptor
from flockmq.frontend.acceptor_core import TIMER_INTERVAL, AcceptorCore
from flockmq.runtime import NoCommits
from flockmq.runtime_process import CoreProcess

from .test_ordering import connected


def test_an_unknown_kind_is_counted_and_the_frame_goes_on(
    process: CoreProcess, acceptor: Acceptor
) -> None:
    conn = connected(acceptor)
    frame: list[Wire] = [[999, "junk"], [env.Kind.SEND_UNSUBACK, conn.conn_id, 5, [0]], [None]]
    process.runner.feed(frame, 100.0)
    assert acceptor.counters["unknown_envelopes"] == 2
    assert acceptor.counters["envelope_errors"] == 0
    assert b"\xb0" in b"".join(conn.pending)  # the UNSUBACK in between was written


def test_timers_run_once_per_tick_through_the_runner(
    process: CoreProcess, acceptor: Acceptor, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []
    monkeypatch.setattr(acceptor, "run_timers", runs.append)
    core = acceptor.core
    assert isinstance(core, AcceptorCore)
    process.runner.tick(100.0)
    process.runner.tick(100.1)  # not due yet
    process.runner.tick(100.0 + TIMER_INTERVAL - 0.01)  # a tick a little early: due
    assert runs == [100.0, 100.0 + TIMER_INTERVAL - 0.01]


def test_an_acceptor_holds_nothing_for_a_commit(acceptor: Acceptor) -> None:
    assert acceptor.core.take_durable() == ([], [])
    with pytest.raises(AssertionError):
        NoCommits().release([], lambda error: None)
