"""Filters and topics built to break the broker (issue 9 items 1 and 2): a
3.1.1 `$share/...` filter (before: it raised in the router, dropped the rest
of the bus frame with other clients' envelopes, and as a stored subscription
lost other sessions' messages after a restart), and topics tens of thousands
of levels deep (before: trie memory quadratic in depth, 1.19 GB for one
65 KB SUBSCRIBE)."""

from __future__ import annotations

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    Will,
)
from tests.e2e.broker import Broker, MakeBroker
from tests.e2e.clients import Client, RawClient, unique
from tests.e2e.load import id_on_shard

from .health import MB, assert_healthy, child_pids, rss

BAD_SHARES = ["$share/g", "$share//x", "$share/g/", "$share/g/t"]


def connect_raw(port: int, level: int, client_id: str, clean: bool = True) -> RawClient:
    raw = RawClient(port, level)
    raw.send(Connect(client_id, level, clean, 60))
    connack = raw.recv()
    assert isinstance(connack, Connack) and connack.reason_code == 0, connack
    return raw


def suback_codes(raw: RawClient, timeout: float = 10.0) -> list[int] | None:
    """The SUBACK's codes, or None when none came within `timeout`."""
    try:
        packet = raw.recv(timeout)
    except TimeoutError:
        return None
    assert isinstance(packet, Suback), packet
    return list(packet.reason_codes)


# --- item 1: $share/ over 3.1.1 ------------------------------------------------------------


def test_shared_filters_over_311_are_refused_alone_and_others_subscribe_meanwhile(
    make_broker: MakeBroker,
) -> None:
    """SUBACK 0x80 for each `$share/` entry, the other entries of the same
    SUBSCRIBE granted, and another client subscribing at the same moment
    (one acceptor, so both ride the same frames) is served."""
    broker = make_broker(acceptors=1)
    pids = child_pids(broker)
    base = unique("share311")
    attacker = connect_raw(broker.port, 4, unique("attacker"))
    other = connect_raw(broker.port, 4, unique("other"))
    entries = [Subscription(f, 1) for f in BAD_SHARES]
    entries.insert(1, Subscription(f"{base}/a", 1))
    entries.append(Subscription(f"{base}/b", 0))
    attacker.send(Subscribe(1, tuple(entries)))
    other.send(Subscribe(1, (Subscription(f"{base}/other", 1),)))
    assert suback_codes(other) == [1], "another client's SUBSCRIBE was lost"
    assert suback_codes(attacker) == [0x80, 1, 0x80, 0x80, 0x80, 0]
    pub = Client(broker.port)
    pub.connect()
    for topic in (f"{base}/a", f"{base}/b", f"{base}/other", "$share/g/t"):
        pub.publish(topic, topic.encode(), 1)
    pub.disconnect()
    # recv() gives any packet (or None): anything but a Publish fails here too.
    got = {packet.topic for packet in (attacker.recv(), attacker.recv(), other.recv())}  # type: ignore[union-attr]
    assert got == {f"{base}/a", f"{base}/b", f"{base}/other"}
    attacker.sock.close()
    other.sock.close()
    assert_healthy(broker, pids)


def test_a_persistent_session_with_311_shared_filters_does_not_cost_others_their_messages(
    make_broker: MakeBroker,
) -> None:
    """Sessions on one shard: one (clean session 0) tries the `$share/`
    filters, three others subscribe for real; messages queued for them
    before and after a restart of the broker on the same data dir are all
    delivered (before: 0 of 12 after the restart, the router re-raised on
    the stored filter and dropped the others' resync)."""
    broker = make_broker()
    base = unique("poison")
    poisoner = connect_raw(broker.port, 4, id_on_shard("poisoner", 0), clean=False)
    poisoner.send(Subscribe(1, tuple(Subscription(f, 1) for f in BAD_SHARES)))
    codes = suback_codes(poisoner, timeout=3.0)  # before the fix: no SUBACK ever
    poisoner.send(Disconnect())
    poisoner.sock.close()
    ids = [id_on_shard("victim", 0) for _ in range(3)]
    for i, client_id in enumerate(ids):
        victim = Client(broker.port, client_id, clean=False)
        victim.connect()
        victim.subscribe(f"{base}/{i}", 1)
        victim.disconnect()
    pub = Client(broker.port)
    pub.connect()
    for i in range(len(ids)):
        for n in range(4):
            pub.publish(f"{base}/{i}", f"before-{n}".encode(), 1)  # waits for PUBACK
    pub.disconnect()
    assert broker.stop() == 0
    broker.proc = None
    broker.start()
    pids = child_pids(broker)
    pub = Client(broker.port)
    pub.connect()
    for i in range(len(ids)):
        for n in range(4):
            pub.publish(f"{base}/{i}", f"after-{n}".encode(), 1)
    pub.disconnect()
    delivered = 0
    missing = []
    for client_id in ids:
        victim = Client(broker.port, client_id, clean=False)
        assert victim.connect().session_present
        expected = [f"{when}-{n}".encode() for when in ("before", "after") for n in range(4)]
        got = []
        try:
            for msg in victim.expect(len(expected), timeout=15):
                got.append(msg.payload)
        except Exception:
            missing.append((client_id, got))
        delivered += len(got)
        victim.disconnect()
    assert delivered == 24, f"{delivered} of 24 acknowledged messages delivered: {missing}"
    assert codes == [0x80] * len(BAD_SHARES), f"SUBACK {codes}"
    assert_healthy(broker, pids)
    assert "Traceback" not in broker.log()


# --- item 2: topic depth ------------------------------------------------------------------

DEEP = "/" * 32766  # 32,767 levels, a 65 KB SUBSCRIBE once encoded with its length


def test_deep_filters_are_refused_and_cost_the_router_nothing(
    make_broker: MakeBroker,
) -> None:
    """50 SUBSCRIBEs of a 32,767-level filter (3.1.1 and 5.0): SUBACK 0x80
    (v5: 0x8F, Topic Filter invalid) while the other entry of each is
    granted, and the router grows by less than 50 MB (before: 1.19 GB for
    the first one)."""
    broker = make_broker()
    pids = child_pids(broker)
    router_before = rss(broker)[("router", 0)]
    base = unique("deepfilter")
    clients = {level: connect_raw(broker.port, level, unique("deep")) for level in (4, 5)}
    growth = 0
    codes: dict[int, list[list[int] | None]] = {4: [], 5: []}
    for n in range(50):
        level = 4 if n % 2 else 5
        raw = clients[level]
        filters = (f"{DEEP}{n}", f"x{DEEP}", f"{base}/{n}")
        raw.send(Subscribe(n + 1, tuple(Subscription(f, 1) for f in filters)))
        codes[level].append(suback_codes(raw))
        growth = rss(broker)[("router", 0)] - router_before
        assert growth < 50 * MB, f"router grew by {growth / MB:.0f} MB after {n + 1} SUBSCRIBEs"
    print(f"router +{growth / MB:.0f} MB after 50 SUBSCRIBEs of a 32,767-level filter")
    # A None in codes (a SUBACK that never came) fails these as a TypeError.
    assert set(map(tuple, codes[4])) == {(0x80, 0x80, 1)}, codes[4]  # type: ignore[arg-type]
    assert set(map(tuple, codes[5])) == {(0x8F, 0x8F, 1)}, codes[5]  # type: ignore[arg-type]
    for raw in clients.values():
        raw.sock.close()
    assert_healthy(broker, pids)


def test_topics_and_wills_deeper_than_max_topic_levels_are_refused(broker: Broker) -> None:
    """A PUBLISH to a 201-level topic: DISCONNECT 0x90 (3.1.1: closed), not
    delivered; a will on such a topic: CONNACK 0x90 (3.1.1: closed); 200
    levels are fine."""
    pids = child_pids(broker)
    base = unique("deeptopic")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(f"{base}/#", 1)
    ok = base + "/a" * 199  # 200 levels
    too_deep = ok + "/a"
    for level in (4, 5):
        raw = connect_raw(broker.port, level, unique("deep"))
        raw.send(Publish(too_deep, b"too deep", 1, packet_id=1))
        got = raw.expect_closed()
        if level == 5:
            assert len(got) == 1 and isinstance(got[0], Disconnect), got
            assert got[0].reason_code == 0x90, got
        else:
            assert got == [], got
        will = RawClient(broker.port, level)
        will.send(Connect(unique("deepwill"), level, True, 60, will=Will(too_deep, b"w", 1)))
        got = will.expect_closed()
        if level == 5:
            assert len(got) == 1 and isinstance(got[0], Connack), got
            assert got[0].reason_code == 0x90, got
        else:
            assert got == [], got
    pub = Client(broker.port)
    pub.connect()
    pub.publish(ok, b"200 levels", 1)
    pub.disconnect()
    (msg,) = sub.expect(1)
    assert (msg.topic, msg.payload) == (ok, b"200 levels")
    sub.expect_nothing(0.3)
    sub.disconnect()
    assert_healthy(broker, pids)
