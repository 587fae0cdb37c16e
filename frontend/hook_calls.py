"""Calls from an acceptor to the auth processes (flockmq/auth/): the user's
authentication/authorization hooks, under a time budget (sans-IO).

A CONNECT the password file let through (then its will topic, as a
"publish"), and a PUBLISH or SUBSCRIBE the ACL let through, are asked of the
hook when one is configured (`Host.hooks` is
then a `HookCalls`; without a hook it is None, and that one attribute check
is all the hot path pays). The connection waits for the answer the way it
waits for its turn (frontend/ordering.py): the packet is its `held` packet,
nothing after it is read, so what a connection sends keeps its order.

- **Budget.** Each call has `timeout` seconds (`auth_hook_timeout`), timed
  here (`expire`, on a timer the acceptor arms at `next_due`): a call not
  answered by then, or answered with an error (the hook raised or timed out
  in the auth process), is failed: CONNECT refused with 0x88 Server
  unavailable, a topic refused with 0x80 Unspecified error. Counted
  (`hook_timeouts`, `hook_errors`) and logged, rate-limited.
- **Bounds.** At most `max_pending` calls and `max_pending_bytes` bytes wait
  at once; past that a call is failed at once (`hook_calls_overloaded`).
- **Spread.** Round robin over the auth processes; one whose call timed out
  is skipped, but given one call a second (`PROBE_INTERVAL`) until it answers
  again (a restarted process answers). When all are suspect, all are tried.
- **Cache.** authorize() decisions by (client id, username, action, topic),
  for `ttl` seconds, bounded in bytes (least recently stored dropped first).
  Failures are not cached.

Invariant: every call is answered to its waiter exactly once (reply, error
or timeout); a reply after its timeout is dropped (`hook_late_replies`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from flockmq import envelopes as env
from flockmq.auth import auth_key, auth_process_count
from flockmq.envelopes import Kind, Wire
from flockmq.hooks import CONNECT, PUBLISH, WILL
from flockmq.isolation import RateLimitedLog
from flockmq.mqtt.reason_codes import ReasonCode

if TYPE_CHECKING:
    from flockmq.bus import Bus
    from flockmq.config import Config
    from flockmq.frontend.acceptor import Acceptor

    from .session import ClientSession
    from .tls import CertificateFields

log = logging.getLogger("flockmq.acceptor")

PROBE_INTERVAL = 1.0  # seconds between calls to an auth process that timed out
CALL_OVERHEAD = 64  # bytes counted per call and per cached decision, beyond its strings
NOT_AUTHORIZED: Final = int(ReasonCode.NOT_AUTHORIZED)  # a hook's "no"
FAILED: Final = int(ReasonCode.UNSPECIFIED_ERROR)  # no answer in time, or an error
CONNECT_FAILED: Final = int(ReasonCode.SERVER_UNAVAILABLE)


class Waiter(Protocol):
    """What waits for a call (a session)."""

    def on_hook_answer(self, call: PendingCall, codes: list[int]) -> None:
        """`codes`: for a CONNECT one CONNACK reason code (0: allowed); for
        topics one code per topic (0 allowed, NOT_AUTHORIZED, FAILED)."""


@dataclass(eq=False, slots=True)
class PendingCall:
    call: int
    waiter: Waiter
    action: str  # CONNECT, WILL (asked as a PUBLISH), PUBLISH or SUBSCRIBE
    topics: list[str]
    client_id: str
    username: str | None
    due: float
    size: int
    target: int  # the auth process asked
    packet: Any = field(default=None)  # what waits for the answer
    known: dict[str, int] = field(default_factory=dict)  # its topics decided from the cache
    prior: list[int] = field(default_factory=list)  # a SUBSCRIBE's codes found before asking


class DecisionCache:
    """authorize() decisions for `ttl` seconds, at most `max_bytes`."""

    def __init__(self, ttl: float, max_bytes: int) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[tuple[str, str | None, str, str], tuple[float, bool, int]] = (
            OrderedDict()
        )

    def get(self, key: tuple[str, str | None, str, str], now: float) -> bool | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        expires, allowed, _size = entry
        if now >= expires:
            self._drop(key)
            return None
        return allowed

    def put(self, key: tuple[str, str | None, str, str], allowed: bool, now: float) -> None:
        if self.ttl <= 0:
            return
        if key in self.entries:
            self._drop(key)
        size = CALL_OVERHEAD + len(key[0]) + len(key[1] or "") + len(key[3])
        self.entries[key] = (now + self.ttl, allowed, size)
        self.size += size
        while self.size > self.max_bytes and self.entries:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple[str, str | None, str, str]) -> None:
        self.size -= self.entries.pop(key)[2]

    def __len__(self) -> int:
        return len(self.entries)


class HookCalls:
    def __init__(
        self,
        acceptor: int,
        processes: int,
        config: Config,
        send: Callable[[int, env.Authenticate | env.Authorize], None],
        arm: Callable[[float], None],
        count: Callable[[str], None],
    ) -> None:
        """`send(i, envelope)`: to auth process i; `arm(when)`: call
        `expire` at `when` (the acceptor's timer); `count`: its counters."""
        self.acceptor = acceptor
        self.processes = processes
        self.timeout = config.auth_hook_timeout
        self.max_pending = config.auth_max_pending
        self.max_pending_bytes = config.auth_max_pending_bytes
        functions = config.auth_hook_functions
        self.authenticates = "authenticate" in functions
        self.authorizes = "authorize" in functions
        self.cache = DecisionCache(config.auth_cache_ttl, config.auth_cache_bytes)
        self.send = send
        self.arm = arm
        self.count = count
        self.log = RateLimitedLog(log)
        self.pending: dict[int, PendingCall] = {}  # by call number: in the order of `due`
        self.pending_bytes = 0
        self.armed: float | None = None  # when `expire` is next called
        self.suspect: dict[int, float] = {}  # process -> when it may be tried again
        self._next_call = 0
        self._next_target = 0

    # --- asking ----------------------------------------------------------------------------
    def authenticate(
        self,
        waiter: Waiter,
        session: ClientSession,
        password: bytes | None,
        cert: str | None,
        certificate: CertificateFields | None = None,
    ) -> PendingCall | None:
        """Ask authenticate() for `session`'s CONNECT (`cert`: the client
        certificate's CN, `certificate` its fields, bounded); None: refused
        at once (too many calls waiting)."""
        peer = session.link.peer()
        size = len(session.client_id) + len(session.username or "") + len(password or b"")
        size += len(peer) + len(cert or "") + (certificate.size if certificate else 0)
        call = self._new(waiter, CONNECT, [], session, size)
        if call is not None:
            self.send(
                call.target,
                env.Authenticate(
                    Kind.AUTHENTICATE,
                    self.acceptor,
                    call.call,
                    session.client_id,
                    session.username,
                    password,
                    peer,
                    cert,
                    certificate.fields if certificate else None,
                ),
            )
        return call

    def authorize(
        self, waiter: Waiter, session: ClientSession, action: str, topics: list[str]
    ) -> PendingCall | None:
        """Ask authorize() for each of `topics` (WILL: a CONNECT's will
        topic, asked as "publish"); None: refused at once."""
        size = len(session.client_id) + len(session.username or "") + sum(map(len, topics))
        call = self._new(waiter, action, topics, session, size)
        if call is not None:
            self.send(
                call.target,
                env.Authorize(
                    Kind.AUTHORIZE,
                    self.acceptor,
                    call.call,
                    session.client_id,
                    session.username,
                    hook_action(action),
                    topics,
                ),
            )
        return call

    def cached(
        self, session: ClientSession, action: str, topics: list[str], now: float
    ) -> tuple[dict[str, int], list[str]]:
        """The cached decisions ({topic: code}) and the topics to ask about."""
        known: dict[str, int] = {}
        missing: list[str] = []
        client_id, username = session.client_id, session.username
        get = self.cache.get
        for topic in topics:
            allowed = get((client_id, username, action, topic), now)
            if allowed is None:
                missing.append(topic)
            else:
                known[topic] = 0 if allowed else NOT_AUTHORIZED
        if known:
            self.count("hook_cache_hits")
        return known, missing

    def _new(
        self, waiter: Waiter, action: str, topics: list[str], session: ClientSession, size: int
    ) -> PendingCall | None:
        size += CALL_OVERHEAD
        if (
            len(self.pending) >= self.max_pending
            or self.pending_bytes + size > self.max_pending_bytes
        ):
            self.count("hook_calls_overloaded")
            self.log.warning(
                "client %r: %d hook calls (%d bytes) waiting already: refused",
                session.client_id,
                len(self.pending),
                self.pending_bytes,
            )
            return None
        self._next_call += 1
        now = session.host.now
        call = PendingCall(
            self._next_call,
            waiter,
            action,
            topics,
            session.client_id,
            session.username,
            now + self.timeout,
            size,
            self._target(now),
        )
        self.pending[call.call] = call
        self.pending_bytes += size
        self.count("hook_calls")
        if self.armed is None:
            self.armed = call.due
            self.arm(call.due)
        return call

    def _target(self, now: float) -> int:
        """Round robin over the auth processes not suspected dead; one that
        is suspected gets a call once every PROBE_INTERVAL."""
        n = self.processes
        for step in range(n):
            index = (self._next_target + step) % n
            retry_at = self.suspect.get(index)
            if retry_at is None or retry_at <= now:
                if retry_at is not None:
                    self.suspect[index] = now + PROBE_INTERVAL
                self._next_target = index + 1
                return index
        index = self._next_target % n  # every one suspected: ask them in turn
        self._next_target = index + 1
        return index

    # --- answers ---------------------------------------------------------------------------
    def on_reply(self, e: Wire, now: float) -> None:
        """AUTH_REPLY from an auth process."""
        _, number, results, error = env.AuthReply._make(e)
        call = self._pop(number)
        if call is None:
            self.count("hook_late_replies")
            return
        self.suspect.pop(call.target, None)  # it answers
        if error is not None or len(results) != max(1, len(call.topics)):
            self.count("hook_errors")
            self.log.warning(
                "hook %s for client %r failed: %s",
                call.action,
                call.client_id,
                error or "bad reply",
            )
            self._fail(call)
            return
        if call.action == CONNECT:
            call.waiter.on_hook_answer(call, [int(results[0])])
            return
        codes = []
        action = hook_action(call.action)
        for topic, allowed in zip(call.topics, results, strict=True):
            self.cache.put((call.client_id, call.username, action, topic), bool(allowed), now)
            codes.append(0 if allowed else NOT_AUTHORIZED)
        call.waiter.on_hook_answer(call, codes)

    def next_due(self) -> float | None:
        for call in self.pending.values():
            return call.due
        return None

    def expire(self, now: float) -> None:
        """The timer: calls past their budget are failed; arms the next one."""
        self.armed = None
        while self.pending:
            call = next(iter(self.pending.values()))
            if call.due > now:
                if self.armed is None:  # (a call made meanwhile armed it)
                    self.armed = call.due
                    self.arm(call.due)
                return
            self._pop(call.call)
            self.count("hook_timeouts")
            self.suspect.setdefault(call.target, now + PROBE_INTERVAL)
            self.log.warning(
                "hook %s for client %r: no answer from auth %d within %gs",
                call.action,
                call.client_id,
                call.target,
                self.timeout,
            )
            self._fail(call)

    def _pop(self, number: int) -> PendingCall | None:
        call = self.pending.pop(number, None)
        if call is not None:
            self.pending_bytes -= call.size
        return call

    def _fail(self, call: PendingCall) -> None:
        if call.action == CONNECT:
            call.waiter.on_hook_answer(call, [CONNECT_FAILED])
        else:
            call.waiter.on_hook_answer(call, [FAILED] * len(call.topics))


def hook_action(action: str) -> str:
    """The action authorize() is asked with: a will is asked as the publish
    it will be (its decision is cached as one)."""
    return PUBLISH if action == WILL else action


# --- the session's side ---------------------------------------------------------------------


class WaitsForHook(Exception):
    """Raised out of a packet's handler when the packet waits for the hook's
    answer; `ClientSession.read_packets` stops there (so the publish path
    pays nothing for it without a hook: no check after each packet)."""


def authorize_topics(
    session: ClientSession, packet: Any, action: str, topics: list[str], prior: Sequence[int] = ()
) -> dict[str, int]:
    """The hook's decision on each of `topics` for `packet` ({topic: 0,
    NOT_AUTHORIZED or FAILED}), from the cache or from the answer `packet`
    waited for. WaitsForHook: it was asked, and `packet` waits for the
    answer (held, like a packet waiting for its turn: frontend/ordering.py;
    `prior`, what its handler found before asking, is given back with the
    answer)."""
    decided = session.decided
    if decided is not None and decided[0] is packet:
        session.decided = None
        return decided[1]
    host = session.host
    hooks = host.hooks
    assert hooks is not None
    known, missing = hooks.cached(session, action, topics, host.now)
    if not missing:
        return known
    call = hooks.authorize(session, session, action, missing)
    if call is None:
        known.update(dict.fromkeys(missing, FAILED))
        return known
    call.packet = packet
    call.known = known
    call.prior = list(prior)
    session.awaiting = call
    session.hold(packet)
    raise WaitsForHook


# --- the acceptor's side ----------------------------------------------------------------------


def auth_processes(config: Config) -> int:
    """How many auth processes the acceptors call (0: no hook)."""
    return auth_process_count(config)


def connect_auth(bus: Bus, config: Config) -> None:
    """An acceptor's bus, connected to every auth process (none without a hook)."""
    for index in range(auth_processes(config)):
        bus.connect(auth_key(index), config.auth_endpoint(index), config.auth_id(index))


def attach_hooks(acceptor: Acceptor) -> HookCalls | None:
    """With an auth hook: the acceptor's `HookCalls`, AUTH_REPLY handled, the
    budget timed on its loop (its bus is connected to every auth process by
    `connect_auth`). None without one (then nothing about hooks costs
    anything)."""
    config = acceptor.config
    processes = auth_processes(config)
    if not processes:
        return None
    loop = acceptor.loop

    def expire() -> None:
        acceptor.now = now = loop.time()
        try:
            calls.expire(now)
        except Exception:  # a callback's entry point: the next timer must still run
            acceptor.count("hook_timer_errors")
            calls.log.log(logging.ERROR, "error timing out hook calls", exc_info=True)

    def send(index: int, envelope: env.Authenticate | env.Authorize) -> None:
        acceptor.bus.send(auth_key(index), envelope)  # attached after this is made

    def arm(when: float) -> None:
        loop.call_at(when, expire)

    calls = HookCalls(acceptor.index, processes, config, send, arm, acceptor.count)
    acceptor.handlers[Kind.AUTH_REPLY] = lambda e: calls.on_reply(e, acceptor.now)
    return calls
