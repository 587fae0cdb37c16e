"""CONNECT, CONNACK, DISCONNECT and the timers of one client session
(frontend/session.py, frontend/connect.py), without sockets: what the
session sends its shard, writes to the client, and when it closes."""

from __future__ import annotations

from flockmq import envelopes as env
from flockmq.config import Config
from flockmq.envelopes import Kind
from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Publish,
    ReasonCode,
)
from flockmq.frontend.codec.packets import Will
from flockmq.frontend.connect import NEVER_EXPIRES
from flockmq.frontend.states import CLOSED, CONNECTED, CONNECTING
from flockmq.frontend.topic_aliases import TOPIC_ALIAS_MAXIMUM
from flockmq.sharding import shard_of

from .sessions import CONN_ID, Client, FakeHost, connected

V5_CONNACK_PROPS = {
    "topic_alias_maximum": TOPIC_ALIAS_MAXIMUM,
    "maximum_packet_size": Config().max_packet_size,
    "shared_subscription_available": 1,
}


def connect_envelope(client: Client) -> env.Connect:
    (e,) = [e for _, e in client.host.workers if e[0] == Kind.CONNECT]
    return env.Connect._make(e)


# --- CONNECT mapping ---------------------------------------------------------------------------
def test_a_311_connect_goes_to_the_client_ids_shard() -> None:
    c = Client()
    c.send(Connect("dev1", 4, clean_start=False, keepalive=30, username="u"), level=4)
    assert connect_envelope(c) == env.Connect(
        Kind.CONNECT, CONN_ID, "dev1", False, NEVER_EXPIRES, 4, 30, "u", None, 0, False
    )
    assert [shard for shard, _ in c.host.workers] == [shard_of("dev1", 4)]
    assert c.session.state == CONNECTING and c.session.shard == shard_of("dev1", 4)
    assert c.host.counters["connects"] == 1


def test_a_clean_311_session_expires_at_once() -> None:
    c = Client()
    c.send(Connect("dev1", 4, clean_start=True), level=4)
    assert connect_envelope(c).session_expiry == 0


def test_a_v5_connect_maps_its_properties() -> None:
    c = Client()
    props = {"session_expiry_interval": 300, "receive_maximum": 10, "maximum_packet_size": 900}
    c.send(Connect("v5", 5, clean_start=True, keepalive=5, properties=props), level=5)
    e = connect_envelope(c)
    assert (e.session_expiry, e.receive_maximum, e.level, e.assigned_id) == (300, 10, 5, False)
    assert c.session.max_outgoing_packet == 900


def test_a_will_goes_with_the_connect_without_its_delay_property() -> None:
    c = Client()
    will = Will("w/t", b"bye", 1, True, {"will_delay_interval": 5, "content_type": "x"})
    c.send(Connect("v5", 5, will=will), level=5)
    sent = list(connect_envelope(c).will or ())
    assert sent == ["w/t", b"bye", 1, True, {"content_type": "x"}, 5]


def test_an_empty_v5_client_id_is_assigned_one() -> None:
    c = Client()
    c.send(Connect("", 5, clean_start=False), level=5)
    e = connect_envelope(c)
    assert e.client_id.startswith("auto-") and e.assigned_id is True
    assert c.session.client_id == e.client_id


def test_an_empty_311_client_id_is_assigned_one_silently_with_clean_session() -> None:
    c = Client()
    c.send(Connect("", 4, clean_start=True), level=4)
    e = connect_envelope(c)
    assert e.client_id.startswith("auto-") and e.assigned_id is False


def test_an_empty_client_id_without_clean_session_is_refused() -> None:
    """[MQTT-3.1.3-8]: CONNACK 0x02 Identifier Rejected, then closed."""
    for level in (3, 4):
        c = Client()
        c.send(Connect("", level, clean_start=level == 3), level=level)
        assert c.packets() == [Connack(False, 0x02)]
        assert c.link.closed and not c.link.registered and c.host.workers == []
        assert c.session.state == CLOSED and c.host.counters["connects_refused"] == 1


def test_enhanced_authentication_is_refused() -> None:
    c = Client()
    c.send(Connect("a", 5, properties={"authentication_method": "SCRAM"}), level=5)
    assert c.packets() == [
        Connack(False, ReasonCode.BAD_AUTHENTICATION_METHOD, V5_CONNACK_PROPS),
    ]
    assert c.link.closed and c.host.workers == []


def test_a_will_topic_too_deep_is_refused_with_connack_in_v5() -> None:
    c = Client(FakeHost(Config(workers=4, max_topic_levels=2)))
    c.send(Connect("a", 5, will=Will("a/b/c")), level=5)
    assert c.packets() == [Connack(False, ReasonCode.TOPIC_NAME_INVALID, V5_CONNACK_PROPS)]
    assert c.link.closed and c.host.counters["topics_too_deep"] == 1


def test_a_will_to_sys_is_refused_as_not_authorized() -> None:
    c = Client()
    c.send(Connect("a", 4, will=Will("$SYS/x")), level=4)
    assert c.packets() == [Connack(False, 0x05)]  # 3.1.1's Not Authorized
    assert c.host.counters["acl_denied_wills"] == 1 and c.link.closed


def test_an_mqtt31_client_id_over_23_characters_is_accepted() -> None:
    """As Mosquitto does, though 3.1 asks for 1-23 characters."""
    c = connected(3, "x" * 40)
    assert c.session.client_id == "x" * 40 and not c.link.closed


# --- CONNACK ------------------------------------------------------------------------------------
def test_nothing_after_connect_is_read_until_the_connack() -> None:
    c = Client()
    c.send(Connect("a", 4), Pingreq(), Publish("t", b"x"), level=4)
    assert not c.link.reading and c.link.written == [] and c.host.router == []
    c.connack()
    assert c.packets() == [Connack(False, 0), Pingresp()]  # CONNACK first [MQTT-3.2.0-1]
    assert [e[0] for e in c.host.router] == [Kind.ROUTE]
    assert c.link.reading and c.session.state == CONNECTED


def test_a_connect_alone_keeps_reading_until_more_comes_before_the_connack() -> None:
    """A client that waits for its CONNACK costs no pause and resume of its
    socket; one that sends on is stopped at its next read, and what it sent
    is acted on after the CONNACK only."""
    c = Client()
    c.send(Connect("a", 4), level=4)
    assert c.link.reading and c.session.state == CONNECTING
    c.send(Pingreq(), Publish("t", b"x"), level=4)
    assert not c.link.reading and c.link.written == [] and c.host.router == []
    c.connack()
    assert c.packets() == [Connack(False, 0), Pingresp()]
    assert [e[0] for e in c.host.router] == [Kind.ROUTE]
    assert c.link.reading and c.session.state == CONNECTED


def test_a_v5_connack_tells_the_limits_and_caps_the_keepalive() -> None:
    c = Client(FakeHost(Config(workers=4, max_keepalive=60)))
    c.send(Connect("a", 5, keepalive=600), level=5)
    c.connack(props={"receive_maximum": 5})
    (connack,) = c.packets()
    assert connack == Connack(
        False, 0, {**V5_CONNACK_PROPS, "receive_maximum": 5, "server_keep_alive": 60}
    )
    assert c.session.keepalive == 60


def test_a_refusing_connack_closes() -> None:
    c = Client()
    c.send(Connect("a", 5), level=5)
    c.connack(rc=ReasonCode.NOT_AUTHORIZED)
    assert c.packets() == [Connack(False, ReasonCode.NOT_AUTHORIZED, V5_CONNACK_PROPS)]
    assert c.link.closed


def test_a_v5_refusal_becomes_the_311_return_code() -> None:
    c = Client()
    c.send(Connect("a", 4), level=4)
    c.connack(rc=ReasonCode.BAD_USER_NAME_OR_PASSWORD, present=True)
    assert c.packets() == [Connack(False, 0x04)]


def test_a_connack_over_the_clients_maximum_packet_size_closes() -> None:
    c = Client()
    c.send(Connect("a", 5, properties={"maximum_packet_size": 10}), level=5)
    c.connack()
    assert c.link.written == [] and c.link.closed
    assert c.host.counters["connack_over_client_maximum_packet_size"] == 1


def test_deliveries_before_the_connack_wait_for_it() -> None:
    c = Client()
    c.send(Connect("a", 4), level=4)
    many = env.SendPublishMany(Kind.SEND_PUBLISH_MANY, [CONN_ID], "t", b"x", False, None)
    c.session.hold_until_connack(many)
    assert c.host.handled == []
    c.connack()
    assert c.host.handled == [many]


def test_a_connack_that_comes_twice_is_taken_once() -> None:
    c = connected()
    c.connack()
    assert c.link.written == []


# --- DISCONNECT ---------------------------------------------------------------------------------
def test_disconnect_discards_the_will() -> None:
    """[MQTT-3.14.4-3]"""
    c = connected()
    c.send(Disconnect())
    assert c.link.closed and c.session.will_on_close is False
    c.session.connection_lost()
    _, workers = c.host.take()
    assert workers == [[Kind.CLOSED, CONN_ID, "c", False, None]]


def test_disconnect_with_will_message_keeps_it() -> None:
    c = connected(5)
    c.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE))
    c.session.connection_lost()
    assert c.host.take()[1] == [[Kind.CLOSED, CONN_ID, "c", True, None]]


def test_disconnect_with_a_session_expiry_reports_it_at_once() -> None:
    c = connected(5, properties={"session_expiry_interval": 10})
    c.send(Disconnect(0, {"session_expiry_interval": 20}))
    assert c.host.take()[1] == [[Kind.CLOSED, CONN_ID, "c", False, 20]]
    assert c.session.state == CLOSED and not c.link.registered and c.link.closed
    c.session.connection_lost()
    assert c.host.take() == ([], [])  # not reported twice


def test_disconnect_setting_an_expiry_after_connect_set_none_is_a_protocol_error() -> None:
    """MQTT 5 section 3.14.2.2.2: DISCONNECT 0x82, and the will stays."""
    c = connected(5)
    c.send(Disconnect(0, {"session_expiry_interval": 20}))
    assert c.packets() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]
    assert c.session.will_on_close is True and c.link.closed


def test_nothing_after_disconnect_is_acted_on() -> None:
    c = connected()
    c.send(Disconnect(), Publish("t", b"late"))
    assert c.host.router == []
    c.send(Publish("t", b"later"))
    assert c.host.router == []


# --- timers -------------------------------------------------------------------------------------
def test_no_connect_within_the_connect_timeout_closes() -> None:
    c = Client()
    timeout = c.host.config.connect_timeout
    c.session.check_timers(c.host.now + timeout, None)
    assert not c.link.closed
    c.session.check_timers(c.host.now + timeout + 0.1, None)
    assert c.link.closed and c.link.written == [] and c.host.counters["connect_timeouts"] == 1


def test_keepalive_expires_after_one_and_a_half_times_it() -> None:
    """[MQTT-3.1.2-24]; v5 says why with DISCONNECT 0x8D."""
    c = connected(5, keepalive=10)
    now = c.host.now
    c.session.check_timers(now + 15, None)
    assert not c.link.closed
    c.session.check_timers(now + 15.1, None)
    assert c.packets() == [Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)] and c.link.closed
    assert c.host.counters["keepalive_timeouts"] == 1


def test_what_a_client_sends_restarts_its_keepalive() -> None:
    c = connected(4, keepalive=10)
    c.host.now += 10
    c.send(Pingreq())
    assert c.packets() == [Pingresp()]
    c.session.check_timers(c.host.now + 15, None)
    assert not c.link.closed
    c.session.check_timers(c.host.now + 15.1, None)
    assert c.link.closed and c.link.written == []  # 3.1.1: closed, nothing said


def test_keepalive_zero_never_expires() -> None:
    c = connected(4, keepalive=0)
    c.session.check_timers(c.host.now + 1e6, None)
    assert not c.link.closed


def test_a_client_that_reads_nothing_is_closed_after_the_write_timeout() -> None:
    c = connected(5, keepalive=0)
    paused_at = c.host.now
    timeout = c.host.config.write_timeout
    c.session.check_timers(paused_at + timeout, paused_at)
    assert not c.link.closed
    c.session.check_timers(paused_at + timeout + 0.1, paused_at)
    assert c.link.closed and c.link.written == []  # no DISCONNECT: it would not be read
    assert c.host.counters["slow_consumers_disconnected"] == 1


def test_a_close_is_done_once() -> None:
    c = connected(5)
    c.session.close(ReasonCode.ADMINISTRATIVE_ACTION)
    c.session.close(ReasonCode.ADMINISTRATIVE_ACTION)
    assert c.packets() == [Disconnect(ReasonCode.ADMINISTRATIVE_ACTION)]
