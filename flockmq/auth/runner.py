"""Runs a hook module's functions (flockmq.hooks) for the auth core, each
call within its budget.

- `async def` hooks run as tasks on this process's event loop, so calls
  overlap: one that waits (a database, an HTTP call) does not hold the others.
- Plain functions run on a small thread pool (`threads`), so one that blocks
  does not hold the loop. A thread cannot be stopped: a call past its budget
  is answered with an error at once, but keeps its thread until it returns,
  and while every thread is busy a new call is refused at once (an error)
  rather than queued behind them: nothing waits here unboundedly.
- A call past `timeout`, one that raises, or one refused for want of a thread
  is answered with an error (logged, rate-limited); the acceptor denies it.

Every call handed to `start` is answered exactly once, through `answer`
(with why it failed, if it did, and how long it took: counted by the core,
flockmq/auth/counting.py), and `after_answer` ends the pass (the reply
leaves on the bus).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flockmq import envelopes as env
from flockmq.hooks import Hook, deny_reason
from flockmq.isolation import RateLimitedLog

from .core import Call
from .counting import BUSY, RAISED, TIMED_OUT

log = logging.getLogger("flockmq.auth")

# answer(call, results, error, failure, seconds)
Answer = Callable[[Call, list[int], str | None, str | None, float], None]


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # an object with an async __call__
    )


class HookRunner:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        hook: Hook,
        timeout: float,
        threads: int,
        answer: Answer,
        after_answer: Callable[[], None] = lambda: None,
    ) -> None:
        self.loop = loop
        self.hook = hook
        self.timeout = timeout
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="auth-hook")
        self.busy = 0  # threads running a call (including ones past their budget)
        self.lock = threading.Lock()
        self.answer = answer
        self.after_answer = after_answer
        self.error_log = RateLimitedLog(log)
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, call: Call) -> None:
        task = self.loop.create_task(self._run(call))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, call: Call) -> None:
        started = time.perf_counter()  # loop.time() is uvloop's cached millisecond clock
        try:
            results = await asyncio.wait_for(self._call(call), self.timeout)
        except TimeoutError:
            self._failed(call, started, TIMED_OUT, f"no answer within {self.timeout:g}s")
        except HookBusy as exc:
            self._failed(call, started, BUSY, str(exc))
        except Exception as exc:  # the hook is user code: anything may fail
            self._failed(call, started, RAISED, f"{type(exc).__name__}: {exc}", exc)
        else:
            self.answer(call, results, None, None, time.perf_counter() - started)
        self.after_answer()

    def _failed(
        self,
        call: Call,
        started: float,
        failure: str,
        why: str,
        exc: BaseException | None = None,
    ) -> None:
        what = "authenticate" if isinstance(call, env.Authenticate) else "authorize"
        self.error_log.log(
            logging.WARNING,
            "hook %s.%s for client %r: %s",
            self.hook.name,
            what,
            call.client_id,
            why,
            exc_info=exc is not None,
        )
        self.answer(call, [], why, failure, time.perf_counter() - started)

    async def _call(self, call: Call) -> list[int]:
        if isinstance(call, env.Authenticate):
            fn = self.hook.authenticate
            if fn is None:
                return [0]
            args = (call.client_id, call.username, call.password, call.peer, call.cert)
            keywords = {"certificate": call.certificate} if self.hook.wants_certificate else {}
            verdict = await self._invoke(fn, [args], keywords)
            return [deny_reason(verdict[0])]
        fn = self.hook.authorize
        if fn is None:
            return [1] * len(call.topics)
        arg_lists = [(call.client_id, call.username, call.action, t) for t in call.topics]
        return [1 if allowed is True else 0 for allowed in await self._invoke(fn, arg_lists)]

    async def _invoke(
        self,
        fn: Callable[..., Any],
        arg_lists: list[tuple[Any, ...]],
        keywords: dict[str, Any] | None = None,
    ) -> list[Any]:
        """fn(*args, **keywords) for each args: concurrently on the loop if
        async, else one after the other on one thread of the pool."""
        keywords = keywords or {}
        if _is_async(fn):
            return list(await asyncio.gather(*(fn(*args, **keywords) for args in arg_lists)))
        with self.lock:
            if self.busy >= self.threads:
                raise HookBusy(f"all {self.threads} hook threads are busy")
            self.busy += 1
        return await self.loop.run_in_executor(self.pool, self._in_thread, fn, arg_lists, keywords)

    def _in_thread(
        self, fn: Callable[..., Any], arg_lists: list[tuple[Any, ...]], keywords: dict[str, Any]
    ) -> list[Any]:
        try:
            return [fn(*args, **keywords) for args in arg_lists]
        finally:
            with self.lock:
                self.busy -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class HookBusy(Exception):
    """Every thread of the pool is running a call: refused at once."""
