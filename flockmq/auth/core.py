"""The auth process's logic under the runtime's contract (flockmq/runtime.py
`Core`): each AUTHENTICATE/AUTHORIZE from an acceptor is handed to the hook
runner (`start`), and each answer the runner gives (`answer`) leaves as an
AUTH_REPLY to that acceptor at the end of the pass.

Sans-IO: no socket, no clock, no hook is called here. It holds nothing for a
commit (the role has no store). Its counters (flockmq/auth/counting.py) go
to the router like every role's ($SYS, Prometheus) and answer `flockmq
status`. Invariant: every call handed to the runner is
answered exactly once (the runner's contract), so an acceptor's call is
answered or, if this process dies, timed out by the acceptor.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from flockmq import envelopes as env
from flockmq.envelopes import Kind, Wire, kind_name
from flockmq.isolation import EnvelopeGuard, RateLimitedLog
from flockmq.runtime import Sink, StoreLess, acceptor

from .counting import RAISED, count_answer

log = logging.getLogger("flockmq.auth")

Call = env.Authenticate | env.Authorize


class AuthCore(StoreLess):
    def __init__(self, index: int, start: Callable[[Call], None]) -> None:
        """`start(call)`: run the hook for `call`; the runner calls
        `answer` once with its outcome."""
        self.index = index
        self.start = start
        self.counters: Counter[str] = Counter()
        self.guard = EnvelopeGuard(f"auth {index}", self.counters, log)
        self.unknown_log = RateLimitedLog(log)
        self.replies: dict[int, list[env.AuthReply]] = {}  # by acceptor index
        self.running = 0  # calls handed to the runner, not yet answered

    def handle(self, envelope: Wire, now: float) -> None:
        kind = envelope[0]
        if kind == Kind.AUTHENTICATE:
            call: Call = env.Authenticate._make(envelope)
            self.counters["hook_authenticate_calls"] += 1
        elif kind == Kind.AUTHORIZE:
            call = env.Authorize._make(envelope)
            self.counters["hook_authorize_calls"] += 1
        elif kind == Kind.ROUTER_UP:
            # the router restarted: the bus saw its new incarnation, and this
            # process sends it its counters again (flockmq/runtime_process.py)
            return
        else:
            self.counters["unknown_envelopes"] += 1
            self.unknown_log.warning("auth: unknown envelope kind %s", kind_name(kind))
            return
        self.running += 1
        self.start(call)

    def answer(
        self,
        call: Call,
        results: list[int],
        error: str | None,
        failure: str | None = None,
        seconds: float = 0.0,
    ) -> None:
        """The runner's outcome for `call`: an AUTH_REPLY to its acceptor.
        `error`: why it failed (sent to the acceptor), `failure` which kind
        of failure (flockmq/auth/counting.py; RAISED if not said),
        `seconds` the call's time: counted."""
        self.running -= 1
        if error is not None and failure is None:
            failure = RAISED
        count_answer(self.counters, call, results, failure, seconds)
        reply = env.AuthReply(Kind.AUTH_REPLY, call.call, results, error)
        self.replies.setdefault(call.acceptor, []).append(reply)

    def next_timer(self) -> float | None:
        return None  # the runner times its calls itself

    def handle_timer(self, now: float) -> None:
        pass

    def flush_outputs(self, sink: Sink) -> None:
        for index, replies in self.replies.items():
            if replies:
                sink.extend(acceptor(index), replies)
                replies.clear()

    def gauges(self) -> dict[str, int]:
        return {"hook_calls_running": self.running}
