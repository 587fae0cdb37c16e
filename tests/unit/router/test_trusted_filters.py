"""The router trusts the filters it is given (issue 10 item 3): the acceptor's
codec and a worker loading stored subscriptions check them, the router never
parses them again. An invalid filter that reaches it anyway (a bug, a hostile
peer on the bus) is stored where it harms nobody and leaves no trace when
unsubscribed; a filter that is not even a string fails its envelope alone
(flockmq/isolation.py)."""

from __future__ import annotations

import pytest

from flockmq import envelopes as env
from flockmq.router.router import Router
from tests.unit.wire import wire

from .test_router import route, sub, take, targets_of

INVALID = ["", "a/#/b", "a#", "a+", "$share/g", "$share/g/", "$share//a", "$share/g+/a", "a\x00b"]


@pytest.mark.parametrize("bad", INVALID)
def test_an_invalid_filter_never_raises_and_unsubscribes_cleanly(bad: str) -> None:
    router = Router()
    sub(router, 0, "mallory", (bad, 1), ("c/d", 1))
    assert router.counters["envelope_errors"] == 0
    workers, _ = take(router)
    assert [e[0] for e in workers[0]] == [env.Kind.SUBSCRIBED]
    route(router, "c/d")
    workers, _ = take(router)
    assert [t[0] for t in targets_of(workers[0][0])] == ["mallory"]
    router.handle(wire(env.Unsub(env.Kind.UNSUB, "mallory", [bad, "c/d"], 0, 0, 0, [])))
    assert router.counters["envelope_errors"] == 0
    assert len(router.tree) == 0
    assert router.tree.count_nodes() == 0


def test_a_filter_that_is_not_a_string_fails_its_envelope_alone() -> None:
    router = Router()
    poisoned = [env.Kind.SUB, 0, "mallory", 8, 1, [[5, 1, False, False, True, None, True]], [1]]
    router.guard.handle_each(router.handle, [poisoned], 0.0)  # as the runtime feeds a frame
    assert router.counters["envelope_errors"] == 1
    sub(router, 0, "alice", ("a/b", 1))
    take(router)
    route(router, "a/b")
    workers, _ = take(router)
    delivered = [t[0] for out in workers.values() for d in out for t in targets_of(d)]
    assert delivered == ["alice"]
