"""The auth process's core and hook runner (flockmq/auth/) without sockets:
envelopes in, AUTH_REPLY out; sync and async hooks, each within its budget;
a hook that raises, sleeps or answers oddly; and the bounded thread pool."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import uvloop

from flockmq import envelopes as env
from flockmq.auth.core import AuthCore, Call
from flockmq.auth.runner import HookRunner
from flockmq.envelopes import Kind
from flockmq.hooks import Allow, Deny, Hook
from flockmq.runtime import acceptor
from tests.unit.wire import wire


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any]] = []

    def send(self, key: Any, envelope: Any) -> None:
        self.sent.append((key, envelope))

    def extend(self, key: Any, envelopes: Any) -> None:
        self.sent.extend((key, e) for e in envelopes)


def authenticate_call(
    call: int,
    username: str | None,
    acceptor_index: int = 1,
    cert: str | None = None,
    certificate: dict[str, Any] | None = None,
) -> list[Any]:
    return wire(
        env.Authenticate(
            Kind.AUTHENTICATE,
            acceptor_index,
            call,
            "dev",
            username,
            b"pw",
            "10.0.0.1:1",
            cert,
            certificate,
        )
    )


def authorize_call(call: int, topics: list[str]) -> list[Any]:
    return wire(env.Authorize(Kind.AUTHORIZE, 0, call, "dev", "u", "publish", topics))


def test_the_core_hands_calls_to_the_runner_and_sends_answers_to_their_acceptor() -> None:
    started: list[Call] = []
    core = AuthCore(0, started.append)
    core.handle(authenticate_call(7, "alice", acceptor_index=2), 0.0)
    core.handle([99], 0.0)  # an unknown kind: counted
    assert [c.call for c in started] == [7] and core.running == 1
    core.answer(started[0], [0], None)
    sink = Sink()
    core.flush_outputs(sink)
    assert sink.sent == [(acceptor(2), env.AuthReply(Kind.AUTH_REPLY, 7, [0], None))]
    assert core.running == 0 and core.counters["unknown_envelopes"] == 1
    assert core.take_durable() == ([], [])


def run_calls(
    hook: Hook,
    calls: list[list[Any]],
    timeout: float = 0.2,
    threads: int = 8,
    counters: Counter[str] | None = None,
) -> dict[int, Any]:
    """The calls through a real core and runner on an event loop; the replies
    by call (and the core's counters added to `counters`)."""
    replies: dict[int, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        sink = Sink()

        def after() -> None:
            core.flush_outputs(sink)
            for _, reply in sink.sent:
                replies[reply.call] = reply
            sink.sent.clear()
            if len(replies) == len(calls):
                done.set()

        core = AuthCore(0, lambda call: runner.start(call))
        runner = HookRunner(loop, hook, timeout, threads, core.answer, after)
        for call in calls:
            core.handle(call, 0.0)
        await asyncio.wait_for(done.wait(), 5)
        runner.close()
        if counters is not None:
            counters.update(core.counters)

    uvloop.run(main())  # as in the auth process: its loop.time() is a cached millisecond clock
    return replies


def sync_authenticate(
    client_id: str, username: str | None, password: bytes | None, peer: str, cert: str | None
) -> object:
    if username == "slow":
        time.sleep(0.5)
    if username == "boom":
        raise RuntimeError("down")
    if username == "odd":
        return "yes"  # neither Allow nor Deny: denied
    if username == "bad-reason":
        return Deny(0x00)  # not a refusal code: denied as not authorized
    return Allow() if username == "alice" else Deny(0x86)


async def async_authorize(client_id: str, username: str | None, action: str, topic: str) -> Any:
    if topic == "slow":
        await asyncio.sleep(0.5)
    if topic == "boom":
        raise ValueError("no rule")
    if topic == "truthy":
        return 1  # not True: denied
    return topic.startswith("ok")


HOOK = Hook("test", sync_authenticate, async_authorize)


def test_sync_authenticate_allows_denies_and_fails() -> None:
    replies = run_calls(
        HOOK,
        [
            authenticate_call(1, "alice"),
            authenticate_call(2, "mallory"),
            authenticate_call(3, "slow"),
            authenticate_call(4, "boom"),
            authenticate_call(5, "odd"),
            authenticate_call(6, "bad-reason"),
        ],
    )
    assert replies[1].results == [0] and replies[2].results == [0x86]
    assert replies[3].results == [] and "within 0.2s" in replies[3].error
    assert replies[4].results == [] and "RuntimeError: down" in replies[4].error
    assert replies[5].results == [0x87] and replies[6].results == [0x87]


def test_async_authorize_runs_calls_concurrently_each_within_its_budget() -> None:
    started = time.monotonic()
    replies = run_calls(
        HOOK,
        [
            authorize_call(1, ["ok/a", "no/b", "truthy"]),
            authorize_call(2, ["slow"]),
            authorize_call(3, ["slow"]),
            authorize_call(4, ["boom"]),
        ],
    )
    assert replies[1].results == [1, 0, 0] and replies[1].error is None
    assert replies[2].error and replies[3].error and "ValueError" in replies[4].error
    assert time.monotonic() - started < 0.45  # the two slow ones did not queue


def test_call_time_counts_a_hook_that_answers_within_a_millisecond() -> None:
    """A hook that answers at once still adds its time: the runner measures
    with perf_counter, not the loop's clock, which had not moved (0 s summed,
    seen in CI)."""
    counters: Counter[str] = Counter()
    run_calls(HOOK, [authorize_call(1, ["ok/a"])], counters=counters)
    assert counters["hook_publishes_allowed"] == 1
    assert counters["hook_call_us"] >= 1


def test_missing_functions_allow() -> None:
    replies = run_calls(Hook("half", None, async_authorize), [authenticate_call(1, "mallory")])
    assert replies[1].results == [0]
    replies = run_calls(Hook("half", sync_authenticate, None), [authorize_call(1, ["x", "y"])])
    assert replies[1].results == [1, 1]


def test_sync_calls_past_the_thread_pool_are_refused_at_once() -> None:
    release = threading.Event()

    def blocking(*args: Any) -> bool:
        release.wait(2)
        return True

    hook = Hook("blocking", None, blocking)
    try:
        # 2 threads: two calls take them (and time out), the third is refused at once
        replies = run_calls(
            hook, [authorize_call(i, ["t"]) for i in (1, 2, 3)], timeout=0.3, threads=2
        )
    finally:
        release.set()
    assert "busy" in replies[3].error
    assert "within" in replies[1].error and "within" in replies[2].error


def test_an_authenticate_that_takes_certificate_gets_its_fields() -> None:
    seen: list[tuple[Any, ...]] = []

    def with_certificate(
        client_id: str,
        username: str | None,
        password: bytes | None,
        peer: str,
        cert: str | None,
        certificate: dict[str, Any] | None = None,
    ) -> Allow:
        seen.append((cert, certificate))
        return Allow()

    async def old_style(
        client_id: str, username: str | None, password: bytes | None, peer: str, cert: str | None
    ) -> Allow:
        seen.append((cert,))
        return Allow()

    fields = {"subject": {"commonName": "dev"}, "issuer": {}, "serial": "01"}
    calls = [authenticate_call(1, "alice", cert="dev", certificate=fields)]
    hook = Hook("new", with_certificate, None, wants_certificate=True)
    assert run_calls(hook, calls)[1].results == [0]
    assert run_calls(Hook("old", old_style, None), calls)[1].results == [0]
    assert seen == [("dev", fields), ("dev",)]  # the old one is called as before
