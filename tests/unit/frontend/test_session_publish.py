"""Inbound PUBLISH of one client session without sockets: topic aliases, ACL
denials, where each QoS goes, the durable acknowledgement of QoS 1/2
(frontend/confirmations.py) and its retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from flockmq.config import Config
from flockmq.envelopes import Kind
from flockmq.frontend.acl import load_acl
from flockmq.frontend.codec import (
    Disconnect,
    Puback,
    Publish,
    ReasonCode,
    Subscribe,
    Subscription,
)
from flockmq.frontend.codec.packets import Pubrec, Pubrel, Suback
from flockmq.frontend.confirmations import MAX_ATTEMPTS, Confirmations
from flockmq.frontend.topic_aliases import TopicAliases
from flockmq.sizes import message_size

from .sessions import CONN_ID, FakeHost, connected


def routed(route: list[object]) -> tuple[object, ...]:
    """(topic, payload, qos, reply) of a ROUTE."""
    return (route[2], route[3], route[4], route[7])


# --- where each QoS goes ------------------------------------------------------------------------
def test_qos0_goes_to_the_router_numbered() -> None:
    c = connected()
    checks = c.link.backpressure_checks
    c.send(Publish("t", b"x", 0, True))
    assert c.host.router == [[Kind.ROUTE, "c", "t", b"x", 0, True, None, None]]
    assert c.session.last_routed == c.host.fences.sent == 1
    assert c.link.written == [] and c.link.backpressure_checks == checks + 1


def test_qos2_goes_to_the_sessions_shard() -> None:
    c = connected()
    c.send(Publish("t", b"x", 2, packet_id=9))
    ((shard, e),) = c.host.workers
    assert shard == c.session.shard and e[0] == Kind.PUBLISH and e[3] == 9
    assert c.host.router == []


# --- topic aliases ------------------------------------------------------------------------------
def test_a_topic_alias_is_set_then_used() -> None:
    c = connected(5)
    c.send(Publish("a/b", b"1", properties={"topic_alias": 3}))
    c.send(Publish("", b"2", properties={"topic_alias": 3, "content_type": "x"}))
    assert [(e[2], e[3], e[6]) for e in c.host.router] == [
        ("a/b", b"1", {}),  # the alias is not passed on
        ("a/b", b"2", {"content_type": "x"}),
    ]


@pytest.mark.parametrize("alias", [0, 11])
def test_a_topic_alias_out_of_range_is_topic_alias_invalid(alias: int) -> None:
    """[MQTT-3.3.2-9]: DISCONNECT 0x94."""
    aliases = TopicAliases()
    with pytest.raises(Exception) as err:
        aliases.resolve(alias, "t")
    assert getattr(err.value, "reason_code", None) == ReasonCode.TOPIC_ALIAS_INVALID


def test_an_unknown_topic_alias_is_a_protocol_error() -> None:
    c = connected(5)
    c.send(Publish("", b"x", properties={"topic_alias": 4}))
    assert c.packets() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]
    assert c.link.closed and c.host.router == []


# --- ACL ---------------------------------------------------------------------------------------
ACL_TEXT = """\
user alice
topic readwrite alice/#
topic read public/#
"""


@pytest.fixture
def acl_host(tmp_path: Path) -> FakeHost:
    path = tmp_path / "acl"
    path.write_text(ACL_TEXT)
    return FakeHost(acl=load_acl(str(path)))


def test_a_denied_publish_is_acknowledged_and_dropped_in_311(acl_host: FakeHost) -> None:
    """[MQTT-3.3.5-2]"""
    c = connected(4, "a1", acl_host, username="alice")
    c.send(Publish("public/x", b"no", 1, packet_id=5))
    assert c.packets() == [Puback(5)]
    assert c.host.router == [] and c.host.denied == [("acl_denied_publishes", "a1", "public/x")]


def test_a_denied_publish_is_answered_not_authorized_in_v5(acl_host: FakeHost) -> None:
    c = connected(5, "a1", acl_host, username="alice")
    c.send(Publish("public/x", b"no", 2, packet_id=6))
    assert c.packets() == [Pubrec(6, ReasonCode.NOT_AUTHORIZED)]
    assert c.host.workers == []


def test_an_allowed_publish_goes(acl_host: FakeHost) -> None:
    c = connected(4, "a1", acl_host, username="alice")
    c.send(Publish("alice/x", b"yes"))
    assert [e[2] for e in c.host.router] == ["alice/x"]


def test_a_subscription_no_readable_topic_matches_is_refused(acl_host: FakeHost) -> None:
    c = connected(5, "a1", acl_host, username="alice")
    c.send(Subscribe(1, (Subscription("secret/#", 1), Subscription("public/#", 1))))
    (e,) = c.host.take()[1]
    assert e[0] == Kind.SUBSCRIBE
    assert [entry[1] for entry in e[4]] == [ReasonCode.NOT_AUTHORIZED, 1]
    assert c.host.counters["acl_denied_subscriptions"] == 1


def test_a_client_may_not_publish_to_sys_without_an_acl() -> None:
    c = connected(5)
    c.send(Publish("$SYS/broker/x", b"x", 1, packet_id=2))
    assert c.packets() == [Puback(2, ReasonCode.NOT_AUTHORIZED)]
    assert c.host.counters["sys_publishes_refused"] == 1 and c.host.router == []


def test_suback_answers_the_subscribe_in_its_version() -> None:
    c = connected(4)
    c.send(Subscribe(1, (Subscription("t", 1),)))
    assert 1 in c.session.unanswered
    c.session.send_suback(1, [1])
    assert c.packets() == [Suback(1, (1,))] and not c.session.unanswered


def test_what_one_session_awaits_is_its_own() -> None:
    """Sessions share one empty dict of unanswered SUBSCRIBEs and one of
    forwarded PUBRELs until they have one (memory per idle connection):
    the first entry gives a session dicts of its own, the shared stay empty."""
    waiting, idle = connected(4), connected(4)
    waiting.send(Subscribe(1, (Subscription("t", 1),)))
    waiting.send(Pubrel(7))
    assert list(waiting.session.unanswered) == [1] and list(waiting.session.pubrels) == [7]
    assert not idle.session.unanswered and not idle.session.pubrels
    assert not connected(4).session.unanswered and not connected(4).session.pubrels


# --- durable acknowledgement --------------------------------------------------------------------
def test_puback_waits_for_routed_and_every_stored() -> None:
    c = connected()
    c.send(Publish("t", b"x", 1, packet_id=3))
    (route,) = c.host.router
    assert routed(route) == ("t", b"x", 1, [CONN_ID, 3, 0, 1, None])
    assert c.host.unconfirmed.size == message_size("t", b"x", None)
    c.session.on_routed(3, 2, 0)
    c.session.on_stored(3, True, 0)
    assert c.link.written == []
    c.session.on_stored(3, True, 0)
    assert c.packets() == [Puback(3)]
    assert c.host.unconfirmed.size == 0 and not c.host.unconfirmed.sessions


def test_routed_to_no_shard_is_acknowledged_at_once() -> None:
    c = connected()
    c.send(Publish("t", b"x", 1, packet_id=3))
    c.session.on_routed(3, 0, 0)
    assert c.packets() == [Puback(3)]


def test_a_retransmission_while_pending_is_not_routed_again() -> None:
    c = connected()
    c.send(Publish("t", b"x", 1, packet_id=3))
    c.send(Publish("t", b"x", 1, dup=True, packet_id=3))
    assert len(c.host.router) == 1
    c.session.on_routed(3, 0, 0)
    assert c.packets() == [Puback(3)]  # once


def test_qos2_pubrec_waits_and_tells_the_shard_it_was_confirmed() -> None:
    c = connected()
    c.send(Publish("t", b"x", 2, packet_id=4))
    c.host.take()
    c.session.on_routed(4, 1, 0)
    assert c.link.written == []
    c.session.on_stored(4, True, 0)
    assert c.packets() == [Pubrec(4)]
    assert c.host.take()[1] == [[Kind.QOS2_CONFIRMED, CONN_ID, "c", 4]]


def test_a_qos2_retransmission_the_shard_already_routed_is_acknowledged_once() -> None:
    """ROUTED shards < 0: the shard saw the packet id before. While the first
    transmission is pending, that answer is the duplicate's, not its own."""
    c = connected()
    c.send(Publish("t", b"x", 2, packet_id=4))
    c.send(Publish("t", b"x", 2, dup=True, packet_id=4))
    c.session.on_routed(4, -1, 0)  # the duplicate's answer
    assert c.link.written == []
    c.session.on_routed(4, -1, 0)  # the first's: nothing more to wait for
    assert c.packets() == [Pubrec(4)]


def test_confirmations_of_an_attempt_given_up_do_not_count() -> None:
    c = connected()
    c.send(Publish("t", b"x", 1, packet_id=3))
    c.session.retry_unconfirmed(c.host.now, "router restarted")
    c.session.on_routed(3, 0, 0)  # attempt 0
    assert c.link.written == []
    c.session.on_routed(3, 0, 1)
    assert c.packets() == [Puback(3)]


def test_a_publish_that_could_not_be_stored_closes_the_connection() -> None:
    """Never acknowledged: the client retransmits it on its next connection."""
    c = connected(5)
    c.send(Publish("t", b"x", 1, packet_id=3))
    c.session.on_routed(3, 1, 0)
    c.session.on_stored(3, False, 0)
    assert c.packets() == [Disconnect(ReasonCode.UNSPECIFIED_ERROR)]
    assert c.link.closed and c.session.will_on_close
    assert c.host.counters["publishes_not_stored"] == 1


def test_stored_not_ok_for_an_old_attempt_is_ignored() -> None:
    c = connected(5)
    c.send(Publish("t", b"x", 1, packet_id=3))
    c.session.retry_unconfirmed(c.host.now, "test")
    c.session.on_stored(3, False, 0)
    assert not c.link.closed


# --- retries ------------------------------------------------------------------------------------
def test_an_unconfirmed_publish_is_routed_again_after_the_timeout() -> None:
    c = connected()
    c.send(Publish("t", b"x", 1, packet_id=3))
    c.host.take()
    timeout = 10.0
    c.session.check_confirmations(c.host.now + timeout, timeout)
    assert c.host.router == []
    c.session.check_confirmations(c.host.now + timeout + 1, timeout)
    (route,) = c.host.router
    assert routed(route) == ("t", b"x", 1, [CONN_ID, 3, 1, 1, None])  # attempt 1
    assert c.host.counters["publish_retries"] == 1


def test_a_qos2_retry_goes_to_the_shard_marked_as_a_retry() -> None:
    c = connected()
    c.send(Publish("t", b"x", 2, packet_id=4))
    c.host.take()
    c.session.retry_unconfirmed(c.host.now, "worker restarted")
    ((_, e),) = c.host.workers
    assert e[0] == Kind.PUBLISH and (e[9], e[10]) == (1, True)  # attempt, retry


def test_after_max_attempts_the_connection_is_closed_never_acknowledged() -> None:
    c = connected(5)
    c.send(Publish("t", b"x", 1, packet_id=3))
    now = c.host.now
    for _ in range(MAX_ATTEMPTS - 1):
        now += 11
        c.session.check_confirmations(now, 10.0)
    assert not c.link.closed
    c.session.check_confirmations(now + 11, 10.0)
    assert c.packets() == [Disconnect(ReasonCode.UNSPECIFIED_ERROR)] and c.link.closed
    assert len(c.host.router) == MAX_ATTEMPTS


def test_reading_stops_past_the_unconfirmed_bound_and_resumes_at_half() -> None:
    size = message_size("t", b"x" * 100, None)
    host = FakeHost(Config(workers=4, max_unconfirmed_bytes=3 * size))
    c = connected(host=host)
    c.send(*[Publish("t", b"x" * 100, 1, packet_id=i) for i in (1, 2, 3)])
    assert not c.link.reading and c.host.counters["unconfirmed_full_pauses"] == 1
    c.session.on_routed(1, 0, 0)
    assert not c.link.reading  # 2 of 3 still unconfirmed: over half
    c.session.on_routed(2, 0, 0)
    assert c.link.reading


def test_a_lost_connection_gives_back_its_unconfirmed_bytes() -> None:
    c = connected()
    c.send(Publish("t", b"x", 1, packet_id=3))
    assert c.host.unconfirmed.size > 0
    c.session.connection_lost()
    assert c.host.unconfirmed.size == 0 and not c.host.unconfirmed.sessions


def test_confirmations_alone() -> None:
    confirmations = Confirmations()
    route: tuple[object, ...] = (Kind.ROUTE, "c", "t", b"x", 1, False, None, (1, 3, 0, 1, None))
    assert confirmations.add(3, 4, route, 0.0, 10)  # type: ignore[arg-type]
    assert not confirmations.add(3, 4, route, 0.0, 10)  # type: ignore[arg-type]
    assert confirmations.size == 10
    assert confirmations.on_routed(3, 1, 0) is None
    assert confirmations.overdue(5.0, 4.0) == [(3, confirmations.pending[3])]
    done = confirmations.on_stored(3, 0)
    assert done is not None and done.ack_kind == 4
    assert confirmations.size == 0 and not confirmations.pending


def test_a_topic_alias_can_be_remapped() -> None:
    c = connected(5)
    c.send(Publish("a", b"1", properties={"topic_alias": 1}))
    c.send(Publish("b", b"2", properties={"topic_alias": 1}))
    c.send(Publish("", b"3", properties={"topic_alias": 1}))
    assert [e[2] for e in c.host.router] == ["a", "b", "b"]


# --- PUBACKs from a subscriber ------------------------------------------------------------------
def test_the_pubacks_of_one_read_go_as_one_envelope() -> None:
    c = connected()
    c.send(Puback(1), Puback(2), Puback(3))
    assert c.host.workers == [(c.session.shard, [Kind.PUBACKS_IN, CONN_ID, "c", [1, 2, 3]])]
    c.host.workers.clear()
    c.send(Puback(4))  # a lone one: PUBACK_IN
    assert c.host.workers == [(c.session.shard, [Kind.PUBACK_IN, CONN_ID, "c", 4, 0])]


def test_pubacks_go_before_what_the_session_sends_its_shard_after_them() -> None:
    c = connected()
    c.send(Puback(1), Puback(2), Publish("t", b"x", 2, packet_id=9), Puback(3))
    assert [e[0] for _, e in c.host.workers] == [Kind.PUBACKS_IN, Kind.PUBLISH, Kind.PUBACK_IN]
    assert c.host.workers[0][1][3] == [1, 2] and c.host.workers[2][1][3] == 3
