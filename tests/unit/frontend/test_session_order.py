"""The order of what one session sends (frontend/ordering.py) and what it
sends again when its worker restarts, seen from the session alone."""

from __future__ import annotations

from flockmq.envelopes import Kind
from flockmq.frontend.codec import Publish, Subscribe, Subscription
from flockmq.frontend.codec.packets import Pubrel, Unsubscribe
from flockmq.frontend.states import CONNECTED

from .sessions import connected

SUB = Subscribe(1, (Subscription("t", 0),))


def kinds(envelopes: list[list[object]]) -> list[object]:
    return [e[0] for e in envelopes]


def test_subscribe_behind_a_route_holds_until_fenced() -> None:
    c = connected()
    c.send(Publish("t", b"x"), SUB)
    router, workers = c.host.take()
    assert kinds(router) == [Kind.ROUTE, Kind.FENCE] and workers == []
    assert isinstance(c.session.held, Subscribe) and not c.link.reading
    assert c.host.holding == {c.session}
    c.host.fences.answered(router[1][2])
    c.session.on_fenced()
    assert kinds(c.host.take()[1]) == [Kind.SUBSCRIBE]
    assert c.session.held is None and c.link.reading and not c.host.holding


def test_a_publish_behind_an_unanswered_subscribe_waits_for_its_suback() -> None:
    c = connected()
    c.send(SUB, Publish("t", b"after"))
    assert c.host.router == [] and isinstance(c.session.held, Publish)
    c.session.send_suback(1, [0])
    assert [e[3] for e in c.host.router] == [b"after"] and c.link.reading


def test_a_hold_never_answered_is_let_go_after_the_timeout() -> None:
    c = connected()
    c.send(SUB, Publish("t", b"after"))
    c.session.check_held(c.host.now + 10, 10.0)
    assert c.host.router == []
    c.session.check_held(c.host.now + 10.1, 10.0)
    assert kinds(c.host.router) == [Kind.ROUTE]
    assert c.host.counters["ordering_holds_timed_out"] == 1


def test_a_restarted_worker_gets_the_persistent_session_and_what_it_held() -> None:
    c = connected(clean_start=False)
    c.session.on_worker_up(1, restarted=False)  # the first WORKER_UP: nothing again
    assert c.host.take() == ([], []) and c.session.worker_incarnation == 1
    c.send(Unsubscribe(5, ("t",)), Pubrel(9))
    c.host.take()
    c.session.on_worker_up(2, restarted=True)
    _, workers = c.host.take()
    assert kinds(workers) == [Kind.CONNECT, Kind.UNSUBSCRIBE, Kind.PUBREL_IN]
    assert workers[0][3] is False  # clean_start: resume the stored session
    assert c.session.state == CONNECTED and c.session.worker_incarnation == 2


def test_a_restarted_worker_closes_a_clean_session() -> None:
    c = connected(5)
    c.session.on_worker_up(1, restarted=False)
    c.session.on_worker_up(2, restarted=True)
    assert c.link.closed and c.host.counters["closed_for_worker_restart"] == 1
