"""`flockmq status`'s figures of the auth processes (flockmq/auth/): their
hook's calls, decisions, failures and call time, from the counters each
one's control snapshot carries (flockmq/auth/counting.py names them). Pure
functions over snapshots, as the rest of the report (flockmq/app/status.py).
"""

from __future__ import annotations

from typing import Any

from flockmq.auth.counting import ALLOWED, CALL_TIME, DENIED, FAILURES

Row = dict[str, Any]

CALLS = ("hook_authenticate_calls", "hook_authorize_calls")


def _value(snapshot: Row, name: str) -> int:
    for table in ("gauges", "counters"):
        values = snapshot.get(table)
        if isinstance(values, dict) and isinstance(values.get(name), int):
            return int(values[name])
    return 0


def hook_figures(before: Row | None, after: Row, seconds: float) -> Row:
    """An auth process's figures from its two snapshots (`before` None, or
    `seconds` 0: no rate): calls and calls per second, allowed and denied per
    action, failures by why, calls running now and the mean call time."""
    calls = sum(_value(after, name) for name in CALLS)
    rate = None
    if before is not None and seconds > 0:
        earlier = sum(_value(before, name) for name in CALLS)
        rate = round(max(0, calls - earlier) / seconds, 1)
    running = _value(after, "hook_calls_running")
    answered = calls - running
    mean_ms = None
    if answered > 0:
        mean_ms = round(_value(after, CALL_TIME) / answered / 1000, 3)
    return {
        "calls": calls,
        "calls_per_s": rate,
        "running": running,
        "allowed": {action: _value(after, name) for action, name in ALLOWED.items()},
        "denied": {action: _value(after, name) for action, name in DENIED.items()},
        "failed": {why: _value(after, name) for why, name in FAILURES.items()},
        "mean_call_ms": mean_ms,
    }


def render_hooks(rows: list[Row]) -> list[str]:
    """Lines for the table's end: one per auth process that answered."""
    out = []
    for row in rows:
        hook = row.get("hook")
        if row.get("role") != "auth" or not isinstance(hook, dict):
            continue
        rate = "-" if hook["calls_per_s"] is None else f"{hook['calls_per_s']:.1f}"
        mean = "-" if hook["mean_call_ms"] is None else f"{hook['mean_call_ms']:.2f} ms"
        decisions = ", ".join(
            f"{action} {hook['allowed'][action]}/{hook['denied'][action]}"
            for action in hook["allowed"]
        )
        failed = hook["failed"]
        out.append(
            f"  auth {row['index']}: {hook['calls']} calls ({rate}/s), {hook['running']} "
            f"running, mean {mean}; allowed/denied: {decisions}; failed: "
            f"{failed['raised']} raised, {failed['timed_out']} timed out, {failed['busy']} busy"
        )
    return out
