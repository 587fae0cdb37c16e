"""An envelope that raises costs only itself (issue 9 item 1, flockmq/isolation.py):
in the router, a shard and an acceptor, a frame with a poisoned envelope
between good ones still has the good ones' effects, and `envelope_errors`
counts the bad one. Before: the exception left the role's handler and the
rest of the frame (up to 256 other clients' envelopes) was dropped. (The
router's and the shard's frames go through EnvelopeGuard.handle_each, as
flockmq/runtime.py feeds them; tests/unit/flockmq/test_runtime.py drives the
runner itself.)"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from flockmq import envelopes as env
from flockmq.config import Config
from flockmq.envelopes import Wire
from flockmq.frontend.acceptor import Acceptor, acceptor_process
from flockmq.frontend.authentication import Verdict
from flockmq.frontend.codec import PacketType
from flockmq.frontend.session import ClientSession
from flockmq.router.router import Router
from flockmq.runtime_process import CoreProcess
from flockmq.store import DeleteSubscription, SessionRecord, SubscriptionRecord
from flockmq.workers.session import NEVER_EXPIRES as NEVER
from tests.unit.frontend.acceptors import acceptor_of
from tests.unit.router.test_router import route, sub, take, targets_of
from tests.unit.wire import kind_of, of_kind
from tests.unit.workers.test_shard import CONN_A, CONN_B, Harness


def test_router_handles_the_rest_of_a_frame_after_an_envelope_that_raises() -> None:
    router = Router()
    good_alice = [env.Kind.SUB, 0, "alice", 7, 1, [["a/b", 1, False, False, True, None, True]], [1]]
    poisoned = [env.Kind.SUB, 0, "mallory", 8, 1, [["a/b"]], [1]]  # an entry of the wrong arity
    good_bob = [env.Kind.SUB, 1, "bob", 9, 1, [["a/+", 1, False, False, True, None, True]], [1]]
    # The loop every frame goes through (flockmq/runtime.py feeds it).
    router.guard.handle_each(router.handle, [good_alice, poisoned, good_bob], 0.0)
    assert router.counters["envelope_errors"] == 1
    workers, _ = take(router)
    subscribed = sorted(
        s.client_id for out in workers.values() for s in of_kind(out, env.Subscribed)
    )
    assert subscribed == ["alice", "bob"]
    route(router, "a/b")
    workers, _ = take(router)
    assert sorted(t[0] for out in workers.values() for d in out for t in targets_of(d)) == [
        "alice",
        "bob",
    ]


def test_router_skips_an_invalid_filter_and_takes_the_other_entries() -> None:
    """A filter the router cannot take (a stored 3.1.1 `$share/g`) is skipped
    alone: the SUBACK still goes, the other entries are subscribed."""
    router = Router()
    sub(router, 0, "carol", ("$share/g", 1), ("c/d", 1))
    workers, _ = take(router)
    assert [kind_of(e) for e in workers[0]] == [env.Kind.SUBSCRIBED]
    route(router, "c/d")
    workers, _ = take(router)
    assert [t[0] for t in targets_of(workers[0][0])] == ["carol"]


def test_shard_handles_the_rest_of_a_frame_after_an_envelope_that_raises() -> None:
    h = Harness()
    h.connect(CONN_A, "alice", clean=True)
    poisoned = [env.Kind.CONNECT, CONN_B]  # the wrong arity
    h.shard.state.guard.handle_each(h.shard.handle, [poisoned], h.now)
    h.connect(CONN_B, "bob", clean=True)
    assert h.shard.counters["envelope_errors"] == 1
    connacks = of_kind(h.peek_acceptors(), env.Connack)
    assert sorted(c.conn for c in connacks) == sorted([CONN_A, CONN_B])


class _Conn:
    """What the acceptor's SEND_ACK handler needs of a connection: its
    session, over a link that keeps what it writes."""

    def __init__(self, acceptor: Acceptor) -> None:
        self.written: list[bytes] = []
        self.identity: str | None = None
        self.session = ClientSession(42, acceptor, self, 0.0)

    def address(self) -> str:
        return "127.0.0.1"

    def authenticate(self, username: str | None, password: bytes | None, now: float) -> Verdict:
        return Verdict(username)

    def peer_certificate(self) -> None:
        return None

    def send_bytes(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def check_backpressure(self) -> None: ...

    def close_transport(self) -> None: ...

    def unregister(self) -> None: ...

    def peer(self) -> str:
        return "?"


@pytest.fixture
def process() -> Iterator[CoreProcess]:
    runtime = tempfile.mkdtemp(prefix="fmq-", dir="/tmp")  # ipc paths must stay short
    loop = asyncio.new_event_loop()
    _acceptor, proc = acceptor_process(
        Config(acceptors=1, workers=1, runtime_dir=runtime), 0, 1, loop
    )
    yield proc
    proc.bus.close()
    loop.close()
    shutil.rmtree(runtime, ignore_errors=True)


def test_acceptor_handles_the_rest_of_a_frame_after_an_envelope_that_raises(
    process: CoreProcess,
) -> None:
    acceptor = acceptor_of(process)
    conn = _Conn(acceptor)
    # A stand-in for a ClientConnection, with what SEND_ACK needs of one.
    acceptor.connections[42] = conn  # type: ignore[assignment]
    frame: list[Wire] = [
        [env.Kind.SEND_ACK, 42, PacketType.PUBACK, 1, 0],
        [env.Kind.SEND_ACK, 42],  # the wrong arity
        [env.Kind.SEND_ACK, 42, PacketType.PUBACK, 2, 0],
    ]
    process.runner.feed(frame, 100.0)
    assert acceptor.counters["envelope_errors"] == 1
    assert conn.written == [b"\x40\x02\x00\x01", b"\x40\x02\x00\x02"]


def test_a_stored_filter_that_is_not_valid_is_dropped_at_load_and_the_rest_resyncs() -> None:
    """A 3.1.1 `$share/g` kept by an older flockmq: dropped (and deleted from
    the store) with its session's valid subscriptions and the other sessions
    loaded and sent to the router. Before: loaded and sent on, and the
    router raised on it while resyncing, losing the whole frame."""
    h = Harness()
    records = [
        SessionRecord(
            "poisoned",
            NEVER,
            4,
            None,
            900.0,
            (SubscriptionRecord("$share/g", 1), SubscriptionRecord("a/b", 1)),
        ),
        SessionRecord("victim", NEVER, 4, None, 900.0, (SubscriptionRecord("c/d", 1),)),
    ]
    h.shard.load(records, h.now)
    assert list(h.shard.sessions["poisoned"].subscriptions) == ["a/b"]
    assert list(h.shard.sessions["victim"].subscriptions) == ["c/d"]
    assert h.shard.counters["invalid_stored_subscriptions"] == 1
    assert DeleteSubscription("poisoned", "$share/g") in h.shard.out.ops
    router = Router()
    for e in h.take_router():
        router.handle(e)
    assert router.counters["envelope_errors"] == 0
    assert sorted(m[0] for m in router.tree.match("a/b") + router.tree.match("c/d")) == [
        "poisoned",
        "victim",
    ]
