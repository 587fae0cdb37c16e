"""A session's subscriptions, in-flight messages and inbound QoS 2 state are
one shared empty dict until it has one (memory per idle connection): adding
goes through own_*, which gives the session a dict of its own, and writing
to the shared one fails loudly."""

from __future__ import annotations

import pytest

from flockmq.workers.session import EMPTY_TABLE, InboundQos2, Session, Subscription


def test_idle_sessions_share_one_empty_table_each() -> None:
    a, b = Session("a"), Session("b")
    for session in (a, b):
        assert session.subscriptions is EMPTY_TABLE
        assert session.inflight is EMPTY_TABLE
        assert session.inbound_qos2 is EMPTY_TABLE


def test_what_a_session_adds_is_its_own() -> None:
    a, b = Session("a"), Session("b")
    a.own_subscriptions()["t/#"] = Subscription(1)
    a.own_inbound_qos2()[7] = InboundQos2(1, 42)
    assert list(a.subscriptions) == ["t/#"] and list(a.inbound_qos2) == [7]
    assert not b.subscriptions and not b.inbound_qos2 and not EMPTY_TABLE
    assert a.own_subscriptions() is a.subscriptions  # made once, then kept


def test_writing_to_the_shared_table_fails() -> None:
    with pytest.raises(AssertionError):
        Session("a").subscriptions["t"] = Subscription(0)
    with pytest.raises(AssertionError):
        Session("a").inflight.setdefault(1, None)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        Session("a").inbound_qos2.update({})
    assert not EMPTY_TABLE
