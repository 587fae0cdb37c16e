"""What an auth process counts of its hook's calls (flockmq/auth/counting.py
and the core and runner that feed it), without sockets: decisions per action
and per topic, failures by why, the call time, and what comes out as $SYS
counters, Prometheus metrics and `flockmq status` figures."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from flockmq import envelopes as env
from flockmq.app.hook_figures import hook_figures, render_hooks
from flockmq.auth.core import AuthCore, Call
from flockmq.auth.counting import BUSY, RAISED, TIMED_OUT, count_answer
from flockmq.envelopes import Kind
from flockmq.hooks import Hook
from flockmq.router.metrics import BrokerCollector
from flockmq.router.sys_topics import SysTopics

from .test_auth_core import HOOK, authenticate_call, authorize_call, run_calls


def authorize(action: str, topics: list[str]) -> env.Authorize:
    return env.Authorize(Kind.AUTHORIZE, 0, 1, "dev", "u", action, topics)


AUTHENTICATE = env.Authenticate(Kind.AUTHENTICATE, 0, 1, "dev", "u", None, "10.0.0.1:1", None, None)


def test_decisions_are_counted_per_action_and_per_topic() -> None:
    counters: Counter[str] = Counter()
    count_answer(counters, AUTHENTICATE, [0], None, 0.001)
    count_answer(counters, AUTHENTICATE, [0x86], None, 0.002)
    count_answer(counters, authorize("publish", ["a", "b", "c"]), [1, 0, 1], None, 0.0005)
    count_answer(counters, authorize("subscribe", ["x/#"]), [0], None, 0.0)
    assert counters == {
        "hook_connects_allowed": 1,
        "hook_connects_denied": 1,
        "hook_publishes_allowed": 2,
        "hook_publishes_denied": 1,
        "hook_subscriptions_allowed": 0,
        "hook_subscriptions_denied": 1,
        "hook_call_us": 3500,
    }


def test_failures_are_counted_by_why_and_an_unknown_action_makes_no_counter() -> None:
    counters: Counter[str] = Counter()
    count_answer(counters, AUTHENTICATE, [], RAISED, 0.01)
    count_answer(counters, authorize("publish", ["a"]), [], TIMED_OUT, 0.2)
    count_answer(counters, authorize("publish", ["a"]), [], BUSY, 0.0)
    count_answer(counters, authorize("delete-everything", ["a"]), [1], None, 0.0)
    assert counters == {
        "hook_errors": 1,
        "hook_timeouts": 1,
        "hook_busy": 1,
        "hook_call_us": 210_000,
    }


def test_the_core_counts_an_error_not_said_otherwise_as_raised() -> None:
    started: list[Call] = []
    core = AuthCore(0, started.append)
    core.handle(authenticate_call(1, "alice"), 0.0)
    core.handle(authorize_call(2, ["a"]), 0.0)
    assert core.counters["hook_authenticate_calls"] == 1
    assert core.counters["hook_authorize_calls"] == 1
    assert core.gauges() == {"hook_calls_running": 2}
    core.answer(started[0], [], "boom")
    core.answer(started[1], [1], None, None, 0.25)
    assert core.counters["hook_errors"] == 1 and core.counters["hook_publishes_allowed"] == 1
    assert core.counters["hook_call_us"] == 250_000 and core.gauges() == {"hook_calls_running": 0}


def counted(hook: Hook, calls: list[list[Any]], **options: Any) -> Counter[str]:
    counters: Counter[str] = Counter()
    run_calls(hook, calls, counters=counters, **options)
    return counters


def test_the_runner_says_why_a_call_failed_and_how_long_it_took() -> None:
    counters = counted(
        HOOK,
        [
            authenticate_call(1, "alice"),
            authenticate_call(2, "mallory"),
            authenticate_call(3, "slow"),
            authenticate_call(4, "boom"),
            authorize_call(5, ["ok/a", "no/b"]),
        ],
    )
    assert counters["hook_connects_allowed"] == 1 and counters["hook_connects_denied"] == 1
    assert counters["hook_publishes_allowed"] == 1 and counters["hook_publishes_denied"] == 1
    assert counters["hook_timeouts"] == 1 and counters["hook_errors"] == 1
    # the slow one took its whole budget (0.2 s), and the measured time says so
    assert 200_000 <= counters["hook_call_us"] < 2_000_000


def test_a_call_refused_for_want_of_a_thread_counts_as_busy() -> None:
    release = threading.Event()

    def blocking(*args: Any) -> bool:
        release.wait(2)
        return True

    try:
        counters = counted(
            Hook("blocking", None, blocking),
            [authorize_call(i, ["t"]) for i in (1, 2)],
            timeout=0.3,
            threads=1,
        )
    finally:
        release.set()
    assert counters["hook_busy"] == 1 and counters["hook_timeouts"] == 1


def test_auth_counters_reach_sys_and_prometheus_with_role_auth() -> None:
    sys = SysTopics("1", started=0.0)
    assert sys.observe("$SYS/broker/auth/0/hook_publishes_denied", b"3")
    assert sys.observe("$SYS/broker/auth/0/hook_call_us", b"1500000")
    assert sys.observe("$SYS/broker/auth/0/hook_calls_running", b"2")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(sys))
    text = generate_latest(registry).decode()
    assert 'flockmq_hook_publishes_denied_total{index="0",role="auth"} 3.0' in text
    assert 'flockmq_hook_call_seconds_total{index="0",role="auth"} 1.5' in text
    assert 'flockmq_hook_calls_running{index="0",role="auth"} 2.0' in text
    assert "# TYPE flockmq_hook_calls_running gauge" in text


def snapshot(when: float, **counters: int) -> dict[str, Any]:
    return {"time": when, "counters": counters, "gauges": {"hook_calls_running": 1}}


def test_status_shows_each_auth_processs_hook_figures() -> None:
    before = snapshot(10.0, hook_authenticate_calls=4, hook_authorize_calls=6)
    after = snapshot(
        12.0,
        hook_authenticate_calls=10,
        hook_authorize_calls=10,
        hook_connects_allowed=8,
        hook_connects_denied=1,
        hook_publishes_denied=2,
        hook_timeouts=1,
        hook_call_us=19_000,
    )
    figures = hook_figures(before, after, 2.0)
    assert figures["calls"] == 20 and figures["calls_per_s"] == 5.0
    assert figures["running"] == 1 and figures["mean_call_ms"] == 1.0  # 19 ms over 19 answered
    assert figures["allowed"]["connect"] == 8 and figures["denied"]["publish"] == 2
    assert figures["failed"] == {"raised": 0, "timed_out": 1, "busy": 0}
    assert hook_figures(None, after, 0.0)["calls_per_s"] is None
    (line,) = render_hooks([{"role": "auth", "index": 0, "hook": figures}, {"role": "router"}])
    assert line == (
        "  auth 0: 20 calls (5.0/s), 1 running, mean 1.00 ms; allowed/denied: connect 8/1, "
        "publish 0/2, subscribe 0/0; failed: 0 raised, 1 timed out, 0 busy"
    )
