"""The envelope schema (flockmq/envelopes.py): one NamedTuple per kind, and
every kind survives the wire (msgpack) and the reader unchanged."""

from __future__ import annotations

import typing

import msgpack
import pytest

from flockmq import envelopes as env
from flockmq.envelopes import Kind

KEY = env.Qos2Key("pub", 7, 42, True)
REPLY = env.Reply(1 << 48 | 5, 7, 1, 3, KEY)

SAMPLES: list[env.Envelope] = [
    env.Connect(
        Kind.CONNECT,
        5,
        "c",
        True,
        60,
        5,
        30,
        "user",
        env.Will("w", b"x", 1, True, None, 5),
        10,
        False,
    ),
    env.Publish(
        Kind.PUBLISH, 5, "c", 7, "t", b"p", 2, False, {"user_property": [["a", "b"]]}, 0, False, 3
    ),
    env.PubrelIn(Kind.PUBREL_IN, 5, "c", 7),
    env.PubackIn(Kind.PUBACK_IN, 5, "c", 7, 0),
    env.PubacksIn(Kind.PUBACKS_IN, 5, "c", [7, 8, 9]),
    env.PubrecIn(Kind.PUBREC_IN, 5, "c", 7, 0x80),
    env.PubcompIn(Kind.PUBCOMP_IN, 5, "c", 7),
    env.Subscribe(Kind.SUBSCRIBE, 5, "c", 8, [env.SubEntry("a/#", 1, False, True, 0, 4)]),
    env.Unsubscribe(Kind.UNSUBSCRIBE, 5, "c", 9, ["a/#"]),
    env.Closed(Kind.CLOSED, 5, "c", True, None),
    env.AcceptorUp(Kind.ACCEPTOR_UP, 1, 2),
    env.Qos2Confirmed(Kind.QOS2_CONFIRMED, 5, "c", 7),
    env.Discarded(Kind.DISCARDED, 5, "c", 7),
    env.Connack(Kind.CONNACK, 5, False, 0, {"assigned_client_identifier": "c"}),
    env.SendPublish(Kind.SEND_PUBLISH, 5, 1, "t", b"p", 1, False, True, None),
    env.SendPublishes(
        Kind.SEND_PUBLISHES,
        5,
        [1, "t", b"p", 1, False, False, None, 2, "u", b"q", 1, True, False, {}],
    ),
    env.SendAck(Kind.SEND_ACK, 5, 6, 7, 0),
    env.SendSuback(Kind.SEND_SUBACK, 5, 8, [1, 0x80]),
    env.SendUnsuback(Kind.SEND_UNSUBACK, 5, 9, [0]),
    env.Close(Kind.CLOSE, 5, 0x8E),
    env.SendPublishMany(Kind.SEND_PUBLISH_MANY, [5, 6], "t", b"p", False, None),
    env.Routed(Kind.ROUTED, 5, 7, 2, 1),
    env.RoutedMany(Kind.ROUTED_MANY, [5, 7, 2, 1, 6, 8, 0, 0]),
    env.Stored(Kind.STORED, 5, 7, True, 1),
    env.Sub(
        Kind.SUB, 0, "c", 5, 8, [env.RouteEntry("a/#", 1, False, False, True, None, True)], [1]
    ),
    env.Unsub(Kind.UNSUB, "c", ["a/#"], 0, 5, 9, [0]),
    env.UnsubAll(Kind.UNSUB_ALL, "c"),
    env.Route(Kind.ROUTE, "c", "t", b"p", 1, True, None, REPLY),
    env.WorkerUp(Kind.WORKER_UP, 0, 3),
    env.Online(Kind.ONLINE, "c", 5),
    env.Synced(Kind.SYNCED, 0),
    env.Resync(Kind.RESYNC, 0, 3, True),
    env.Fence(Kind.FENCE, 1, 12),
    env.Deliver(
        Kind.DELIVER,
        "t",
        b"p",
        1,
        False,
        None,
        [env.Target("c", 1, False, [4], "a/#")],
        env.DeliverReply(*REPLY, True),
    ),
    env.Subscribed(Kind.SUBSCRIBED, "c", 5, 8, [1], 1),
    env.Unsubscribed(Kind.UNSUBSCRIBED, "c", 5, 9, [0], 1),
    env.RouterUp(Kind.ROUTER_UP, 4),
    env.Retained(Kind.RETAINED, 1, 1_700_000_000_000_000_000, "a/b", b"x", 1, None, 0.0),
    env.Fenced(Kind.FENCED, 12),
    env.Authenticate(Kind.AUTHENTICATE, 1, 3, "c", "user", b"secret", "127.0.0.1:5000", None, None),
    env.Authorize(Kind.AUTHORIZE, 1, 4, "c", None, "subscribe", ["a/#", "b"]),
    env.AuthReply(Kind.AUTH_REPLY, 4, [1, 0], None),
    env.Heartbeat(Kind.HEARTBEAT, "a", 1733240000123, "host:0a1b2c3d4e5f"),
    env.ShardAt(Kind.SHARD_AT, 63, 2, 7),
    env.RoutersLive(Kind.ROUTERS_LIVE, [0, 2]),
]


def plain(value: object) -> object:
    """Tuples (NamedTuples) as lists, as the receiver sees them."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def test_every_kind_has_exactly_one_named_tuple() -> None:
    assert set(env.SCHEMA) == set(Kind)
    classes = list(env.SCHEMA.values())
    assert len(set(classes)) == len(classes)
    members = typing.get_args(env.Envelope)
    assert set(classes) == {m for m in members if typing.get_origin(m) is None}
    assert {m for m in members if typing.get_origin(m) is tuple} == {
        env.PLAIN_TUPLES[cls] for cls in classes if cls in env.PLAIN_TUPLES
    }
    for kind, cls in env.SCHEMA.items():
        assert cls._fields[0] == "kind"
        assert typing.get_type_hints(cls)["kind"] == typing.Literal[kind]
        assert cls.__doc__ and "->" in cls.__doc__, f"{cls.__name__}: say who sends it to whom"


@pytest.mark.parametrize("cls", list(env.PLAIN_TUPLES), ids=lambda c: c.__name__)
def test_each_plain_tuple_form_matches_its_named_tuple(cls: type[object]) -> None:
    plain_form = env.PLAIN_TUPLES[cls]
    hints = list(typing.get_type_hints(cls).values())
    fields = list(typing.get_args(plain_form))
    if cls is env.Deliver:  # its reply, as a plain tuple too
        assert fields[-1] == env.DeliverReplyTuple | None
        fields[-1] = env.DeliverReply | None
    if cls is env.Route:  # its reply, either way (a QoS 2 one: its key too)
        assert fields[-1] == env.Reply | env.ReplyTuple | env.Qos2ReplyTuple | None
        fields[-1] = env.Reply | None
    assert fields == hints


def test_samples_cover_every_kind() -> None:
    # e[0]: the kind, first in every form (a NamedTuple's kind field, a plain tuple's first)
    assert sorted(e[0] for e in SAMPLES) == sorted(Kind)


@pytest.mark.parametrize("envelope", SAMPLES, ids=lambda e: Kind(e.kind).name)
def test_every_kind_round_trips(envelope: env.Envelope) -> None:
    wire = msgpack.unpackb(msgpack.packb([envelope]), raw=False)[0]
    assert isinstance(wire, list) and wire == plain(envelope)  # same wire format as a list
    assert msgpack.packb(envelope) == msgpack.packb(plain(envelope))
    got = env.read(wire)
    assert type(got) is type(envelope)
    assert plain(got) == plain(envelope)  # nested records stay lists: see the next test


def test_read_refuses_a_wrong_arity_and_an_unknown_kind() -> None:
    with pytest.raises(TypeError):
        env.read([Kind.ROUTE, "c", "t"])
    with pytest.raises(KeyError):
        env.read([99, 1])


def test_nested_records_read_back_by_name() -> None:
    sample = next(e for e in SAMPLES if e[0] == Kind.ROUTE)
    wire = msgpack.unpackb(msgpack.packb(sample), raw=False)
    route = env.Route._make(wire)
    assert route.reply is not None
    reply = env.Reply._make(route.reply)
    assert reply.conn == REPLY.conn and reply.key is not None
    assert env.Qos2Key._make(reply.key) == KEY


def test_kind_names() -> None:
    assert env.kind_name(43) == "ROUTE"
    assert env.kind_name(99) == "99"
