"""The acceptor's side of the auth hooks (frontend/hook_calls.py), with no
process, no socket and a fake clock: calls pending and bounded, the budget,
the decision cache's TTL, the spread over auth processes, and the order of
what a connection sends while a packet waits for the hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flockmq import envelopes as env
from flockmq.config import Config
from flockmq.envelopes import Kind
from flockmq.frontend.acl import load_acl
from flockmq.frontend.codec import Connack, Connect, Puback, Publish, Suback, Subscribe
from flockmq.frontend.codec.packets import Subscription, Will
from flockmq.frontend.hook_calls import DecisionCache, HookCalls, PendingCall
from flockmq.frontend.states import CLOSED, CONNECTING
from tests.unit.wire import wire

from .sessions import Client, FakeHost, connected


class Auth:
    """Fake auth processes: what each was sent, and the acceptor's timer."""

    def __init__(self, host: FakeHost, processes: int = 1, **settings: Any) -> None:
        config = Config(
            workers=4,
            auth_hook="h",
            auth_processes=processes,
            auth_hook_functions=["authenticate", "authorize"],
            **settings,
        )
        host.config = config
        self.host = host
        self.sent: list[tuple[int, Any]] = []
        self.timers: list[float] = []
        self.calls = HookCalls(0, processes, config, self.send, self.timers.append, host.count)
        host.hooks = self.calls

    def send(self, index: int, envelope: env.Authenticate | env.Authorize) -> None:
        self.sent.append((index, wire(envelope)))

    def take(self) -> list[Any]:
        sent, self.sent = self.sent, []
        return [e for _, e in sent]

    def reply(self, call: int, results: list[int], error: str | None = None) -> None:
        self.calls.on_reply(
            wire(env.AuthReply(Kind.AUTH_REPLY, call, results, error)), self.host.now
        )

    def advance(self, seconds: float) -> None:
        """The fake clock moves; the acceptor's timer fires if due."""
        self.host.now += seconds
        if self.timers and self.timers[0] <= self.host.now:
            self.timers.pop(0)
            self.calls.expire(self.host.now)


def hooked(level: int = 5, **settings: Any) -> tuple[Client, Auth]:
    """A client connected (the hook allowed it) on a host with a hook."""
    host = FakeHost()
    auth = Auth(host, **settings)
    client = Client(host)
    client.send(Connect("dev1", level, True, 60, "alice", b"pw"), level=level)
    (call,) = auth.take()
    auth.reply(call[2], [0])
    client.connack()
    client.host.take()
    client.link.take()
    return client, auth


# --- CONNECT -----------------------------------------------------------------------------


def test_a_connect_waits_for_the_hook_and_goes_on_when_allowed() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", b"pw"), Publish("t", b"early"), level=5)
    (call,) = auth.take()
    assert call == [Kind.AUTHENTICATE, 0, 1, "dev1", "alice", b"pw", "192.0.2.1:50000", None, None]
    assert host.take() == ([], []) and not c.link.reading  # nothing sent on, nothing read
    assert c.session.state == CONNECTING
    auth.reply(1, [0])
    _, workers = host.take()
    assert [e[0] for e in workers] == [Kind.CONNECT]
    c.connack()  # what came after the CONNECT is read now: asked about in turn
    (call,) = auth.take()
    assert call[0] == Kind.AUTHORIZE and call[6] == ["t"]
    auth.reply(call[2], [1])
    assert [e[3] for e in host.router] == [b"early"]


PEERCERT = {
    "subject": ((("commonName", "dev1"),), (("organizationName", "Acme"),)),
    "issuer": ((("commonName", "Acme CA"),),),
    "serialNumber": "0A",
    "notBefore": "Jan  1 00:00:00 2026 GMT",
    "notAfter": "Jan  1 00:00:00 2027 GMT",
}


def test_a_connect_with_a_client_certificate_sends_its_fields_bounded() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.link.identity, c.link.peercert = "dev1", PEERCERT
    c.send(Connect("dev1", 5, True, 60, "alice", None), level=5)
    (call,) = auth.take()
    assert call[7] == "dev1"  # the CN, as before
    assert call[8] == {
        "subject": {"commonName": "dev1", "organizationName": "Acme"},
        "issuer": {"commonName": "Acme CA"},
        "serial": "0A",
        "not_before": "Jan  1 00:00:00 2026 GMT",
        "not_after": "Jan  1 00:00:00 2027 GMT",
    }
    assert host.counters["hook_certificates_cut"] == 0
    # a budget of 60 bytes keeps the serial and the first date: a certificate cut, counted
    host = FakeHost()
    auth = Auth(host, auth_hook_cert_bytes=60)
    c = Client(host)
    c.link.identity, c.link.peercert = "dev1", PEERCERT
    c.send(Connect("dev1", 5, True, 60, "alice", None), level=5)
    (call,) = auth.take()
    assert call[8] == {
        "subject": {},
        "issuer": {},
        "serial": "0A",
        "not_before": "Jan  1 00:00:00 2026 GMT",
    }
    assert host.counters["hook_certificates_cut"] == 1
    # none without a certificate, or with a budget of 0
    for peercert, budget in ((None, 4096), (PEERCERT, 0)):
        host = FakeHost()
        auth = Auth(host, auth_hook_cert_bytes=budget)
        c = Client(host)
        c.link.peercert = peercert
        c.send(Connect("dev1", 5, True, 60, "alice", None), level=5)
        assert auth.take()[0][8] is None


def test_a_denied_connect_gets_the_hooks_reason_code_v5_and_v3() -> None:
    for level, code in ((5, 0x8A), (4, 5)):
        host = FakeHost()
        auth = Auth(host)
        c = Client(host)
        c.send(Connect("dev1", level, True, 60, "alice", None), level=level)
        auth.reply(auth.take()[0][2], [0x8A])
        (connack,) = c.packets()
        assert isinstance(connack, Connack) and connack.reason_code == code
        assert c.link.closed and host.take() == ([], [])
        assert host.counters["connects_hook_denied"] == 1


def test_a_connect_the_hook_does_not_answer_in_time_gets_server_unavailable() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 4, True, 60, "slow", None), level=4)
    call = auth.take()[0][2]
    auth.advance(0.19)
    assert c.packets() == []
    auth.advance(0.02)
    (connack,) = c.packets()
    assert isinstance(connack, Connack) and connack.reason_code == 3  # 0x88 for 3.1.1
    assert host.counters["hook_timeouts"] == 1
    auth.reply(call, [0])  # too late: dropped
    assert host.counters["hook_late_replies"] == 1 and host.take() == ([], [])


def test_a_hook_error_refuses_with_server_unavailable() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "boom", None), level=5)
    auth.reply(auth.take()[0][2], [], "RuntimeError: down")
    (connack,) = c.packets()
    assert isinstance(connack, Connack) and connack.reason_code == 0x88
    assert host.counters["hook_errors"] == 1


def test_a_connection_lost_while_its_connect_waits_reports_nothing_to_the_worker() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None), level=5)
    call = auth.take()[0][2]
    c.session.connection_lost()
    assert host.take() == ([], [])  # no CLOSED for a CONNECT never sent on
    auth.reply(call, [0])
    assert host.take() == ([], []) and c.session.state == CLOSED


def test_a_worker_restart_does_not_send_a_connect_still_waiting_for_the_hook() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None), level=5)
    c.session.on_worker_up(3, restarted=True)
    assert host.take() == ([], [])
    auth.reply(auth.take()[0][2], [0])
    assert [e[0] for e in host.take()[1]] == [Kind.CONNECT]


# --- the will topic, at CONNECT ------------------------------------------------------------


def _connect_with_will(level: int, topic: str = "w/dev1", **settings: Any) -> tuple[Client, Auth]:
    """A CONNECT with a will, authenticate() allowed: its will is asked next."""
    host = FakeHost()
    auth = Auth(host, **settings)
    c = Client(host)
    c.send(Connect("dev1", level, True, 60, "alice", b"pw", Will(topic, b"bye")), level=level)
    auth.reply(auth.take()[0][2], [0])
    return c, auth


def test_a_will_topic_is_asked_of_authorize_as_a_publish_after_authenticate() -> None:
    c, auth = _connect_with_will(5)
    (call,) = auth.take()
    assert call[0] == Kind.AUTHORIZE and call[3:] == ["dev1", "alice", "publish", ["w/dev1"]]
    assert c.host.take() == ([], []) and c.session.state == CONNECTING  # waits
    auth.reply(call[2], [1])
    _, workers = c.host.take()
    assert [e[0] for e in workers] == [Kind.CONNECT] and workers[0][8][0] == "w/dev1"
    c.connack()
    # the decision is cached as a publish's: the will's topic published now is not asked
    c.send(Publish("w/dev1", b"x"))
    assert auth.take() == [] and [e[3] for e in c.host.router] == [b"x"]


def test_a_will_topic_the_hook_refuses_is_refused_at_connect_v5_and_v3() -> None:
    for level, code in ((5, 0x87), (4, 5)):
        c, auth = _connect_with_will(level)
        auth.reply(auth.take()[0][2], [0])
        (connack,) = c.packets()
        assert isinstance(connack, Connack) and connack.reason_code == code
        assert c.link.closed and c.host.take() == ([], [])
        assert c.host.counters["hook_denied_wills"] == 1
        assert c.host.counters["connects_hook_denied"] == 0


def test_a_will_topic_the_hook_fails_on_gets_server_unavailable_v5_and_v3() -> None:
    for level, code in ((5, 0x88), (4, 3)):
        c, auth = _connect_with_will(level)
        auth.reply(auth.take()[0][2], [], "RuntimeError: down")
        (connack,) = c.packets()
        assert isinstance(connack, Connack) and connack.reason_code == code
        assert c.host.counters["hook_errors"] == 1 and c.host.counters["hook_denied_wills"] == 0
        # and a call not answered within its budget
        c, auth = _connect_with_will(level)
        call = auth.take()[0][2]
        auth.advance(0.25)
        (connack,) = c.packets()
        assert isinstance(connack, Connack) and connack.reason_code == code
        assert c.host.counters["hook_timeouts"] == 1 and c.host.take() == ([], [])
        auth.reply(call, [1])  # too late: nothing is sent on
        assert c.host.take() == ([], []) and c.session.state == CLOSED


def test_a_will_that_finds_too_many_calls_waiting_gets_server_unavailable() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None, Will("w/x")), level=5)
    auth.calls.max_pending = 0  # (after authenticate() was asked)
    auth.reply(auth.take()[0][2], [0])
    (connack,) = c.packets()
    assert isinstance(connack, Connack) and connack.reason_code == 0x88
    assert host.counters["hook_calls_overloaded"] == 1 and host.take() == ([], [])


def test_a_will_is_asked_without_authenticate_and_not_without_authorize() -> None:
    host = FakeHost()
    auth = Auth(host)
    auth.calls.authenticates = False
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None, Will("w/x")), level=5)
    (call,) = auth.take()
    assert call[0] == Kind.AUTHORIZE and call[5:] == ["publish", ["w/x"]]
    auth.reply(call[2], [0])
    (connack,) = c.packets()
    assert isinstance(connack, Connack) and connack.reason_code == 0x87
    host = FakeHost()
    auth = Auth(host)
    auth.calls.authorizes = False
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None, Will("w/x")), level=5)
    (call,) = auth.take()
    assert call[0] == Kind.AUTHENTICATE
    auth.reply(call[2], [0])
    assert auth.take() == [] and [e[0] for e in host.take()[1]] == [Kind.CONNECT]


def test_a_connect_without_a_will_asks_only_authenticate() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None), level=5)
    auth.reply(auth.take()[0][2], [0])
    assert auth.take() == [] and [e[0] for e in host.take()[1]] == [Kind.CONNECT]


def test_a_connection_lost_while_its_will_waits_reports_nothing_to_the_worker() -> None:
    c, auth = _connect_with_will(5)
    call = auth.take()[0][2]
    c.session.on_worker_up(3, restarted=True)  # not sent while it waits either
    c.session.connection_lost()
    assert c.host.take() == ([], [])
    auth.reply(call, [1])
    assert c.host.take() == ([], []) and c.session.state == CLOSED


def test_a_will_refused_by_the_acl_is_not_asked_of_the_hook() -> None:
    host = FakeHost()
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None, Will("$SYS/x")), level=5)
    assert auth.take() == []  # neither authenticate() nor authorize()
    (connack,) = c.packets()
    assert isinstance(connack, Connack) and connack.reason_code == 0x87
    assert host.counters["acl_denied_wills"] == 1 and host.counters["hook_denied_wills"] == 0


# --- PUBLISH and SUBSCRIBE: order, cache, budget ----------------------------------------------


def test_a_publish_waiting_for_the_hook_holds_what_follows_it() -> None:
    c, auth = hooked()
    c.send(Publish("a", b"1", qos=1, packet_id=1), Publish("b", b"2"), Publish("a", b"3"))
    (call,) = auth.take()
    assert call[5:] == ["publish", ["a"]]
    assert c.host.router == [] and not c.link.reading and c.host.holding == {c.session}
    auth.reply(call[2], [1])
    # "a" allowed; "b" is asked in turn, and the second "a" waits behind it
    (call,) = auth.take()
    assert call[6] == ["b"] and [e[3] for e in c.host.router] == [b"1"]
    auth.reply(call[2], [1])
    assert [e[3] for e in c.host.router] == [b"1", b"2", b"3"]  # "a" from the cache
    assert c.link.reading and not c.host.holding
    assert auth.take() == []


def test_a_denied_publish_is_refused_as_the_acl_refuses_it() -> None:
    for level, qos, expected in ((5, 1, 0x87), (4, 1, 0), (5, 0, None)):
        c, auth = hooked(level)
        c.send(Publish("no", b"x", qos=qos, packet_id=qos or None))
        auth.reply(auth.take()[0][2], [0])
        assert c.host.router == []
        packets = c.packets()
        if expected is None:
            assert packets == []  # QoS 0: dropped
        else:
            assert packets == [Puback(1, expected)]
        assert c.host.counters["hook_denied_publishes"] == 1


def test_a_publish_the_hook_does_not_answer_in_time_is_refused_and_the_next_goes() -> None:
    c, auth = hooked()
    c.send(Publish("slow", b"x", qos=1, packet_id=1), Publish("ok", b"y", qos=1, packet_id=2))
    auth.take()
    auth.advance(0.25)
    assert c.packets() == [Puback(1, 0x80)]  # Unspecified error
    (call,) = auth.take()
    assert call[6] == ["ok"]  # the next packet, asked now
    auth.reply(call[2], [1])
    assert [e[3] for e in c.host.router] == [b"y"]


def test_decisions_are_cached_until_their_ttl() -> None:
    c, auth = hooked(auth_cache_ttl=5.0)
    c.send(Publish("t", b"1"))
    auth.reply(auth.take()[0][2], [1])
    auth.advance(4.9)
    c.send(Publish("t", b"2"))
    assert auth.take() == [] and len(c.host.router) == 2
    auth.advance(0.2)
    c.send(Publish("t", b"3"))
    assert len(auth.take()) == 1  # expired: asked again


def test_a_subscribe_asks_only_what_the_cache_does_not_know() -> None:
    c, auth = hooked()
    c.send(Publish("x/1", b"p"))
    auth.reply(auth.take()[0][2], [0])
    c.send(Subscribe(1, (Subscription("x/1", 1), Subscription("y/#", 1), Subscription("z", 0))))
    (call,) = auth.take()
    assert call[5:] == ["subscribe", ["x/1", "y/#", "z"]]  # publish's decision is not subscribe's
    auth.reply(call[2], [1, 0, 1])
    ((_, subscribe),) = c.host.workers
    assert [entry[1] for entry in subscribe[4]] == [1, 0x87, 0]
    c.session.send_suback(1, [1, 0x87, 0])
    assert c.packets() == [Suback(1, (1, 0x87, 0))]
    c.send(Subscribe(2, (Subscription("y/#", 1),)))
    assert auth.take() == []  # cached
    assert c.host.counters["hook_denied_subscriptions"] == 2


def test_a_subscribe_refused_by_the_hook_is_0x80_before_mqtt_5() -> None:
    c, auth = hooked(4)
    c.send(Subscribe(1, (Subscription("y/#", 1),)))
    auth.reply(auth.take()[0][2], [0])
    ((_, subscribe),) = c.host.workers
    assert subscribe[4][0][1] == 0x80


# --- bounds, spread, cache size -----------------------------------------------------------------


def test_calls_waiting_are_bounded_in_number() -> None:
    host = FakeHost()
    auth = Auth(host, auth_max_pending=2)
    clients = [Client(host) for _ in range(3)]
    for i, c in enumerate(clients):
        c.send(Connect(f"d{i}", 5, True, 60, "u", None), level=5)
    assert len(auth.take()) == 2
    (connack,) = clients[2].packets()
    assert isinstance(connack, Connack) and connack.reason_code == 0x88
    assert host.counters["hook_calls_overloaded"] == 1


def test_calls_waiting_are_bounded_in_bytes() -> None:
    host = FakeHost()
    auth = Auth(host, auth_max_pending_bytes=300)
    c = Client(host)
    c.send(Connect("d", 5, True, 60, "u", b"x" * 400), level=5)
    assert auth.take() == [] and host.counters["hook_calls_overloaded"] == 1


def test_calls_go_round_robin_and_skip_a_process_that_timed_out_but_probe_it() -> None:
    host = FakeHost()
    auth = Auth(host, processes=2)
    waiter = _Waiter()
    session = Client(host).session
    session.client_id = "c"

    def ask() -> int:
        call = auth.calls.authorize(waiter, session, "publish", ["t"])
        assert call is not None
        return call.target

    assert [ask(), ask()] == [0, 1]
    auth.advance(0.3)  # both time out: both suspect
    auth.reply(ask(), [1])  # all suspect: asked in turn
    auth.calls.suspect = {1: host.now + 1.0}
    assert [ask(), ask(), ask()] == [0, 0, 0]  # 1 is skipped...
    host.now += 1.0
    assert ask() == 1 and ask() == 0  # ...but probed once a second
    assert len(waiter.answers) == 2 and waiter.answers[0] == [0x80]


class _Waiter:
    def __init__(self) -> None:
        self.answers: list[list[int]] = []

    def on_hook_answer(self, call: PendingCall, codes: list[int]) -> None:
        self.answers.append(codes)


def test_the_decision_cache_is_bounded_in_bytes_and_drops_the_oldest() -> None:
    cache = DecisionCache(ttl=60.0, max_bytes=1000)
    for i in range(100):
        cache.put(("c", "u", "publish", f"topic/{i}"), True, 0.0)
    assert cache.size <= 1000 and 0 < len(cache) < 100
    assert cache.get(("c", "u", "publish", "topic/99"), 1.0) is True
    assert cache.get(("c", "u", "publish", "topic/0"), 1.0) is None


def test_no_cache_with_a_ttl_of_zero() -> None:
    cache = DecisionCache(ttl=0.0, max_bytes=1000)
    cache.put(("c", "u", "publish", "t"), True, 0.0)
    assert len(cache) == 0


def test_without_a_hook_nothing_is_asked() -> None:
    c = connected(5)
    c.send(Publish("t", b"x", qos=1, packet_id=1), Subscribe(2, (Subscription("t", 1),)))
    assert c.host.hooks is None
    assert [e[0] for e in c.host.router] == [Kind.ROUTE, Kind.FENCE]


def test_the_acl_is_checked_first_and_once(tmp_path: Path) -> None:
    path = tmp_path / "acl"
    path.write_text("user alice\ntopic readwrite open/#\n")
    host = FakeHost(acl=load_acl(str(path)))
    auth = Auth(host)
    c = Client(host)
    c.send(Connect("dev1", 5, True, 60, "alice", None), level=5)
    auth.reply(auth.take()[0][2], [0])
    c.connack()
    host.take()
    c.link.take()
    c.send(Publish("closed/x", b"p", qos=1, packet_id=1))
    assert auth.take() == [] and c.packets() == [Puback(1, 0x87)]  # the ACL: no call
    c.send(Subscribe(2, (Subscription("closed/#", 1), Subscription("open/a", 1))))
    (call,) = auth.take()
    assert call[6] == ["open/a"]  # only what the ACL allowed
    auth.reply(call[2], [1])
    ((_, subscribe),) = host.workers
    assert [entry[1] for entry in subscribe[4]] == [0x87, 1]
    assert host.counters["acl_denied_subscriptions"] == 1  # not counted again on the answer
