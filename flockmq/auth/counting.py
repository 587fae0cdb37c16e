"""What an auth process counts of its hook's calls (sans-IO: the runner
measures, this adds up), published like every role's counters: retained
`$SYS/broker/auth/<index>/<name>`, Prometheus `{role="auth"}` through the
router, and the process's control snapshot for `flockmq status`.

- `hook_authenticate_calls`, `hook_authorize_calls`: calls received (counted
  by the core as they come).
- Per decision, by action: `hook_connects_allowed` / `hook_connects_denied`
  (authenticate), `hook_publishes_allowed` / `hook_publishes_denied` and
  `hook_subscriptions_allowed` / `hook_subscriptions_denied` (authorize: one
  per topic; a will topic is a publish).
- Per failed call, by why: `hook_errors` (the hook raised), `hook_timeouts`
  (past `auth_hook_timeout`), `hook_busy` (every hook thread was taken).
- `hook_call_us`: microseconds from a call's start to its answer, summed
  (with the calls, the mean; Prometheus shows it as
  `flockmq_hook_call_seconds_total`).

Every name is a constant of this module: what a hook returns or an acceptor
sends never makes a new counter (an unknown action counts its call only).
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from flockmq import envelopes as env
from flockmq.hooks import CONNECT, PUBLISH, SUBSCRIBE

# why a call failed (HookRunner says which)
RAISED: Final = "raised"
TIMED_OUT: Final = "timed_out"
BUSY: Final = "busy"

FAILURES: Final = {RAISED: "hook_errors", TIMED_OUT: "hook_timeouts", BUSY: "hook_busy"}
ALLOWED: Final = {
    CONNECT: "hook_connects_allowed",
    PUBLISH: "hook_publishes_allowed",
    SUBSCRIBE: "hook_subscriptions_allowed",
}
DENIED: Final = {
    CONNECT: "hook_connects_denied",
    PUBLISH: "hook_publishes_denied",
    SUBSCRIBE: "hook_subscriptions_denied",
}
CALL_TIME: Final = "hook_call_us"


def count_answer(
    counters: Counter[str],
    call: env.Authenticate | env.Authorize,
    results: list[int],
    failure: str | None,
    seconds: float,
) -> None:
    """One call answered: its time, and its decisions or why it failed.
    `results` as in AUTH_REPLY: a CONNACK reason code (0: allowed) for
    authenticate, 1 (allowed) or 0 per topic for authorize."""
    counters[CALL_TIME] += max(0, round(seconds * 1_000_000))
    if failure is not None:
        counters[FAILURES.get(failure, "hook_errors")] += 1
        return
    if isinstance(call, env.Authenticate):
        action = CONNECT
        allowed = sum(1 for code in results if code == 0)
    else:
        action = call.action
        allowed = sum(1 for code in results if code)
    if action in ALLOWED:
        counters[ALLOWED[action]] += allowed
        counters[DENIED[action]] += len(results) - allowed
