"""A ClientSession with no acceptor, no socket and no event loop: a recording
Host and Link (frontend/session.py) and helpers that feed it packets. What it
did is read back as actions: bytes written, envelopes sent, reading paused,
closed."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from flockmq import envelopes as env
from flockmq.config import Config
from flockmq.frontend.acl import ACL, ClientRules, DecisionCache
from flockmq.frontend.authentication import Authenticator, FailureThrottle, Verdict
from flockmq.frontend.codec import Connect, StreamDecoder, encode
from flockmq.frontend.confirmations import UnconfirmedTotals
from flockmq.frontend.hook_calls import HookCalls
from flockmq.frontend.ordering import Fences
from flockmq.frontend.passwords import PasswordFile
from flockmq.frontend.session import ClientSession
from flockmq.frontend.traffic import Traffic
from flockmq.isolation import RateLimitedLog
from flockmq.listeners import Listener
from tests.unit.wire import wire

CONN_ID = 7


class FakeHost:
    """The acceptor side of sessions, recording what they send."""

    def __init__(self, config: Config | None = None, acl: ACL | None = None) -> None:
        self.config = config or Config(workers=4)
        self.now = 1000.0
        self.acl = acl
        self.acl_decisions = DecisionCache(1 << 20) if acl is not None else None
        self.fences = Fences(0)
        self.client_log = RateLimitedLog(logging.getLogger("test"), burst=1000)
        self.throttle = FailureThrottle()
        self.traffic = Traffic()
        self.counters: Counter[str] = Counter()
        self.router: list[Any] = []
        self.workers: list[tuple[int, Any]] = []
        self.handled: list[Any] = []
        self.incarnations: dict[int, int] = {}
        self.holding: set[ClientSession] = set()
        self.unconfirmed = UnconfirmedTotals()
        self.denied: list[tuple[str, str, str]] = []
        self.hooks: HookCalls | None = None

    def count(self, name: str) -> None:
        self.counters[name] += 1

    def acl_denied(self, counter: str, client_id: str, what: str, topic: str) -> None:
        self.counters[counter] += 1
        self.denied.append((counter, client_id, topic))

    def to_router(self, envelope: env.Route | env.RouteTuple | env.Fence) -> None:
        self.router.append(wire(envelope))

    def to_worker(self, shard: int, envelope: env.Envelope) -> None:
        self.workers.append((shard, wire(envelope)))

    def handle_envelope(self, e: env.Wire) -> None:
        self.handled.append(e)

    def worker_incarnation(self, shard: int) -> int | None:
        return self.incarnations.get(shard)

    def hold(self, session: ClientSession, holding: bool) -> None:
        if holding:
            self.holding.add(session)
        else:
            self.holding.discard(session)

    def take(self) -> tuple[list[Any], list[Any]]:
        """(to the router, to the workers) since the last call."""
        router, workers = self.router, [e for _, e in self.workers]
        self.router, self.workers = [], []
        return router, workers


class FakeLink:
    """The connection a session runs on, recording what it is asked; it
    authenticates as a plain loopback listener with `passwords`."""

    def __init__(self, passwords: PasswordFile | None = None) -> None:
        self.authenticator = Authenticator(Listener(), passwords, None)
        self.identity: str | None = None
        self.peercert: dict[str, Any] | None = None  # as ssl's getpeercert() gives it
        self.written: list[bytes] = []
        self.reading = True
        self.closed = False
        self.registered = True
        self.backpressure_checks = 0

    def peer_certificate(self) -> dict[str, Any] | None:
        return self.peercert

    def send_bytes(self, data: bytes) -> None:
        assert not self.closed, "written after the close"
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def check_backpressure(self) -> None:
        self.backpressure_checks += 1

    def close_transport(self) -> None:
        self.closed = True

    def unregister(self) -> None:
        self.registered = False

    def peer(self) -> str:
        return "192.0.2.1:50000"

    def address(self) -> str:
        return "10.0.0.1"

    def authenticate(self, username: str | None, password: bytes | None, now: float) -> Verdict:
        return self.authenticator.authenticate(username, password, now=now)

    def take(self) -> bytes:
        """What was written since the last call, as one stream."""
        data = b"".join(self.written)
        self.written = []
        return data


class Client:
    """A session with its fake host and link."""

    def __init__(self, host: FakeHost | None = None) -> None:
        self.host = host or FakeHost()
        self.link = FakeLink()
        self.session = ClientSession(CONN_ID, self.host, self.link, self.host.now)

    def send(self, *packets: Any, level: int | None = None) -> None:
        """Packets from the client, in one read."""
        level = level or self.session.level
        self.receive(b"".join(encode(p, level) for p in packets))

    def receive(self, data: bytes) -> None:
        if self.session.receive_data(data, self.host.now):
            self.link.check_backpressure()

    def packets(self) -> list[Any]:
        """The packets written since the last call, decoded as a client would."""
        decoder = StreamDecoder(protocol_level=self.session.level)
        decoder.feed(self.link.take())
        out = []
        while (packet := decoder.next_packet()) is not None:
            out.append(packet)
        return out

    def connack(self, rc: int = 0, present: bool = False, props: Any = None) -> None:
        self.session.on_connack(present, rc, props)

    @property
    def rules(self) -> ClientRules | None:
        return self.session.acl_rules


def connected(
    level: int = 4,
    client_id: str = "c",
    host: FakeHost | None = None,
    **connect: Any,
) -> Client:
    """A client whose CONNECT was answered with CONNACK 0; nothing recorded yet."""
    client = Client(host)
    connect.setdefault("clean_start", True)
    connect.setdefault("keepalive", 60)
    client.send(Connect(client_id, level, **connect), level=level)
    client.connack()
    client.host.take()
    client.link.take()
    return client
